//! Byte-level BPE as SmolLM2 was trained with it (llama.cpp's `smollm` pre-tokenizer).
//!
//! Text is split into words first: every numeric character on its own, then GPT-2's pattern
//! (contractions, letters, numbers and other symbols each with at most one leading space,
//! whitespace runs). Each word's UTF-8 bytes are spelt in GPT-2's printable byte alphabet and
//! merged pair by pair, the lowest-ranked merge first (the leftmost of equal ones), until no
//! merge applies; the pieces left are the tokens.

use std::collections::HashMap;

use regex::Regex;

/// GPT-2's split. Its `\s+(?!\S)` alternative needs look-ahead, which the regex crate does not
/// have: [`Bpe::words`] hands the last character of a whitespace run back to the next word
/// instead, which is what the look-ahead does.
const SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// A byte-level BPE vocabulary and its merges.
pub(crate) struct Bpe {
    vocab: HashMap<String, u32>,
    /// `(left, right)` → `(rank, merged id)`.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The printable character that stands for each byte.
    byte_chars: [char; 256],
    split: Regex,
}

impl Bpe {
    /// The BPE of `tokens` (by id) and `merges` (`"left right"`, by rank).
    pub(crate) fn new(tokens: &[String], merges: &[String]) -> Result<Self, String> {
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("the merge token {t:?} is not in the vocabulary"))
        };
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| format!("merge without a space: {m:?}"))?;
            merge_map.insert((id(a)?, id(b)?), (rank as u32, id(&format!("{a}{b}"))?));
        }
        let split = Regex::new(SPLIT).map_err(|e| format!("cannot build the split: {e}"))?;
        Ok(Self {
            vocab,
            merges: merge_map,
            byte_chars: byte_chars(),
            split,
        })
    }

    /// Append the ids of `text` (no special tokens in it) to `out`.
    pub(crate) fn encode(&self, text: &str, out: &mut Vec<u32>) {
        for piece in numbers_apart(text) {
            for word in self.words(piece) {
                self.encode_word(word, out);
            }
        }
    }

    /// GPT-2's words of `text`.
    fn words<'t>(&'t self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let mut at = 0;
        std::iter::from_fn(move || {
            let found = self.split.find_at(text, at)?;
            let word = &text[at..found.end()];
            let mut end = found.end();
            // A whitespace run followed by more text leaves its last character to the next
            // word (` world` rather than `world`): GPT-2's `\s+(?!\S)`.
            if end < text.len() && word.chars().all(char::is_whitespace) {
                let mut chars = word.chars();
                if let (Some(last), Some(_)) = (chars.next_back(), chars.next()) {
                    end -= last.len_utf8();
                }
            }
            let word = &text[at..end];
            at = end;
            Some(word)
        })
    }

    /// Append the tokens of one word to `out`.
    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        let mut spelt = [0u8; 4];
        // A byte whose character is not in the vocabulary is left out, as the reference BPE
        // does without an unknown token; GPT-2 vocabularies hold all 256.
        let mut symbols: Vec<u32> = word
            .bytes()
            .filter_map(|b| {
                let c: &str = self.byte_chars[usize::from(b)].encode_utf8(&mut spelt);
                self.vocab.get(c).copied()
            })
            .collect();
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    let &(rank, merged) = self.merges.get(&(pair[0], pair[1]))?;
                    Some((rank, i, merged))
                })
                .min();
            let Some((_, i, merged)) = best else {
                break;
            };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        out.extend(symbols);
    }
}

/// `text` cut so that every numeric character is a piece of its own.
fn numbers_apart(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        let end = if first.is_numeric() {
            first.len_utf8()
        } else {
            chars
                .find(|(_, c)| c.is_numeric())
                .map_or(rest.len(), |(i, _)| i)
        };
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// GPT-2's byte alphabet: printable bytes stand for themselves, the others for the characters
/// from U+0100 on, in byte order.
pub(crate) fn byte_chars() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut chars = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        chars[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
    }
    chars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Bpe {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc", "Ġ", "Ġa", "1", "2"]
            .map(String::from)
            .to_vec();
        let merges: Vec<String> = ["a b", "ab c", "b c", "Ġ a"].map(String::from).to_vec();
        Bpe::new(&tokens, &merges).expect("a valid BPE")
    }

    #[test]
    fn merges_go_lowest_rank_first() {
        let bpe = tiny();
        let mut ids = Vec::new();
        bpe.encode("abc", &mut ids);
        // `a b` (rank 0) before `b c` (rank 2), then `ab c`.
        assert_eq!(ids, [4]);
        ids.clear();
        bpe.encode("bca", &mut ids);
        assert_eq!(ids, [5, 0]);
    }

    #[test]
    fn numbers_and_spaces_split_as_gpt2_does() {
        let pieces: Vec<&str> = numbers_apart("ab12 c3").collect();
        assert_eq!(pieces, ["ab", "1", "2", " c", "3"]);
        let bpe = tiny();
        let words: Vec<&str> = bpe.words("a  b\n\nc   ").collect();
        assert_eq!(words, ["a", " ", " b", "\n", "\n", "c", "   "]);
        let words: Vec<&str> = bpe.words("don't 'll").collect();
        assert_eq!(words, ["don", "'t", " '", "ll"]);
    }

    #[test]
    fn unknown_merge_tokens_are_refused() {
        let tokens = ["a".to_owned()];
        let error = Bpe::new(&tokens, &["a b".to_owned()])
            .err()
            .expect("refused");
        assert!(error.contains("\"b\""), "{error}");
        let error = Bpe::new(&tokens, &["ab".to_owned()])
            .err()
            .expect("refused");
        assert!(error.contains("without a space"), "{error}");
    }
}
