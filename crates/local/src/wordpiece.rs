//! BERT's WordPiece tokenizer, as the sentence encoder's `tokenizer.json` describes it.
//!
//! Special tokens written in the text (`[MASK]`) are matched whole first. The text between
//! them is cleaned (control characters dropped, every whitespace a space), CJK ideographs are
//! spaced apart, accents are stripped (canonical decomposition, then non-spacing marks
//! dropped) and letters lower-cased; it is split at whitespace and around each punctuation
//! character, and every word is cut greedily into the longest vocabulary pieces, `##` marking
//! the ones that continue a word (a word that cannot be cut is `[UNK]`). The ids are truncated
//! to leave room for `[CLS]` before and `[SEP]` after.
//!
//! Characters are classified with the same Unicode tables as Hugging Face's tokenizers, which
//! the encoder's reference (sentence-transformers) runs: a character those tables do not know
//! is dropped as they drop it, so both give the same ids.

use std::collections::HashMap;

use serde_json::Value as Json;
use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

/// A WordPiece tokenizer with BERT's normalisation.
pub(crate) struct WordPiece {
    vocab: HashMap<String, u32>,
    /// Tokens matched whole in the raw text, with their ids.
    added: Vec<(String, u32)>,
    unk: u32,
    cls: u32,
    sep: u32,
    prefix: String,
    max_word_chars: usize,
    /// The longest result, `[CLS]` and `[SEP]` included.
    max_tokens: usize,
    clean_text: bool,
    chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
}

impl WordPiece {
    /// The tokenizer a `tokenizer.json` describes, truncating to `max_tokens`; an error names
    /// what in the file is missing or not BERT's.
    pub(crate) fn from_json(text: &str, max_tokens: usize) -> Result<Self, String> {
        let json: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let field = |v: &Json, path: &str| -> Result<Json, String> {
            path.split('.')
                .try_fold(v, |v, key| v.get(key))
                .cloned()
                .ok_or_else(|| format!("it has no {path}"))
        };
        let kind = |path: &str, want: &str| -> Result<(), String> {
            match field(&json, path)?.as_str() {
                Some(t) if t == want => Ok(()),
                other => Err(format!("its {path} is {other:?}, not {want}")),
            }
        };
        kind("model.type", "WordPiece")?;
        kind("normalizer.type", "BertNormalizer")?;
        kind("pre_tokenizer.type", "BertPreTokenizer")?;
        let flag = |path: &str| {
            field(&json, path)?
                .as_bool()
                .ok_or(format!("{path} is not a boolean"))
        };
        let lowercase = flag("normalizer.lowercase")?;
        let strip_accents = match field(&json, "normalizer.strip_accents")? {
            Json::Null => lowercase,
            Json::Bool(b) => b,
            other => return Err(format!("normalizer.strip_accents is {other}")),
        };
        let vocab: HashMap<String, u32> = field(&json, "model.vocab")?
            .as_object()
            .ok_or("model.vocab is not an object")?
            .iter()
            .map(|(token, id)| {
                let id = id.as_u64().and_then(|i| u32::try_from(i).ok());
                id.map(|id| (token.clone(), id))
                    .ok_or_else(|| format!("the id of {token:?} is not a number"))
            })
            .collect::<Result<_, _>>()?;
        let id_of = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {token}"))
        };
        let string = |path: &str| {
            field(&json, path)?
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("{path} is not a string"))
        };
        let (cls, sep) = template_ends(&field(&json, "post_processor")?)?;
        Ok(Self {
            unk: id_of(&string("model.unk_token")?)?,
            cls: id_of(&cls)?,
            sep: id_of(&sep)?,
            added: added_tokens(&field(&json, "added_tokens")?)?,
            prefix: string("model.continuing_subword_prefix")?,
            max_word_chars: field(&json, "model.max_input_chars_per_word")?
                .as_u64()
                .ok_or("model.max_input_chars_per_word is not a number")?
                as usize,
            max_tokens,
            clean_text: flag("normalizer.clean_text")?,
            chinese_chars: flag("normalizer.handle_chinese_chars")?,
            strip_accents,
            lowercase,
            vocab,
        })
    }

    /// `[CLS]`, the ids of `text` (truncated), `[SEP]`.
    pub(crate) fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.cls];
        let mut rest = text;
        while !rest.is_empty() {
            let (before, token) = next_added(rest, &self.added);
            for word in words(&self.normalize(&rest[..before])) {
                self.word_pieces(word, &mut ids);
            }
            let Some((len, id)) = token else { break };
            ids.push(id);
            rest = &rest[before + len..];
        }
        ids.truncate(self.max_tokens.saturating_sub(1).max(1));
        ids.push(self.sep);
        ids
    }

    fn normalize(&self, text: &str) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        if self.clean_text {
            chars.retain(|&c| !(c == '\0' || c == '\u{fffd}' || is_control(c)));
            for c in &mut chars {
                if is_whitespace(*c) {
                    *c = ' ';
                }
            }
        }
        if self.chinese_chars {
            chars = chars
                .into_iter()
                .flat_map(|c| match is_chinese(c) {
                    true => vec![' ', c, ' '],
                    false => vec![c],
                })
                .collect();
        }
        let mut text: String = chars.into_iter().collect();
        if self.strip_accents {
            text = text.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
        }
        if self.lowercase {
            text = text.chars().flat_map(char::to_lowercase).collect();
        }
        text
    }

    /// Append the pieces of `word`, or `[UNK]` if it cannot be cut into vocabulary pieces.
    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        if word.chars().count() > self.max_word_chars {
            ids.push(self.unk);
            return;
        }
        let first = ids.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let found = loop {
                if start == end {
                    break None;
                }
                let piece = &word[start..end];
                let id = match start {
                    0 => self.vocab.get(piece),
                    _ => self.vocab.get(&format!("{}{piece}", self.prefix)),
                };
                if let Some(&id) = id {
                    break Some(id);
                }
                end -= piece.chars().next_back().map_or(1, char::len_utf8);
            };
            let Some(id) = found else {
                ids.truncate(first);
                ids.push(self.unk);
                return;
            };
            ids.push(id);
            start = end;
        }
    }
}

/// The special tokens a template post-processor puts before and after a single text.
fn template_ends(post: &Json) -> Result<(String, String), String> {
    let special = |item: &Json| {
        item.get("SpecialToken")
            .and_then(|s| s.get("id"))
            .and_then(Json::as_str)
            .map(str::to_owned)
    };
    match (post.get("type").and_then(Json::as_str), post.get("single")) {
        (Some("TemplateProcessing"), Some(Json::Array(single))) => match &single[..] {
            [cls, text, sep] if text.get("Sequence").is_some() => special(cls)
                .zip(special(sep))
                .ok_or_else(|| "its post_processor does not wrap a text in two tokens".to_owned()),
            _ => Err("its post_processor does not wrap a text in two tokens".to_owned()),
        },
        (Some("BertProcessing"), _) => {
            let token = |key: &str| post.get(key)?.get(0)?.as_str().map(str::to_owned);
            token("cls")
                .zip(token("sep"))
                .ok_or_else(|| "its post_processor names no cls or sep".to_owned())
        }
        (kind, _) => Err(format!("its post_processor is {kind:?}, not BERT's")),
    }
}

/// The added tokens, each to be matched whole in the raw text.
fn added_tokens(added: &Json) -> Result<Vec<(String, u32)>, String> {
    let items = added.as_array().ok_or("added_tokens is not a list")?;
    items
        .iter()
        .map(|t| {
            let content = t.get("content").and_then(Json::as_str);
            let id = t
                .get("id")
                .and_then(Json::as_u64)
                .and_then(|i| u32::try_from(i).ok());
            let plain = ["single_word", "lstrip", "rstrip", "normalized"]
                .iter()
                .all(|k| t.get(k).and_then(Json::as_bool) == Some(false));
            match (content, id) {
                (Some(content), Some(id)) if plain && !content.is_empty() => {
                    Ok((content.to_owned(), id))
                }
                _ => Err(format!("an added token this tokenizer cannot match: {t}")),
            }
        })
        .collect()
}

/// Where the first of `added` starts in `text` (its end if none), and that token's length and
/// id: the leftmost match, the longest of those that start there.
fn next_added(text: &str, added: &[(String, u32)]) -> (usize, Option<(usize, u32)>) {
    for (at, _) in text.char_indices() {
        let rest = &text[at..];
        let found = added
            .iter()
            .filter(|(t, _)| rest.starts_with(t.as_str()))
            .max_by_key(|(t, _)| t.len());
        if let Some((t, id)) = found {
            return (at, Some((t.len(), *id)));
        }
    }
    (text.len(), None)
}

/// Words of normalised text: split at whitespace, and around every punctuation character.
fn words(text: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for chunk in text.split(char::is_whitespace).filter(|c| !c.is_empty()) {
        let mut start = 0;
        for (i, c) in chunk.char_indices() {
            if c.is_ascii_punctuation() || c.is_punctuation() {
                if start < i {
                    words.push(&chunk[start..i]);
                }
                words.push(&chunk[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        if start < chunk.len() {
            words.push(&chunk[start..]);
        }
    }
    words
}

/// Whitespace, tab and line breaks included.
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control, format, private-use, surrogate and unassigned characters, but not tab and line
/// breaks (they count as whitespace).
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// CJK ideographs, which BERT reads one by one.
fn is_chinese(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x2_0000..=0x2_A6DF
            | 0x2_A700..=0x2_B73F
            | 0x2_B740..=0x2_B81F
            | 0x2_B920..=0x2_CEAF
            | 0xF900..=0xFAFF
            | 0x2_F800..=0x2_FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(max_tokens: usize) -> WordPiece {
        let json = serde_json::json!({
            "added_tokens": [
                {"id": 5, "content": "[MASK]", "single_word": false, "lstrip": false,
                 "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                           "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing", "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}]},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                      "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                      "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "cafe": 3, "play": 4,
                                "[MASK]": 5, "##ing": 6, "##s": 7, "!": 8, "日": 9}}
        });
        WordPiece::from_json(&json.to_string(), max_tokens).expect("a valid tokenizer")
    }

    #[test]
    fn words_are_lowercased_unaccented_and_cut_into_pieces() {
        let wp = tiny(16);
        assert_eq!(wp.encode("Café PLAYING!"), [1, 3, 4, 6, 8, 2]);
        assert_eq!(wp.encode("plays 日本"), [1, 4, 7, 9, 0, 2]);
        // A word that cannot be cut whole is one [UNK], not a few pieces and one.
        assert_eq!(wp.encode("playx"), [1, 0, 2]);
        assert_eq!(wp.encode(""), [1, 2]);
    }

    #[test]
    fn special_tokens_are_matched_before_normalising() {
        let wp = tiny(16);
        // Lower-case `[mask]` is text: `[`, `mask` and `]`, none of them in this vocabulary.
        assert_eq!(wp.encode("play[MASK]cafe [mask]"), [1, 4, 5, 3, 0, 0, 0, 2]);
    }

    #[test]
    fn long_texts_are_truncated_inside_cls_and_sep() {
        let wp = tiny(4);
        assert_eq!(wp.encode("cafe cafe cafe cafe"), [1, 3, 3, 2]);
    }

    #[test]
    fn other_tokenizers_are_refused_by_name() {
        let error = WordPiece::from_json(r#"{"model": {"type": "BPE"}}"#, 8)
            .err()
            .expect("refused");
        assert!(error.contains("model.type"), "{error}");
        assert!(WordPiece::from_json("{", 8).is_err());
    }
}
