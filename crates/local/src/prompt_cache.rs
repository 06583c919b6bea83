//! Prompts read lately, with their KV caches: a prompt that starts like one of them reads only
//! the rest.
//!
//! A workflow's runs share the chat template, the system prompt and the instructions ahead of
//! each input, so an eval, a batch or a stream of API calls re-reads the same first tokens every
//! time. The inference thread keeps the caches of its last few prompts and starts a new prompt
//! from the longest prefix one of them holds.
//!
//! The answer is the one a fresh read gives, to the bit: a prompt position's keys and values
//! depend only on the tokens up to it, and every prompt chunk is read with the same arithmetic
//! whatever rows share it ([`crate::q8`]), as long as no chunk is a single token (which reads
//! like a decoding step). So a reused prefix always leaves at least two tokens to read, and
//! [`crate::generate`] never cuts a one-token chunk off a longer prompt.

use std::collections::VecDeque;

use crate::llama::{Cache, Model};

/// Prompts kept: a few workflows interleaved on one server each keep their prefix.
const ENTRIES: usize = 4;
/// Tokens kept in all, which bounds the memory: SmolLM2's cache takes 46 KB a token (30 layers
/// of 192 keys and 192 values in `f32`), so about 94 MB at most.
const BUDGET_TOKENS: usize = 2048;
/// A shared prefix shorter than this is read again rather than copied.
const MIN_SHARED: usize = 16;

struct Entry {
    tokens: Vec<u32>,
    cache: Cache,
}

/// The inference thread's recent prompts, most recent first.
#[derive(Default)]
pub(crate) struct PromptCache {
    entries: VecDeque<Entry>,
}

impl PromptCache {
    /// The longest prefix of `prompt` a kept prompt shares, as a cache of `model` over it with
    /// room for `expected` positions, and its length; `None` when no prefix is worth reusing.
    pub(crate) fn lookup(
        &mut self,
        model: &Model,
        prompt: &[u32],
        expected: usize,
    ) -> Option<(usize, Cache)> {
        // At least two tokens are left to read: one would be read as a decoding step is.
        let most = prompt.len().checked_sub(2)?;
        let (at, shared) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, shared_prefix(&e.tokens, prompt).min(most)))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
        if shared < MIN_SHARED {
            return None;
        }
        let entry = self.entries.remove(at)?;
        let cache = model.cache_prefix(&entry.cache, shared, expected);
        self.entries.push_front(entry);
        Some((shared, cache))
    }

    /// Keep `prompt`, read into `cache` (which holds exactly its positions).
    pub(crate) fn remember(&mut self, prompt: &[u32], cache: &Cache) {
        if prompt.len() < MIN_SHARED + 2 || prompt.len() > BUDGET_TOKENS {
            return;
        }
        // A kept prompt this one extends (or repeats) has nothing more to offer.
        self.entries.retain(|e| !prompt.starts_with(&e.tokens));
        self.entries.push_front(Entry {
            tokens: prompt.to_vec(),
            cache: cache.clone(),
        });
        let mut total: usize = self.entries.iter().map(|e| e.tokens.len()).sum();
        while self.entries.len() > ENTRIES || total > BUDGET_TOKENS {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            total -= oldest.tokens.len();
        }
    }
}

fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::shared_prefix;

    #[test]
    fn shared_prefixes() {
        assert_eq!(shared_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(shared_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(shared_prefix(&[], &[1]), 0);
        assert_eq!(shared_prefix(&[5], &[1]), 0);
    }
}
