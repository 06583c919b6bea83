//! JSON-constrained decoding: answers that parse and match a JSON Schema by construction.
//!
//! A schema compiles once ([`Grammars`], cached by its text) into a byte-level [`Dfa`]
//! ([`schema`] writes an NFA, [`automaton`] determinizes it). At each step of a generation a
//! [`JsonConstraint`] walks the vocabulary's prefix trie ([`mask`]) through the automaton from
//! its current state and leaves the sampler only the tokens that keep the answer a prefix of a
//! valid one — and that still leave room to finish it within the token budget, so an answer is
//! never cut off half-written. The end-of-turn token is allowed only where the answer is whole.

mod automaton;
mod keywords;
mod mask;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value as Json;

pub(crate) use automaton::Dfa;
use automaton::{DEAD, START};
pub(crate) use mask::VocabTrie;

/// Compiled schemas kept per provider; past this many the cache starts over.
const CACHE_LIMIT: usize = 256;

/// Why a schema cannot be enforced while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at {path})")]
pub struct SchemaError {
    /// Where in the schema, as a JSON pointer (`#` is the root).
    pub path: String,
    pub message: String,
}

impl SchemaError {
    fn at(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: if path.is_empty() {
                "#".to_owned()
            } else {
                path.to_owned()
            },
            message: message.into(),
        }
    }

    fn too_large() -> Self {
        Self::at("#", "the schema compiles to too large an automaton")
    }
}

/// What an answer must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape<'a> {
    /// JSON matching this schema.
    Schema(&'a Json),
    /// Any JSON object (`response_format: json_object`).
    AnyObject,
}

/// Compile `schema` into an automaton, or say what in it cannot be enforced.
pub fn check_schema(schema: &Json) -> Result<(), SchemaError> {
    compile(Shape::Schema(schema)).map(drop)
}

fn compile(shape: Shape<'_>) -> Result<Dfa, SchemaError> {
    static ROOT: Json = Json::Null;
    let root = match shape {
        Shape::Schema(schema) => schema,
        Shape::AnyObject => &ROOT,
    };
    let mut compiler = schema::Compiler::new(root);
    let start = compiler.nfa.state()?;
    let end = match shape {
        Shape::Schema(schema) => compiler.value(schema, "#", start)?,
        Shape::AnyObject => compiler.any_object(start, 3)?,
    };
    let dfa = compiler.nfa.determinize(start, end)?;
    if dfa.distance(START) == u32::MAX {
        return Err(SchemaError::at("#", "no JSON text matches the schema"));
    }
    Ok(dfa)
}

/// Compiled automata by schema text.
#[derive(Debug, Default)]
pub(crate) struct Grammars {
    compiled: Mutex<HashMap<String, Arc<Dfa>>>,
}

impl Grammars {
    /// The automaton for `shape`, compiled on first use.
    pub(crate) fn get(&self, shape: Shape<'_>) -> Result<Arc<Dfa>, SchemaError> {
        let key = match shape {
            Shape::Schema(schema) => schema.to_string(),
            Shape::AnyObject => String::new(),
        };
        if let Some(dfa) = self.lock().get(&key) {
            return Ok(dfa.clone());
        }
        let dfa = Arc::new(compile(shape)?);
        let mut compiled = self.lock();
        if compiled.len() >= CACHE_LIMIT {
            compiled.clear();
        }
        compiled.insert(key, dfa.clone());
        Ok(dfa)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Dfa>>> {
        self.compiled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One generation's place in its automaton.
pub(crate) struct JsonConstraint {
    dfa: Arc<Dfa>,
    trie: Arc<VocabTrie>,
    state: u32,
    /// End-of-turn tokens: allowed only where the answer is whole.
    stops: Vec<u32>,
    /// Reused buffer for the masked logits.
    masked: Vec<f32>,
}

impl JsonConstraint {
    pub(crate) fn new(dfa: Arc<Dfa>, trie: Arc<VocabTrie>, stops: Vec<u32>) -> Self {
        Self {
            dfa,
            trie,
            state: START,
            stops,
            masked: Vec::new(),
        }
    }

    /// The fewest tokens any answer takes (each token writes at least one byte, and every
    /// byte is a token of its own in a byte-level vocabulary).
    pub(crate) fn shortest(&self) -> u32 {
        self.dfa.distance(START)
    }

    /// The answer is whole and nothing may follow: stop without asking the model.
    pub(crate) fn complete(&self) -> bool {
        self.dfa.accepting(self.state) && !self.dfa.has_exits(self.state)
    }

    /// `logits` with every token that may not come next set to −∞; `budget` is how many
    /// tokens may follow the next one. `None` when no token may come next.
    pub(crate) fn mask(&mut self, logits: &[f32], budget: u32) -> Option<&[f32]> {
        self.masked.clear();
        self.masked.resize(logits.len(), f32::NEG_INFINITY);
        let mut any = false;
        let masked = &mut self.masked;
        self.trie.walk(&self.dfa, self.state, budget, |token, _| {
            if let (Some(slot), Some(&l)) =
                (masked.get_mut(token as usize), logits.get(token as usize))
            {
                *slot = l;
                any = true;
            }
        });
        if self.dfa.accepting(self.state) {
            for &stop in &self.stops {
                if let (Some(slot), Some(&l)) =
                    (masked.get_mut(stop as usize), logits.get(stop as usize))
                {
                    *slot = l;
                    any = true;
                }
            }
        }
        any.then_some(self.masked.as_slice())
    }

    /// Move past a token that writes `bytes`. False if the automaton refuses them, which the
    /// mask rules out.
    pub(crate) fn advance(&mut self, bytes: &[u8]) -> bool {
        self.state = self.dfa.walk(self.state, bytes);
        self.state != DEAD
    }
}
