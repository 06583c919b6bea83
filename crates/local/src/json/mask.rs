//! Which tokens may come next: the vocabulary as a prefix trie, walked through the automaton.
//!
//! The trie is laid out in depth-first order, so one pass over flat arrays visits it; a node
//! whose bytes the automaton refuses skips its whole subtree, and tokens that share a prefix
//! share the walk of it. Inside a string almost every token is allowed and the pass reads most
//! of the trie; between keys nearly all of it is skipped after the first byte.

use super::automaton::{Dfa, DEAD};

/// The vocabulary's token bytes as a trie in depth-first order.
#[derive(Debug)]
pub(crate) struct VocabTrie {
    /// The byte each node adds to its parent's prefix.
    byte: Vec<u8>,
    /// Depth of the node (children of the root are at 1).
    depth: Vec<u16>,
    /// The node after this one's subtree.
    skip: Vec<u32>,
    /// `tokens[ends[node]..ends[node + 1]]`: the token ids whose bytes end at the node.
    ends: Vec<u32>,
    tokens: Vec<u32>,
    max_depth: usize,
}

impl VocabTrie {
    /// The trie of `vocab` (token id → the bytes it writes; empty ones, control tokens, are
    /// left out).
    pub(crate) fn new<'b>(vocab: impl Iterator<Item = &'b [u8]>) -> Self {
        let mut sorted: Vec<(&[u8], u32)> = vocab
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(id, b)| (b, id as u32))
            .collect();
        sorted.sort_unstable();
        let mut trie = Self {
            byte: Vec::new(),
            depth: Vec::new(),
            skip: Vec::new(),
            ends: Vec::new(),
            tokens: Vec::new(),
            max_depth: 0,
        };
        // The nodes along the current token's bytes; popped ones get their `skip`.
        let mut path: Vec<usize> = Vec::new();
        let mut previous: &[u8] = &[];
        let mut ends_at: Vec<Vec<u32>> = Vec::new();
        for (bytes, id) in sorted {
            let shared = previous
                .iter()
                .zip(bytes)
                .take_while(|(a, b)| a == b)
                .count();
            while path.len() > shared {
                if let Some(node) = path.pop() {
                    trie.skip[node] = trie.byte.len() as u32;
                }
            }
            for &b in &bytes[shared..] {
                path.push(trie.byte.len());
                trie.byte.push(b);
                trie.depth.push(path.len() as u16);
                trie.skip.push(0);
                ends_at.push(Vec::new());
            }
            if let Some(&node) = path.last() {
                ends_at[node].push(id);
            }
            trie.max_depth = trie.max_depth.max(bytes.len());
            previous = bytes;
        }
        let total = trie.byte.len() as u32;
        for node in path {
            trie.skip[node] = total;
        }
        trie.ends.reserve(ends_at.len() + 1);
        for ids in ends_at {
            trie.ends.push(trie.tokens.len() as u32);
            trie.tokens.extend(ids);
        }
        trie.ends.push(trie.tokens.len() as u32);
        trie
    }

    /// Call `allow(token, state after it)` for every token the automaton accepts from `state`
    /// after which an answer can still be completed in `budget` more tokens.
    pub(crate) fn walk(&self, dfa: &Dfa, state: u32, budget: u32, mut allow: impl FnMut(u32, u32)) {
        let mut states = vec![DEAD; self.max_depth + 1];
        states[0] = state;
        let n = self.byte.len();
        let mut node = 0usize;
        while node < n {
            let depth = self.depth[node] as usize;
            let next = dfa.step(states[depth - 1], self.byte[node]);
            if next == DEAD {
                node = self.skip[node] as usize;
                continue;
            }
            states[depth] = next;
            let (from, to) = (self.ends[node] as usize, self.ends[node + 1] as usize);
            if from < to && dfa.distance(next) <= budget {
                for &token in &self.tokens[from..to] {
                    allow(token, next);
                }
            }
            node += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::automaton::{Nfa, START};

    #[test]
    fn walks_only_the_tokens_the_automaton_takes() {
        // Accepts "ab" or "abc".
        let mut nfa = Nfa::default();
        let start = nfa.state().unwrap();
        let ab = nfa.literal(start, b"ab").unwrap();
        let abc = nfa.literal(ab, b"c").unwrap();
        let accept = nfa.state().unwrap();
        nfa.join(ab, accept);
        nfa.join(abc, accept);
        let dfa = nfa.determinize(start, accept).unwrap();
        let vocab: Vec<&[u8]> = vec![b"a", b"ab", b"abc", b"b", b"", b"abd", b"ab"];
        let trie = VocabTrie::new(vocab.into_iter());
        let mut allowed = Vec::new();
        trie.walk(&dfa, START, 10, |t, _| allowed.push(t));
        allowed.sort_unstable();
        assert_eq!(allowed, vec![0, 1, 2, 6]);
        // With no tokens to spare only whole answers are allowed.
        let mut allowed = Vec::new();
        trie.walk(&dfa, START, 0, |t, _| allowed.push(t));
        allowed.sort_unstable();
        assert_eq!(allowed, vec![1, 2, 6]);
        let mut after_a = Vec::new();
        trie.walk(&dfa, dfa.walk(START, b"a"), 10, |t, _| after_a.push(t));
        assert_eq!(after_a, vec![3]);
    }
}
