//! Payment cards (Luhn), IBANs (mod-97) and US social security numbers.

use std::sync::LazyLock;

use regex::Regex;

use super::boundary::{self, number_end, number_start};
use super::{Candidate, PiiKind, Rank};

/// Digit runs with single spaces or dashes between digits.
static DIGIT_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9](?:[ \-]?[0-9])*").expect("static pattern"));

static IBAN_START: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Z]{2}[0-9]{2}").expect("static pattern"));

static SSN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]{3}-[0-9]{2}-[0-9]{4}").expect("static pattern"));

const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

/// Push every Luhn-valid card number in `text`.
pub(super) fn find_cards(text: &str, out: &mut Vec<Candidate>) {
    for m in DIGIT_RUN.find_iter(text) {
        if m.len() < *CARD_DIGITS.start() {
            continue;
        }
        let run = m.as_str();
        let groups: Vec<(usize, usize)> = groups(run);
        let mut i = 0;
        while i < groups.len() {
            let card = card_window(run, &groups, i)
                .map(|last| (last, m.start() + groups[i].0..m.start() + groups[last].1))
                .filter(|(_, r)| number_start(text, r.start) && number_end(text, r.end));
            match card {
                Some((last, range)) => {
                    out.push(Candidate::new(PiiKind::Card, Rank::Card, range));
                    i = last + 1;
                }
                // A window glued to the number before it may still hide a card further on.
                None => i += 1,
            }
        }
    }
}

/// Byte ranges of the separator-free blocks of a digit run.
fn groups(run: &str) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut start = 0;
    for (i, b) in run.bytes().enumerate() {
        if !b.is_ascii_digit() {
            groups.push((start, i));
            start = i + 1;
        }
    }
    groups.push((start, run.len()));
    groups
}

/// The last group of the longest valid card starting at group `first`, if any. A card is either
/// one bare block or blocks joined by one kind of separator, the first block being four digits
/// (`4111 1111 1111 1111`, `3782 822463 10005`); the first digit must be 2–6.
fn card_window(run: &str, groups: &[(usize, usize)], first: usize) -> Option<usize> {
    let bytes = run.as_bytes();
    let (start, end) = groups[first];
    if !matches!(bytes[start], b'2'..=b'6') {
        return None;
    }
    if CARD_DIGITS.contains(&(end - start)) && luhn_valid(&run[start..end]) {
        return Some(first);
    }
    if end - start != 4 {
        return None;
    }
    let separator = bytes.get(end).copied()?;
    let mut best = None;
    let mut digits = 4;
    for (last, &(s, e)) in groups.iter().enumerate().skip(first + 1) {
        if bytes[s - 1] != separator || e - s > 6 {
            break;
        }
        digits += e - s;
        if digits > *CARD_DIGITS.end() {
            break;
        }
        if CARD_DIGITS.contains(&digits) && luhn_valid(&run[start..e]) {
            best = Some(last);
        }
    }
    best
}

/// The Luhn checksum over the digits of `number`, ignoring separators.
pub(super) fn luhn_valid(number: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for digit in number.bytes().rev().filter(u8::is_ascii_digit) {
        let mut d = u32::from(digit - b'0');
        if count % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        count += 1;
    }
    count > 0 && matches!(sum % 10, 0)
}

/// Push every valid IBAN in `text`.
pub(super) fn find_ibans(text: &str, out: &mut Vec<Candidate>) {
    let mut from = 0;
    while let Some(m) = IBAN_START.find_at(text, from) {
        from = m.end();
        if !boundary::word_start(text, m.start()) {
            continue;
        }
        let Some(len) = iban_length(&m.as_str()[..2]) else {
            continue;
        };
        if let Some(end) = iban_end(text, m.start(), len) {
            if boundary::word_end(text, end) && iban_valid(&text[m.start()..end]) {
                out.push(Candidate::new(PiiKind::Iban, Rank::Iban, m.start()..end));
                from = end;
            }
        }
    }
}

/// Where an IBAN of `len` characters starting at `start` ends: upper-case letters and digits,
/// single spaces allowed between them.
fn iban_end(text: &str, start: usize, len: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut taken = 0;
    let mut i = start;
    while taken < len {
        match bytes.get(i).copied()? {
            b if b.is_ascii_uppercase() || b.is_ascii_digit() => taken += 1,
            b' ' if taken > 0 && bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) => {}
            _ => return None,
        }
        i += 1;
    }
    Some(i)
}

/// The ISO 13616 mod-97 check over an IBAN, ignoring spaces.
pub(super) fn iban_valid(iban: &str) -> bool {
    let compact: Vec<u8> = iban.bytes().filter(|b| *b != b' ').collect();
    if compact.len() < 5 || !compact.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    // Move the country code and check digits to the end, letters count as 10..=35.
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for &b in tail.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            _ => u32::from(b.to_ascii_uppercase() - b'A') + 10,
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

/// The IBAN length of a country, from the SWIFT IBAN registry.
fn iban_length(country: &str) -> Option<usize> {
    #[rustfmt::skip]
    const LENGTHS: &[(&str, usize)] = &[
        ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16), ("BG", 22),
        ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24),
        ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18),
        ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27),
        ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27),
        ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20),
        ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20), ("MR", 27),
        ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23), ("PK", 24), ("PL", 28),
        ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("RU", 33), ("SA", 24), ("SC", 31),
        ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("SO", 23), ("ST", 25), ("SV", 28),
        ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
    ];
    LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|(_, len)| *len)
}

/// Push every US social security number in a valid range.
pub(super) fn find_ssns(text: &str, out: &mut Vec<Candidate>) {
    boundary::each_match(&SSN, text, |m| {
        let s = m.as_str();
        let (area, group, serial) = (&s[0..3], &s[4..6], &s[7..11]);
        let area_ok = area != "000" && area != "666" && !area.starts_with('9');
        let ok = area_ok
            && group != "00"
            && serial != "0000"
            && number_start(text, m.start())
            && number_end(text, m.end());
        if ok {
            out.push(Candidate::new(PiiKind::Ssn, Rank::Ssn, m.range()));
        }
        ok
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(finder: fn(&str, &mut Vec<Candidate>), text: &str) -> Vec<String> {
        let mut out = Vec::new();
        finder(text, &mut out);
        out.iter()
            .map(|c| text[c.finding.range.clone()].to_string())
            .collect()
    }

    #[test]
    fn luhn_known_values() {
        for valid in ["4111111111111111", "79927398713", "378282246310005", "0"] {
            assert!(luhn_valid(valid), "{valid}");
        }
        for invalid in ["4111111111111112", "79927398710", "1234567812345678", ""] {
            assert!(!luhn_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn mod97_known_values() {
        for valid in [
            "GB82WEST12345698765432",
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "NO9386011117947",
        ] {
            assert!(iban_valid(valid), "{valid}");
        }
        for invalid in [
            "GB82WEST12345698765431",
            "DE89370400440532013001",
            "GB82",
            "",
        ] {
            assert!(!iban_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn finds_cards() {
        let cases = [
            ("pay 4111 1111 1111 1111 now", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("card:5555555555554444.", "5555555555554444"),
            ("amex 3782 822463 10005", "3782 822463 10005"),
            ("6011111111111117", "6011111111111117"),
            ("jcb 3530111333300000", "3530111333300000"),
            ("item 1 4111 1111 1111 1111", "4111 1111 1111 1111"),
            ("123-45-6789 4111 1111 1111 1111", "4111 1111 1111 1111"),
        ];
        for (text, want) in cases {
            assert_eq!(found(find_cards, text), vec![want], "{text}");
        }
    }

    #[test]
    fn leaves_card_lookalikes() {
        for text in [
            "4111 1111 1111 1112",
            "1234567812345678",
            "order 4111111111111112",
            "1Z999AA10123456784",
            "20 digits 41111111111111111111",
            "9400 1000 0000 0000 0000 00",
            "2024-03-15",
            "4111-1111 1111-1111",
            "x4111111111111111",
            "1.4111111111111111",
        ] {
            assert!(found(find_cards, text).is_empty(), "{text}");
        }
    }

    #[test]
    fn finds_ibans() {
        let cases = [
            ("IBAN DE89370400440532013000.", "DE89370400440532013000"),
            (
                "to DE89 3704 0044 0532 0130 00 today",
                "DE89 3704 0044 0532 0130 00",
            ),
            ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
            (
                "FR14 2004 1010 0505 0001 3M02 606",
                "FR14 2004 1010 0505 0001 3M02 606",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(found(find_ibans, text), vec![want], "{text}");
        }
    }

    #[test]
    fn leaves_iban_lookalikes() {
        for text in [
            "DE89370400440532013001",
            "DE8937040044053201300",
            "DE893704004405320130001",
            "XX89370400440532013000",
            "de89370400440532013000",
            "ORD-2024-000123",
            "ID12345678",
        ] {
            assert!(found(find_ibans, text).is_empty(), "{text}");
        }
    }

    #[test]
    fn finds_ssns_in_valid_ranges() {
        assert_eq!(found(find_ssns, "SSN 123-45-6789."), vec!["123-45-6789"]);
        for text in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "1123-45-6789",
            "123-45-67890",
            "2024-03-15",
            "555-123-4567",
            "123 45 6789",
        ] {
            assert!(found(find_ssns, text).is_empty(), "{text}");
        }
    }
}
