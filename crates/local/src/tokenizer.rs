//! The model's tokenizer, rebuilt from the GGUF metadata as a byte-level BPE.
//!
//! The recipe reproduces llama.cpp's `smollm` pre-tokenizer: split every digit on its own, then
//! the GPT-2 byte-level split with no prefix space (a prefix space would make
//! `<|im_start|>user` come out wrong); control and user-defined tokens are matched whole before
//! any of that.

use std::collections::HashMap;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::AddedToken;

use crate::gguf::Gguf;
use crate::LocalError;

// llama.cpp's token types (GGUF `tokenizer.ggml.token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// Text to token ids and back, exactly as the model was trained.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The same tokenizer with special-token matching off, for text a user controls.
    literal: tokenizers::Tokenizer,
    /// The raw bytes each id stands for in output; empty for control tokens, which never show.
    token_bytes: Vec<Vec<u8>>,
    ids: HashMap<String, u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.token_bytes.len())
            .finish()
    }
}

impl Tokenizer {
    /// Build the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub(crate) fn from_gguf(file: &Gguf) -> Result<Self, String> {
        let tokens = string_array(file, "tokenizer.ggml.tokens")?;
        let merges = string_array(file, "tokenizer.ggml.merges")?;
        let types = match file.get("tokenizer.ggml.token_type") {
            Some(value) => value
                .as_array()
                .ok_or("tokenizer.ggml.token_type is not an array")?
                .iter()
                .map(|v| {
                    v.as_i32()
                        .ok_or_else(|| format!("a token type of {v:?}, not an integer"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            ));
        }

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| format!("merge without a space: {m:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| format!("cannot build the BPE model: {e}"))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &ty)| ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED)
            .map(|(t, &ty)| AddedToken::from(t.clone(), ty == TYPE_CONTROL))
            .collect();
        inner.add_special_tokens(&added);

        let unicode_to_byte = byte_level_inverse();
        let token_bytes = tokens
            .iter()
            .zip(&types)
            .map(|(t, &ty)| match ty {
                TYPE_CONTROL => Vec::new(),
                TYPE_USER_DEFINED => t.as_bytes().to_vec(),
                _ => t
                    .chars()
                    .flat_map(|c| match unicode_to_byte.get(&c) {
                        Some(&b) => vec![b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect(),
            })
            .collect();
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let mut literal = inner.clone();
        literal.set_encode_special_tokens(true);
        Ok(Self {
            inner,
            literal,
            token_bytes,
            ids,
        })
    }

    /// Token ids for `text`, with no BOS or other tokens added; special tokens written in the
    /// text (`<|im_start|>`) become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| LocalError::Inference(format!("cannot tokenize: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids for `text` read literally: `<|im_end|>` written in it is ordinary text, so
    /// message contents cannot forge turns of the chat template.
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let encoding = self
            .literal
            .encode(text, false)
            .map_err(|e| LocalError::Inference(format!("cannot tokenize: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text for `ids`, leaving out control tokens; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.bytes(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The id of a token written out (`<|im_end|>`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// How many tokens the vocabulary has.
    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// The bytes token `id` adds to the output (none for control tokens or unknown ids).
    pub(crate) fn bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }
}

fn string_array(file: &Gguf, key: &str) -> Result<Vec<String>, String> {
    let items = file
        .get(key)
        .ok_or_else(|| format!("metadata has no {key}"))?
        .as_array()
        .ok_or_else(|| format!("{key} is not an array"))?;
    items
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{key} holds {v:?}, not a string"))
        })
        .collect()
}

/// GPT-2's byte-level alphabet read backwards: the printable stand-in character for each byte.
fn byte_level_inverse() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(c, b);
    }
    map
}

/// Turns a stream of token bytes into text pieces that never end inside a UTF-8 character.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Add a token's bytes; returns the text that is now complete (possibly empty).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Checked by from_utf8 just above.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // A character cut short at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end, with a cut-off character shown as U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_back_half_characters() {
        let text = "né 日本 🦀";
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        for b in text.as_bytes() {
            let piece = stream.push(std::slice::from_ref(b));
            assert!(!piece.contains(char::REPLACEMENT_CHARACTER));
            out.push_str(&piece);
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes_and_flushes_cut_ends() {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(stream.push(&[0xE6, 0x97]), "");
        assert_eq!(stream.finish(), "\u{FFFD}");
    }

    #[test]
    fn byte_level_alphabet_covers_every_byte_once() {
        let map = byte_level_inverse();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }
}
