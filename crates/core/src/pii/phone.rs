//! Phone numbers: international `+CC …`, North American, and national trunk-prefix forms.

use std::sync::LazyLock;

use regex::Regex;

use super::boundary::{each_match, number_end, number_start};
use super::{Candidate, PiiKind, Rank};

/// E.164 caps a number at 15 digits, country code included.
const MAX_INTERNATIONAL_DIGITS: usize = 15;
/// Shorter `+` runs are more often scores or amounts than phone numbers.
const MIN_INTERNATIONAL_DIGITS: usize = 8;

static INTERNATIONAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\+[1-9][0-9]{0,2}(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,7}")
        .expect("static pattern")
});

// NANP: area code and exchange; the area code cannot start with 0 or 1.
static NORTH_AMERICAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[.\-])[0-9]{3}[.\-][0-9]{4}")
        .expect("static pattern")
});

// A trunk prefix `0` plus area code (3–6 digits in all), one separator and the subscriber
// number; or the French pairs `01 23 45 67 89`. One more block (UK `020 7946 0958`) is added by
// hand, so that a match can fall back to the shorter form when the longer one runs into the next
// number.
static NATIONAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:\(0[1-9][0-9]{1,4}\) ?|0[1-9][0-9]{1,4}[ /\-])[0-9]{3,8}|0[1-9](?:[ .][0-9]{2}){4}",
    )
    .expect("static pattern")
});

static NATIONAL_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\A[ \-][0-9]{3,4}").expect("static pattern"));

/// Push every phone number in `text`.
pub(super) fn find(text: &str, out: &mut Vec<Candidate>) {
    each_match(&INTERNATIONAL, text, |m| {
        let ends_ok = |len: usize| number_end(text, m.start() + len);
        let Some(len) = international_len(m.as_str(), ends_ok) else {
            return false;
        };
        let ok = number_start(text, m.start());
        if ok {
            push(out, m.start()..m.start() + len);
        }
        ok
    });
    each_match(&NORTH_AMERICAN, text, |m| {
        let ok = consistent_separators(m.as_str())
            && number_start(text, m.start())
            && number_end(text, m.end());
        if ok {
            push(out, m.range());
        }
        ok
    });
    each_match(&NATIONAL, text, |m| {
        let longer = NATIONAL_BLOCK
            .find(&text[m.end()..])
            .map(|block| m.end() + block.end());
        let digits = |end: usize| {
            text[m.start()..end]
                .bytes()
                .filter(u8::is_ascii_digit)
                .count()
        };
        let fits = |end: &usize| number_end(text, *end) && (8..=12).contains(&digits(*end));
        let Some(end) = longer.filter(fits).or(Some(m.end()).filter(fits)) else {
            return false;
        };
        let ok = number_start(text, m.start());
        if ok {
            push(out, m.start()..end);
        }
        ok
    });
}

fn push(out: &mut Vec<Candidate>, range: std::ops::Range<usize>) {
    out.push(Candidate::new(PiiKind::Phone, Rank::Phone, range));
}

/// The length of the phone number at the start of an international candidate: trailing blocks
/// are dropped while there are more than 15 digits (a number followed by another number) or the
/// number would end glued to more digits (`ends_ok` says).
fn international_len(candidate: &str, ends_ok: impl Fn(usize) -> bool) -> Option<usize> {
    let mut end = candidate.len();
    loop {
        let digits = candidate[..end].bytes().filter(u8::is_ascii_digit).count();
        if digits < MIN_INTERNATIONAL_DIGITS {
            return None;
        }
        if digits <= MAX_INTERNATIONAL_DIGITS && ends_ok(end) {
            return Some(end);
        }
        // Cut at the last separator; a block without one cannot be split sensibly.
        let cut = candidate[1..end].rfind([' ', '.', '-', '('])? + 1;
        end = candidate[..cut].trim_end_matches([' ', '.', '-']).len();
    }
}

/// `555-123.4567` is more likely two numbers than one phone number.
fn consistent_separators(candidate: &str) -> bool {
    let tail = candidate.len().saturating_sub(8);
    let last = candidate.as_bytes().get(tail + 3).copied();
    let first = candidate.as_bytes().get(tail.saturating_sub(1)).copied();
    match (first, last) {
        (Some(b')') | Some(b' '), _) => true,
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        crate::pii::detect(text, &[PiiKind::Phone])
            .into_iter()
            .map(|f| &text[f.range])
            .collect()
    }

    #[test]
    fn finds_phone_numbers() {
        let cases = [
            ("call +1 (555) 123-4567 now", "+1 (555) 123-4567"),
            ("tel:+44 20 7946 0958.", "+44 20 7946 0958"),
            ("+49 30 123456", "+49 30 123456"),
            ("+4930123456", "+4930123456"),
            ("+33 1 23 45 67 89", "+33 1 23 45 67 89"),
            ("US (555) 123-4567", "(555) 123-4567"),
            ("or 555-123-4567,", "555-123-4567"),
            ("or 555.123.4567", "555.123.4567"),
            ("1-800-555-0199", "1-800-555-0199"),
            ("UK 020 7946 0958", "020 7946 0958"),
            ("mobile 07700 900123", "07700 900123"),
            ("DE 030 123456", "030 123456"),
            ("DE 030/1234567", "030/1234567"),
            ("(030) 123456", "(030) 123456"),
            ("FR 01 23 45 67 89", "01 23 45 67 89"),
        ];
        for (text, want) in cases {
            assert_eq!(found(text), vec![want], "{text}");
        }
    }

    #[test]
    fn long_international_runs_are_trimmed_to_e164() {
        let candidate = "+44 20 7946 0958 12345 678";
        let any_end = |_| true;
        assert_eq!(
            international_len(candidate, any_end),
            Some("+44 20 7946 0958".len())
        );
        assert_eq!(international_len("+1234567890123456", any_end), None);
        assert_eq!(international_len("+1 234", any_end), None);
        assert_eq!(found("030 123456 123-45-6789"), vec!["030 123456"]);
        assert_eq!(found("030 123456 4111 1111"), vec!["030 123456"]);
    }

    #[test]
    fn leaves_lookalikes() {
        for text in [
            "order #A-10293",
            "ORD-2024-000123",
            "on 2024-03-15",
            "on 15/03/2024 and 03/15/2024",
            "05.03.2024",
            "v1.2.3 and 10.0.19045",
            "$1,234.56 or 1.234,56 €",
            "1Z999AA10123456784",
            "score +5 and +100.00",
            "555-123.4567",
            "4111 1111 1111 1111",
            "12345678",
            "0301234567",
            "10.0.19045.2965",
            "123-456-7890",
            "id 1555-123-45678",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
