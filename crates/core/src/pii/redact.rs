//! Replacing findings with typed placeholders, and putting the originals back.
//!
//! Collisions: a text may already contain something shaped like a placeholder (`[EMAIL_1]`), and
//! a model's answer may echo it. So that `restore(redact(x)) == x` always holds, every
//! placeholder-shaped token in the input is itself redacted, to a placeholder of its tag whose
//! original is the literal token: the token itself when this mapping has not used its number
//! yet, a fresh one otherwise. After redaction, every placeholder-shaped token in the text is
//! therefore one this mapping issued, and restoring is one unambiguous pass. (A token cannot
//! straddle a placeholder and the text around it, because placeholders are bracketed and a
//! token holds no bracket inside.) Keeping free numbers also makes redaction idempotent:
//! redacting a redacted text with a fresh mapping changes nothing.

use std::collections::HashMap;
use std::ops::Range;

use super::{detect, Finding, PiiKind};

/// The placeholders of one request and the values behind them. It lives only in memory for the
/// request: it is deliberately neither `Serialize` nor `Clone`, and its `Debug` shows counts only.
#[derive(Default)]
pub struct Redactions {
    /// Per kind, in [`PiiKind::ALL`] order: original → placeholder number, so a repeated value
    /// gets the same placeholder.
    numbers: [HashMap<Box<str>, u32>; PiiKind::ALL.len()],
    /// Per kind: placeholder number → original.
    originals: [HashMap<u32, Box<str>>; PiiKind::ALL.len()],
    /// Per kind: every number below this one is taken.
    next_free: [u32; PiiKind::ALL.len()],
}

impl Redactions {
    /// An empty mapping, for one request.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct values have been replaced.
    pub fn len(&self) -> usize {
        self.originals.iter().map(HashMap::len).sum()
    }

    /// True when nothing has been replaced.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct values replaced per kind, kinds with none left out; never the values.
    pub fn counts(&self) -> Vec<(PiiKind, usize)> {
        PiiKind::ALL
            .into_iter()
            .map(|kind| (kind, self.originals[kind.index()].len()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Let a literal placeholder in the input stand for itself, when its number is still free.
    fn claim(&mut self, kind: PiiKind, number: u32, token: &str) {
        let i = kind.index();
        if !self.numbers[i].contains_key(token) && !self.originals[i].contains_key(&number) {
            self.numbers[i].insert(token.into(), number);
            self.originals[i].insert(number, token.into());
        }
    }

    /// The placeholder number of `original`, issuing the lowest free one for a new value.
    fn number_for(&mut self, kind: PiiKind, original: &str) -> u32 {
        let i = kind.index();
        if let Some(&number) = self.numbers[i].get(original) {
            return number;
        }
        let mut number = self.next_free[i].max(1);
        while self.originals[i].contains_key(&number) {
            number += 1;
        }
        self.next_free[i] = number + 1;
        self.numbers[i].insert(original.into(), number);
        self.originals[i].insert(number, original.into());
        number
    }

    fn original(&self, kind: PiiKind, number: u32) -> Option<&str> {
        self.originals[kind.index()].get(&number).map(|o| &**o)
    }
}

impl std::fmt::Debug for Redactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (kind, count) in self.counts() {
            map.entry(&kind.as_str(), &count);
        }
        map.finish()
    }
}

/// Replace every finding of the given kinds with a placeholder such as `[EMAIL_1]`, recording
/// the originals in `mapping`; the same value gets the same placeholder across calls.
pub fn redact(text: &str, kinds: &[PiiKind], mapping: &mut Redactions) -> String {
    let spans = merge_literal_placeholders(text, detect(text, kinds));
    // Literal placeholders claim their own numbers first, so that values found before them in
    // the text do not take those numbers.
    for span in &spans {
        if let Some(number) = span.literal {
            mapping.claim(span.kind, number, &text[span.range.clone()]);
        }
    }
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for span in spans {
        let range = span.range;
        redacted.push_str(&text[copied..range.start]);
        let number = mapping.number_for(span.kind, &text[range.clone()]);
        push_placeholder(&mut redacted, span.kind, number);
        copied = range.end;
    }
    redacted.push_str(&text[copied..]);
    redacted
}

/// Replace all of `text` with one placeholder of `kind`: a value that is personal data or a
/// secret by where it stands (under a key named `password`), whatever it looks like. A text
/// that is already a placeholder, or empty, stays as it is.
pub fn redact_whole(text: &str, kind: PiiKind, mapping: &mut Redactions) -> String {
    let already = text.starts_with('[')
        && placeholder_at(text.as_bytes(), 0).is_some_and(|p| p.range.end == text.len());
    if text.is_empty() || already {
        return text.to_string();
    }
    let mut redacted = String::new();
    push_placeholder(&mut redacted, kind, mapping.number_for(kind, text));
    redacted
}

/// Append `[TAG_number]`.
pub(super) fn push_placeholder(out: &mut String, kind: PiiKind, number: u32) {
    out.push('[');
    out.push_str(kind.tag());
    out.push('_');
    let mut digits = [0u8; 10];
    let mut n = number;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
    out.push(']');
}

/// A span to replace: a finding, a literal placeholder, or both merged.
struct Span {
    kind: PiiKind,
    range: Range<usize>,
    /// The literal placeholder's number, when the span is exactly one.
    literal: Option<u32>,
}

/// Add the placeholder-shaped tokens already in `text` as spans of their tag's kind. Should one
/// overlap a detector's finding, the two become one span, so that neither the value nor the
/// token is left in the clear.
fn merge_literal_placeholders(text: &str, findings: Vec<Finding>) -> Vec<Span> {
    let mut literals = placeholders(text).peekable();
    let mut findings = findings.into_iter().peekable();
    let mut spans: Vec<Span> = Vec::new();
    loop {
        let take_literal = match (literals.peek(), findings.peek()) {
            (Some(literal), Some(finding)) => literal.range.start < finding.range.start,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_literal {
            literals.next().map(|p| Span {
                kind: p.kind,
                literal: Some(p.number),
                range: p.range,
            })
        } else {
            findings.next().map(|f| Span {
                kind: f.kind,
                range: f.range,
                literal: None,
            })
        };
        let Some(next) = next else { break };
        match spans.last_mut() {
            Some(last) if next.range.start < last.range.end => {
                last.range.end = last.range.end.max(next.range.end);
                last.literal = None;
            }
            _ => spans.push(next),
        }
    }
    spans
}

/// A placeholder-shaped token: `[`, a kind's tag, `_`, a number without leading zero that fits a
/// `u32`, `]`.
struct Placeholder {
    kind: PiiKind,
    number: u32,
    range: Range<usize>,
}

/// Every placeholder-shaped token in `text`, in order.
fn placeholders(text: &str) -> impl Iterator<Item = Placeholder> + '_ {
    let mut search = 0;
    std::iter::from_fn(move || {
        while let Some(offset) = text.get(search..).and_then(|rest| rest.find('[')) {
            let start = search + offset;
            search = start + 1;
            if let Some(placeholder) = placeholder_at(text.as_bytes(), start) {
                search = placeholder.range.end;
                return Some(placeholder);
            }
        }
        None
    })
}

/// The placeholder-shaped token starting with the `[` at `start`, if there is one.
fn placeholder_at(bytes: &[u8], start: usize) -> Option<Placeholder> {
    let rest = &bytes[start + 1..];
    let tag_len = rest
        .iter()
        .take(7)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    let tag = std::str::from_utf8(&rest[..tag_len]).ok()?;
    let kind = PiiKind::from_tag(tag)?;
    let digits_start = tag_len + 1;
    let digits = rest
        .get(digits_start..)
        .unwrap_or_default()
        .iter()
        .take(11)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let close = digits_start + digits;
    let shaped = rest.get(tag_len) == Some(&b'_')
        && digits > 0
        && rest[digits_start] != b'0'
        && rest.get(close) == Some(&b']');
    if !shaped {
        return None;
    }
    let number = rest[digits_start..close].iter().try_fold(0u32, |n, d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })?;
    Some(Placeholder {
        kind,
        number,
        range: start..start + 1 + close + 1,
    })
}

/// Put the originals back wherever `text` (typically a model's answer) holds a placeholder from
/// `mapping`; other text, including unknown placeholders, is left as it is.
pub fn restore(text: &str, mapping: &Redactions) -> String {
    let mut restored = String::with_capacity(text.len());
    let mut copied = 0;
    for placeholder in placeholders(text) {
        if let Some(original) = mapping.original(placeholder.kind, placeholder.number) {
            restored.push_str(&text[copied..placeholder.range.start]);
            restored.push_str(original);
            copied = placeholder.range.end;
        }
    }
    restored.push_str(&text[copied..]);
    restored
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[PiiKind] = &PiiKind::ALL;

    #[test]
    fn replaces_with_typed_numbered_placeholders() {
        let mut mapping = Redactions::new();
        let text =
            "Mail a@example.com or b@example.com, card 4111 1111 1111 1111, a@example.com again";
        let redacted = redact(text, ALL, &mut mapping);
        assert_eq!(
            redacted,
            "Mail [EMAIL_1] or [EMAIL_2], card [CARD_1], [EMAIL_1] again"
        );
        assert_eq!(restore(&redacted, &mapping), text);
    }

    #[test]
    fn placeholders_are_consistent_across_texts_of_one_request() {
        let mut mapping = Redactions::new();
        let system = redact("Escalate to boss@corp.example", ALL, &mut mapping);
        let user = redact(
            "I am ann@corp.example, cc boss@corp.example",
            ALL,
            &mut mapping,
        );
        assert_eq!(system, "Escalate to [EMAIL_1]");
        assert_eq!(user, "I am [EMAIL_2], cc [EMAIL_1]");
        let answer = "Forwarded [EMAIL_2]'s note to [EMAIL_1]; unknown [EMAIL_9] kept.";
        assert_eq!(
            restore(answer, &mapping),
            "Forwarded ann@corp.example's note to boss@corp.example; unknown [EMAIL_9] kept."
        );
    }

    #[test]
    fn literal_placeholders_in_the_input_round_trip() {
        let mut mapping = Redactions::new();
        let text = "template says [EMAIL_1], real one is x@y.com, and [SSN_3]";
        let redacted = redact(text, &[PiiKind::Email], &mut mapping);
        assert!(!redacted.contains("x@y.com"));
        assert_eq!(restore(&redacted, &mapping), text);
        // The literals keep their free numbers; the real address gets another.
        assert_eq!(
            redacted,
            "template says [EMAIL_1], real one is [EMAIL_2], and [SSN_3]"
        );
    }

    #[test]
    fn only_requested_kinds_are_redacted() {
        let mut mapping = Redactions::new();
        let text = "a@example.com from 10.0.0.1";
        assert_eq!(
            redact(text, &[PiiKind::Ip], &mut mapping),
            "a@example.com from [IP_1]"
        );
    }

    #[test]
    fn debug_shows_counts_never_values() {
        let mut mapping = Redactions::new();
        redact("a@example.com b@example.com 10.0.0.1", ALL, &mut mapping);
        let debug = format!("{mapping:?}");
        assert_eq!(debug, r#"{"email": 2, "ip": 1}"#);
        assert_eq!(mapping.len(), 3);
        assert_eq!(
            mapping.counts(),
            vec![(PiiKind::Email, 2), (PiiKind::Ip, 1)]
        );
    }
}
