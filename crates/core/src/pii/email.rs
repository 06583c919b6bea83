//! Email addresses.

use std::ops::Range;

use super::{Candidate, PiiKind, Rank};

/// Image-name suffixes that make `icon@2x.png` look like an address.
const FILE_SUFFIXES: [&str; 7] = ["png", "jpg", "jpeg", "gif", "svg", "webp", "bmp"];

/// Push every email address in `text`. Candidates are read outwards from each `@`: the local part
/// back to the first byte an address cannot hold, the domain on to the end of its dot-separated
/// labels.
pub(super) fn find(text: &str, out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    let mut search = 0;
    while let Some(offset) = text.get(search..).and_then(|rest| rest.find('@')) {
        let at = search + offset;
        search = at + 1;
        let local = bytes[from..at]
            .iter()
            .rev()
            .take_while(|&&b| is_local(b))
            .count();
        let Some(domain_end) = domain_end(bytes, at + 1).filter(|_| local > 0) else {
            continue;
        };
        let candidate_start = at - local;
        // The candidate is used up whether or not it is an address, as a left-to-right search
        // would: a later `@` does not reach back into it.
        from = domain_end;
        search = domain_end;
        if let Some(range) = validate(&text[candidate_start..domain_end]) {
            out.push(Candidate::new(
                PiiKind::Email,
                Rank::Email,
                candidate_start + range.start..candidate_start + range.end,
            ));
        }
    }
}

/// `[A-Za-z0-9._%+-]`: what the local part is taken from.
fn is_local(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// `[A-Za-z0-9-]`: what a domain label is taken from.
fn is_label(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-'
}

/// Where the dot-separated labels from `start` end, when there are at least two; a dot not
/// followed by a label ends them.
fn domain_end(bytes: &[u8], start: usize) -> Option<usize> {
    let label = |from: usize| {
        bytes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| is_label(b))
            .count()
    };
    let first = label(start);
    if first == 0 {
        return None;
    }
    let mut end = start + first;
    let mut labels = 1;
    while bytes.get(end) == Some(&b'.') {
        let next = label(end + 1);
        if next == 0 {
            break;
        }
        end += 1 + next;
        labels += 1;
    }
    (labels >= 2).then_some(end)
}

/// The address inside a candidate, relative to it; `None` when it is not one.
fn validate(candidate: &str) -> Option<Range<usize>> {
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
