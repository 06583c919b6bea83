//! Replacing findings with typed placeholders, and putting the originals back.
//!
//! Collisions: a text may already contain something shaped like a placeholder (`[EMAIL_1]`), and
//! a model's answer may echo it. So that `restore(redact(x)) == x` always holds, every
//! placeholder-shaped token in the input is itself redacted, to a fresh placeholder of its tag
//! whose original is the literal token. After redaction, every placeholder-shaped token in the
//! text is therefore one this mapping issued, and restoring is one unambiguous pass. (A token
//! cannot straddle a placeholder and the text around it, because placeholders are bracketed and
//! a token holds no bracket inside.)

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::{detect, Finding, PiiKind};

/// What `restore` recognises, and therefore what `redact` escapes when the input holds it.
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[(EMAIL|PHONE|CARD|IBAN|SSN|IP|SECRET)_[1-9][0-9]{0,8}\]")
        .expect("static pattern")
});

/// The placeholders of one request and the values behind them. It lives only in memory for the
/// request: it is deliberately neither `Serialize` nor `Clone`, and its `Debug` shows counts only.
#[derive(Default)]
pub struct Redactions {
    /// (kind, original) → placeholder, so a repeated value gets the same placeholder.
    placeholders: HashMap<(PiiKind, String), String>,
    /// placeholder → original.
    originals: HashMap<String, String>,
    /// Placeholders issued per kind, in [`PiiKind::ALL`] order.
    issued: [usize; PiiKind::ALL.len()],
}

impl Redactions {
    /// An empty mapping, for one request.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct values have been replaced.
    pub fn len(&self) -> usize {
        self.originals.len()
    }

    /// True when nothing has been replaced.
    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// Distinct values replaced per kind, kinds with none left out; never the values.
    pub fn counts(&self) -> Vec<(PiiKind, usize)> {
        PiiKind::ALL
            .into_iter()
            .zip(self.issued)
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn placeholder_for(&mut self, kind: PiiKind, original: &str) -> &str {
        let key = (kind, original.to_string());
        if !self.placeholders.contains_key(&key) {
            let issued = &mut self.issued[kind.index()];
            *issued += 1;
            let placeholder = format!("[{}_{}]", kind.tag(), issued);
            self.originals
                .insert(placeholder.clone(), original.to_string());
            self.placeholders.insert(key.clone(), placeholder);
        }
        self.placeholders
            .get(&key)
            .map(String::as_str)
            .unwrap_or_default()
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
    let findings = merge_literal_placeholders(text, detect(text, kinds));
    let mut redacted = String::with_capacity(text.len());
    let mut copied = 0;
    for finding in findings {
        let range = finding.range;
        redacted.push_str(&text[copied..range.start]);
        redacted.push_str(mapping.placeholder_for(finding.kind, &text[range.clone()]));
        copied = range.end;
    }
    redacted.push_str(&text[copied..]);
    redacted
}

/// Add the placeholder-shaped tokens already in `text` as findings of their tag's kind. Should
/// one overlap a detector's finding, the two become one span, so that neither the value nor the
/// token is left in the clear.
fn merge_literal_placeholders(text: &str, mut findings: Vec<Finding>) -> Vec<Finding> {
    let before = findings.len();
    findings.extend(PLACEHOLDER.captures_iter(text).filter_map(|caps| {
        let whole = caps.get(0)?;
        let kind = PiiKind::from_tag(caps.get(1)?.as_str())?;
        Some(Finding {
            kind,
            range: whole.range(),
        })
    }));
    if findings.len() == before {
        return findings;
    }
    findings.sort_by_key(|f| f.range.start);
    let mut merged: Vec<Finding> = Vec::with_capacity(findings.len());
    for finding in findings {
        match merged.last_mut() {
            Some(last) if finding.range.start < last.range.end => {
                last.range.end = last.range.end.max(finding.range.end);
            }
            _ => merged.push(finding),
        }
    }
    merged
}

/// Put the originals back wherever `text` (typically a model's answer) holds a placeholder from
/// `mapping`; other text, including unknown placeholders, is left as it is.
pub fn restore(text: &str, mapping: &Redactions) -> String {
    PLACEHOLDER
        .replace_all(text, |caps: &regex::Captures<'_>| {
            let token = caps.get(0).map(|m| m.as_str()).unwrap_or_default();
            mapping
                .originals
                .get(token)
                .cloned()
                .unwrap_or_else(|| token.to_string())
        })
        .into_owned()
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
        // The literal and the real address got different placeholders.
        assert_eq!(
            redacted,
            "template says [EMAIL_1], real one is [EMAIL_2], and [SSN_1]"
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
