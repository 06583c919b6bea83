//! The model's tokenizer, rebuilt from the GGUF metadata: control tokens (`<|im_start|>`) are
//! matched whole, and the text between them goes through the byte-level BPE ([`crate::bpe`])
//! with llama.cpp's `smollm` pre-tokenizer, no prefix space (which would make
//! `<|im_start|>user` come out wrong).

use std::collections::HashMap;

use crate::bpe::{byte_chars, Bpe};
use crate::gguf::Gguf;
use crate::LocalError;

// llama.cpp's token types (GGUF `tokenizer.ggml.token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// Text to token ids and back, exactly as the model was trained.
pub struct Tokenizer {
    bpe: Bpe,
    /// Control tokens with their ids: matched whole in markup, never in literal text.
    control: Vec<(String, u32)>,
    /// User-defined tokens with their ids: matched whole in any text.
    user_defined: Vec<(String, u32)>,
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

/// A stretch of text, or a token matched whole in it.
enum Piece<'t> {
    Text(&'t str),
    Token(u32),
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
        let bpe = Bpe::new(&tokens, &merges)?;
        // Where a string appears twice in the vocabulary, the later id is the one text maps to.
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let of_type = |wanted: i32| -> Vec<(String, u32)> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(t, &ty)| ty == wanted && !t.is_empty())
                .map(|(t, _)| (t.clone(), ids[t]))
                .collect()
        };
        let control = of_type(TYPE_CONTROL);
        let user_defined = of_type(TYPE_USER_DEFINED);

        let unicode_to_byte: HashMap<char, u8> = (0..=255u8)
            .map(|b| (byte_chars()[usize::from(b)], b))
            .collect();
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
        Ok(Self {
            bpe,
            control,
            user_defined,
            token_bytes,
            ids,
        })
    }

    /// Token ids for `text`, with no BOS or other tokens added; special tokens written in the
    /// text (`<|im_start|>`) become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        Ok(self.encode_pieces(text, &self.control))
    }

    /// Token ids for `text` read literally: `<|im_end|>` written in it is ordinary text, so
    /// message contents cannot forge turns of the chat template.
    pub fn encode_literal(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        Ok(self.encode_pieces(text, &[]))
    }

    /// Control tokens of `control` matched first, then user-defined ones in the text between,
    /// then the BPE.
    fn encode_pieces(&self, text: &str, control: &[(String, u32)]) -> Vec<u32> {
        let mut ids = Vec::new();
        for piece in split_on(text, control) {
            let text = match piece {
                Piece::Token(id) => {
                    ids.push(id);
                    continue;
                }
                Piece::Text(text) => text,
            };
            for piece in split_on(text, &self.user_defined) {
                match piece {
                    Piece::Token(id) => ids.push(id),
                    Piece::Text(text) => self.bpe.encode(text, &mut ids),
                }
            }
        }
        ids
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

/// `text` cut around the `tokens` in it, each matched whole: at the leftmost place one starts,
/// the longest that starts there.
fn split_on<'t>(text: &'t str, tokens: &[(String, u32)]) -> Vec<Piece<'t>> {
    let mut pieces = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at < text.len() && !tokens.is_empty() {
        let rest = &text[at..];
        let found = tokens
            .iter()
            .filter(|(t, _)| rest.starts_with(t.as_str()))
            .max_by_key(|(t, _)| t.len());
        match found {
            Some((token, id)) => {
                if start < at {
                    pieces.push(Piece::Text(&text[start..at]));
                }
                pieces.push(Piece::Token(*id));
                at += token.len();
                start = at;
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    if start < text.len() {
        pieces.push(Piece::Text(&text[start..]));
    }
    pieces
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
        let chars = byte_chars();
        let distinct: std::collections::HashSet<char> = chars.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(chars[usize::from(b' ')], 'Ġ');
        assert_eq!(chars[usize::from(b'\n')], 'Ċ');
        assert_eq!(chars[usize::from(b'a')], 'a');
    }

    #[test]
    fn tokens_split_leftmost_then_longest() {
        let tokens = [
            ("<a>".to_owned(), 1),
            ("<a><b>".to_owned(), 2),
            ("b>".to_owned(), 3),
        ];
        let pieces: Vec<String> = split_on("x<a><b>y<a>b>", &tokens)
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t.to_owned(),
                Piece::Token(id) => format!("#{id}"),
            })
            .collect();
        assert_eq!(pieces, ["x", "#2", "y", "#1", "#3"]);
    }
}
