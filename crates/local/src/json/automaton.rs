//! A byte-level automaton: built as an NFA with ε-edges, then made deterministic.
//!
//! The schema compiler ([`super::schema`]) writes the NFA; [`Nfa::determinize`] turns it into a
//! [`Dfa`] whose transitions are one table lookup per byte, which is what the token mask walks.
//! Every state of the finished DFA can still reach acceptance, and knows in how many bytes at
//! least ([`Dfa::distance`]), so generation can be steered to finish within its token budget.

use std::collections::{HashMap, VecDeque};

use super::SchemaError;

/// NFA states a schema may compile to before it is refused as too large.
const MAX_NFA_STATES: usize = 400_000;
/// DFA states (1 KiB of transitions each) a schema may compile to.
const MAX_DFA_STATES: usize = 50_000;

/// A nondeterministic automaton over bytes, with one accepting state.
#[derive(Debug, Default)]
pub(crate) struct Nfa {
    epsilon: Vec<Vec<u32>>,
    /// `(lo, hi, to)`: any byte in `lo..=hi` moves to `to`.
    edges: Vec<Vec<(u8, u8, u32)>>,
}

impl Nfa {
    /// A new state with no edges.
    pub(crate) fn state(&mut self) -> Result<u32, SchemaError> {
        if self.epsilon.len() >= MAX_NFA_STATES {
            return Err(SchemaError::too_large());
        }
        self.epsilon.push(Vec::new());
        self.edges.push(Vec::new());
        Ok((self.epsilon.len() - 1) as u32)
    }

    /// An ε-edge: `to` is reachable from `from` without reading a byte.
    pub(crate) fn join(&mut self, from: u32, to: u32) {
        self.epsilon[from as usize].push(to);
    }

    /// Any byte in `lo..=hi` moves from `from` to `to`.
    pub(crate) fn range(&mut self, from: u32, lo: u8, hi: u8, to: u32) {
        self.edges[from as usize].push((lo, hi, to));
    }

    /// A fresh state reached from `from` by any byte in `lo..=hi`.
    pub(crate) fn then_range(&mut self, from: u32, lo: u8, hi: u8) -> Result<u32, SchemaError> {
        let to = self.state()?;
        self.range(from, lo, hi, to);
        Ok(to)
    }

    /// The state reached from `from` by reading `bytes`.
    pub(crate) fn literal(&mut self, from: u32, bytes: &[u8]) -> Result<u32, SchemaError> {
        let mut at = from;
        for &b in bytes {
            at = self.then_range(at, b, b)?;
        }
        Ok(at)
    }

    /// The deterministic automaton that accepts what this one accepts from `start` to `accept`.
    pub(crate) fn determinize(&self, start: u32, accept: u32) -> Result<Dfa, SchemaError> {
        let mut marks = vec![0u32; self.epsilon.len()];
        let mut generation = 0u32;
        let mut closure = |seeds: &mut Vec<u32>| -> Vec<u32> {
            generation += 1;
            let mut out = Vec::with_capacity(seeds.len());
            while let Some(s) = seeds.pop() {
                if marks[s as usize] == generation {
                    continue;
                }
                marks[s as usize] = generation;
                // States with nothing but ε-edges are never needed in a set: their
                // successors stand for them (the accepting state has no edges but must stay).
                if !self.edges[s as usize].is_empty() || s == accept {
                    out.push(s);
                }
                seeds.extend_from_slice(&self.epsilon[s as usize]);
            }
            out.sort_unstable();
            out
        };

        // State 0 is the dead state; 1 is the start.
        let mut sets: Vec<Vec<u32>> = vec![Vec::new(), closure(&mut vec![start])];
        let mut index: HashMap<Vec<u32>, u32> = HashMap::new();
        index.insert(sets[1].clone(), 1);
        let mut next = vec![0u32; 2 * 256];
        let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); 256];
        let mut current = 1usize;
        while current < sets.len() {
            for &s in &sets[current] {
                for &(lo, hi, to) in &self.edges[s as usize] {
                    for b in lo..=hi {
                        buckets[b as usize].push(to);
                    }
                }
            }
            for b in 0..256 {
                if buckets[b].is_empty() {
                    continue;
                }
                let set = closure(&mut buckets[b]);
                let id = match index.get(&set) {
                    Some(&id) => id,
                    None => {
                        if sets.len() >= MAX_DFA_STATES {
                            return Err(SchemaError::too_large());
                        }
                        let id = sets.len() as u32;
                        index.insert(set.clone(), id);
                        sets.push(set);
                        next.extend(std::iter::repeat_n(0, 256));
                        id
                    }
                };
                next[current * 256 + b] = id;
            }
            current += 1;
        }
        let accepting = sets
            .iter()
            .map(|s| s.binary_search(&accept).is_ok())
            .collect();
        Ok(Dfa::new(next, accepting))
    }
}

/// A deterministic automaton over bytes. State 0 is dead; every other state can still reach
/// acceptance.
#[derive(Debug, Clone)]
pub(crate) struct Dfa {
    /// `next[state * 256 + byte]`.
    next: Vec<u32>,
    accepting: Vec<bool>,
    /// The fewest bytes from each state to acceptance.
    distance: Vec<u32>,
    /// Whether any byte leads on from the state.
    exits: Vec<bool>,
}

/// The state nothing leads on from.
pub(crate) const DEAD: u32 = 0;
/// Where every answer starts.
pub(crate) const START: u32 = 1;

impl Dfa {
    fn new(mut next: Vec<u32>, accepting: Vec<bool>) -> Self {
        let states = accepting.len();
        // Fewest bytes to acceptance, by a breadth-first walk of the reversed edges.
        let mut incoming: Vec<Vec<u32>> = vec![Vec::new(); states];
        for from in 1..states {
            for b in 0..256 {
                let to = next[from * 256 + b] as usize;
                if to != DEAD as usize {
                    incoming[to].push(from as u32);
                }
            }
        }
        let mut distance = vec![u32::MAX; states];
        let mut queue = VecDeque::new();
        for (s, &acc) in accepting.iter().enumerate() {
            if acc && s != DEAD as usize {
                distance[s] = 0;
                queue.push_back(s);
            }
        }
        while let Some(s) = queue.pop_front() {
            for &from in &incoming[s] {
                if distance[from as usize] == u32::MAX {
                    distance[from as usize] = distance[s] + 1;
                    queue.push_back(from as usize);
                }
            }
        }
        // A state that cannot reach acceptance is as good as dead.
        for to in next.iter_mut() {
            if distance[*to as usize] == u32::MAX {
                *to = DEAD;
            }
        }
        let exits = (0..states)
            .map(|s| next[s * 256..(s + 1) * 256].iter().any(|&t| t != DEAD))
            .collect();
        Self {
            next,
            accepting,
            distance,
            exits,
        }
    }

    /// The state after reading `byte` in `state` ([`DEAD`] if the byte is not allowed there).
    #[inline]
    pub(crate) fn step(&self, state: u32, byte: u8) -> u32 {
        self.next[state as usize * 256 + byte as usize]
    }

    /// The state after reading `bytes` from `state`.
    pub(crate) fn walk(&self, mut state: u32, bytes: &[u8]) -> u32 {
        for &b in bytes {
            if state == DEAD {
                break;
            }
            state = self.step(state, b);
        }
        state
    }

    /// Whether the bytes read so far are a whole answer.
    pub(crate) fn accepting(&self, state: u32) -> bool {
        self.accepting[state as usize]
    }

    /// Whether any byte may follow.
    pub(crate) fn has_exits(&self, state: u32) -> bool {
        self.exits[state as usize]
    }

    /// The fewest bytes that complete an answer from `state` (`u32::MAX` when dead).
    #[inline]
    pub(crate) fn distance(&self, state: u32) -> u32 {
        self.distance[state as usize]
    }

    /// Whether `text` is a whole answer.
    #[cfg(test)]
    pub(crate) fn accepts(&self, text: &[u8]) -> bool {
        let s = self.walk(START, text);
        s != DEAD && self.accepting(s)
    }

    /// How many states the automaton has.
    #[cfg(test)]
    pub(crate) fn states(&self) -> usize {
        self.accepting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternation_and_loops_determinize() {
        // (ab|ac)x* : shared prefixes merge, the loop stays.
        let mut nfa = Nfa::default();
        let start = nfa.state().unwrap();
        let accept = nfa.state().unwrap();
        for word in [b"ab", b"ac"] {
            let end = nfa.literal(start, word).unwrap();
            nfa.join(end, accept);
        }
        nfa.range(accept, b'x', b'x', accept);
        let dfa = nfa.determinize(start, accept).unwrap();
        assert!(dfa.accepts(b"ab"));
        assert!(dfa.accepts(b"acxxx"));
        assert!(!dfa.accepts(b"a"));
        assert!(!dfa.accepts(b"ad"));
        assert_eq!(dfa.distance(START), 2);
        assert_eq!(dfa.distance(dfa.walk(START, b"a")), 1);
        assert_eq!(dfa.walk(START, b"b"), DEAD);
        assert!(dfa.has_exits(dfa.walk(START, b"ab")));
    }
}
