//! Email addresses.

use std::sync::LazyLock;

use regex::Regex;

use super::{Candidate, PiiKind, Rank};

// Dot-separated domain labels; the last one is checked to be an alphabetic TLD below rather than
// in the pattern, so that a trailing numeric label does not make the engine retry shorter domains.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+").expect("static pattern")
});

/// Image-name suffixes that make `icon@2x.png` look like an address.
const FILE_SUFFIXES: [&str; 7] = ["png", "jpg", "jpeg", "gif", "svg", "webp", "bmp"];

/// Push every email address in `text`.
pub(super) fn find(text: &str, out: &mut Vec<Candidate>) {
    for m in EMAIL.find_iter(text) {
        if let Some(range) = validate(m.as_str()) {
            let start = m.start() + range.start;
            out.push(Candidate::new(
                PiiKind::Email,
                Rank::Email,
                start..m.start() + range.end,
            ));
        }
    }
}

/// The address inside a candidate, relative to it; `None` when it is not one.
fn validate(candidate: &str) -> Option<std::ops::Range<usize>> {
    let at = candidate.find('@')?;
    // A local part may not start with a dot; leading dots are punctuation before the address.
    let start = candidate[..at].bytes().take_while(|&b| b == b'.').count();
    let local = &candidate[start..at];
    if local.is_empty() || local.ends_with('.') {
        return None;
    }
    let domain = &candidate[at + 1..];
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    let tld = domain.rsplit('.').next()?;
    let tld_ok = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic());
    let is_file = FILE_SUFFIXES
        .iter()
        .any(|suffix| tld.eq_ignore_ascii_case(suffix));
    (labels_ok && tld_ok && !is_file).then_some(start..candidate.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter().map(|c| &text[c.finding.range.clone()]).collect()
    }

    #[test]
    fn finds_addresses() {
        let cases = [
            ("mail jane.doe@example.com today", "jane.doe@example.com"),
            ("<j+tag@mail.example.co.uk>", "j+tag@mail.example.co.uk"),
            ("end of sentence a_b@ex-ample.org.", "a_b@ex-ample.org"),
            ("x@y.io", "x@y.io"),
            ("...dots@first.com", "dots@first.com"),
        ];
        for (text, want) in cases {
            assert_eq!(found(text), vec![want], "{text}");
        }
    }

    #[test]
    fn leaves_lookalikes() {
        for text in [
            "icon@2x.png",
            "user@localhost",
            "@handle",
            "a@b.c",
            "version 1.2.3@4.5",
            "foo@bar.123",
            "name.@example.com",
            "bad@-host.com",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }
}
