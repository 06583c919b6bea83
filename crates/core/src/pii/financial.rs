//! Payment cards (Luhn), IBANs (mod-97) and US social security numbers.
//!
//! All three are matched by hand from the anchors of the shared scan (see
//! [`super::boundary::Anchors`]): cards and SSNs from number starts, IBANs from the digits after a
//! word's first two letters.

use std::ops::Range;

use super::boundary::{self, digits_at, number_end, number_start};
use super::{Candidate, PiiKind, Rank};

const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;
/// The longest block a grouped card number has (Amex `3782 822463 10005`).
const MAX_CARD_BLOCK: usize = 6;
/// How many four-digit blocks before a card are looked at (see [`continues_a_longer_number`]).
const MAX_BLOCKS_BEFORE: usize = 4;

/// Push every Luhn-valid card number in `text`; `numbers` are the number starts of
/// [`super::boundary::Anchors`].
pub(super) fn find_cards(text: &str, numbers: &[usize], out: &mut Vec<Candidate>) {
    let mut from = 0;
    for &start in numbers {
        if start < from {
            continue;
        }
        if let Some((range, digit_before)) = card_at(text, start) {
            from = range.end;
            let card = Candidate::new(PiiKind::Card, Rank::Card, range);
            out.push(card.unless_uncovered(digit_before));
        }
    }
}

/// The longest valid card starting at `start`. A card is either one bare run of 13–19 digits
/// or blocks joined by one kind of separator (one space or one dash), the first block being
/// four digits (`4111 1111 1111 1111`, `3782 822463 10005`); the first digit must be 2–6 (Visa,
/// Mastercard, Amex, Discover, JCB, UnionPay, Diners). With the card comes the digit before it
/// that must be part of another finding for the card to stand, if any.
fn card_at(text: &str, start: usize) -> Option<(Range<usize>, Option<usize>)> {
    let bytes = text.as_bytes();
    if !matches!(bytes[start], b'2'..=b'6') {
        return None;
    }
    let first = digits_at(bytes, start, usize::MAX);
    let (end, digit_before) = if CARD_DIGITS.contains(&first) {
        let end = start + first;
        (luhn_valid(&text[start..end]).then_some(end)?, None)
    } else if first == 4 {
        let end = grouped_card_end(text, start)?;
        let longer = continues_a_longer_number(bytes, start, bytes[start + 4]);
        (end, longer.then(|| start - 2))
    } else {
        return None;
    };
    (number_start(text, start) && number_end(text, end)).then_some((start..end, digit_before))
}

/// Where the longest Luhn-valid card made of the blocks from `start` on ends, if any. A card
/// followed by a short block that is glued to more of a number (`… 8379 181.0.0.0`) still ends
/// where its own blocks do.
fn grouped_card_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let separator = bytes.get(start + 4).copied()?;
    if !matches!(separator, b' ' | b'-') {
        return None;
    }
    let mut best = None;
    let mut digits = 4;
    let mut end = start + 4;
    while bytes.get(end) == Some(&separator) {
        let block = digits_at(bytes, end + 1, MAX_CARD_BLOCK + 1);
        if block == 0 || block > MAX_CARD_BLOCK {
            break;
        }
        digits += block;
        end += 1 + block;
        if digits > *CARD_DIGITS.end() {
            break;
        }
        if CARD_DIGITS.contains(&digits)
            && number_end(text, end)
            && luhn_valid_bytes(&bytes[start..end])
        {
            best = Some(end);
        }
    }
    best
}

/// True when the grouped card at `start` is preceded by four-digit blocks joined by the same
/// `separator` back to where the digits begin, as the middle of the tracking number
/// `9400 1000 2345 6789 0123 45` is: that is one longer number, not a card, unless those blocks
/// are a value of their own such as another card (see [`Candidate::unless_uncovered`]). A chain
/// of more than [`MAX_BLOCKS_BEFORE`] such blocks counts as one as well, which also keeps the
/// look-back short. A number joined differently (`123-45-6789 4111 …`) or a shorter block
/// (`item 1 4111 …`) before the card does not make it longer.
fn continues_a_longer_number(bytes: &[u8], start: usize, separator: u8) -> bool {
    let mut at = start;
    for _ in 0..MAX_BLOCKS_BEFORE {
        let four_digits_before = at >= 5
            && bytes[at - 1] == separator
            && bytes[at - 5..at - 1].iter().all(u8::is_ascii_digit)
            && !(at >= 6 && bytes[at - 6].is_ascii_digit());
        if !four_digits_before {
            return false;
        }
        at -= 5;
        let joined_to_digits =
            at >= 2 && matches!(bytes[at - 1], b' ' | b'-') && bytes[at - 2].is_ascii_digit();
        if !joined_to_digits {
            // The digits begin with this block.
            return true;
        }
        if bytes[at - 1] != separator {
            return false;
        }
    }
    true
}

/// The Luhn checksum over the digits of `number`, ignoring separators.
pub(super) fn luhn_valid(number: &str) -> bool {
    luhn_valid_bytes(number.as_bytes())
}

fn luhn_valid_bytes(number: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for digit in number.iter().rev().filter(|b| b.is_ascii_digit()) {
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

/// Push every valid IBAN in `text`; `letter_pairs` are the IBAN anchors of
/// [`super::boundary::Anchors`] (the first digit after a word's first two letters).
pub(super) fn find_ibans(text: &str, letter_pairs: &[usize], out: &mut Vec<Candidate>) {
    let mut from = 0;
    for &digit in letter_pairs {
        let start = digit - 2;
        if start < from {
            continue;
        }
        if let Some(end) = iban_at(text, start) {
            from = end;
            out.push(Candidate::new(PiiKind::Iban, Rank::Iban, start..end));
        }
    }
}

/// Where the IBAN starting at `start` ends: a known country code, that country's exact length
/// and a valid mod-97 checksum. Upper case as printed, or all lower case as typed in a hurry; a
/// lower-case IBAN with spaces must be grouped in fours as printed, so that words are not read
/// as its letters.
fn iban_at(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    if digits_at(bytes, start + 2, 2) != 2 {
        return None;
    }
    let lower = bytes[start].is_ascii_lowercase();
    if bytes[start + 1].is_ascii_lowercase() != lower {
        return None;
    }
    let country = [
        bytes[start].to_ascii_uppercase(),
        bytes[start + 1].to_ascii_uppercase(),
    ];
    let len = iban_length(&country)?;
    let end = iban_end(bytes, start, len, lower)?;
    (boundary::word_end(text, end) && iban_valid(&text[start..end])).then_some(end)
}

/// Where an IBAN of `len` characters starting at `start` ends: letters of one case (`lower` or
/// upper) and digits, single spaces allowed between them (only every four characters when
/// `lower`).
fn iban_end(bytes: &[u8], start: usize, len: usize, lower: bool) -> Option<usize> {
    let mut taken = 0;
    let mut group = 0;
    let mut i = start;
    while taken < len {
        match bytes.get(i).copied()? {
            b if b.is_ascii_digit()
                || (b.is_ascii_alphabetic() && b.is_ascii_lowercase() == lower) =>
            {
                taken += 1;
                group += 1;
            }
            b' ' if group > 0
                && (!lower || group == 4)
                && bytes.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) =>
            {
                group = 0;
            }
            _ => return None,
        }
        i += 1;
    }
    Some(i)
}

/// The ISO 13616 mod-97 check over an IBAN, ignoring spaces.
pub(super) fn iban_valid(iban: &str) -> bool {
    let compact = || iban.bytes().filter(|b| *b != b' ');
    if compact().count() < 5 || !compact().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    // Move the country code and check digits to the end, letters count as 10..=35.
    let mut remainder = 0u32;
    for b in compact().skip(4).chain(compact().take(4)) {
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

/// The IBAN length of a country (upper-case code), from the SWIFT IBAN registry.
fn iban_length(country: &[u8; 2]) -> Option<usize> {
    #[rustfmt::skip]
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16),
        (b"BG", 22), (b"BH", 22), (b"BI", 27), (b"BR", 29), (b"BY", 28), (b"CH", 21), (b"CR", 22),
        (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DJ", 27), (b"DK", 18), (b"DO", 28), (b"EE", 20),
        (b"EG", 29), (b"ES", 24), (b"FI", 18), (b"FK", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22),
        (b"GE", 22), (b"GI", 23), (b"GL", 18), (b"GR", 27), (b"GT", 28), (b"HR", 21), (b"HU", 28),
        (b"IE", 22), (b"IL", 23), (b"IQ", 23), (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30),
        (b"KZ", 20), (b"LB", 28), (b"LC", 32), (b"LI", 21), (b"LT", 20), (b"LU", 20), (b"LV", 21),
        (b"LY", 25), (b"MC", 27), (b"MD", 24), (b"ME", 22), (b"MK", 19), (b"MN", 20), (b"MR", 27),
        (b"MT", 31), (b"MU", 30), (b"NI", 28), (b"NL", 18), (b"NO", 15), (b"OM", 23), (b"PK", 24),
        (b"PL", 28), (b"PS", 29), (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"RU", 33),
        (b"SA", 24), (b"SC", 31), (b"SD", 18), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27),
        (b"SO", 23), (b"ST", 25), (b"SV", 28), (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29),
        (b"VA", 22), (b"VG", 24), (b"XK", 20),
    ];
    LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|(_, len)| *len)
}

/// Push every US social security number in a valid range: `AAA-GG-SSSS` with area 000, 666 and
/// 900–999, group 00 and serial 0000 excluded; `numbers` are the number starts of
/// [`super::boundary::Anchors`].
pub(super) fn find_ssns(text: &str, numbers: &[usize], out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    for &start in numbers {
        let Some(s) = bytes.get(start..start + 11) else {
            continue;
        };
        let shaped = s[3] == b'-'
            && s[6] == b'-'
            && [0, 1, 2, 4, 5, 7, 8, 9, 10]
                .iter()
                .all(|&i| s[i].is_ascii_digit());
        if !shaped {
            continue;
        }
        let (area, group, serial) = (&s[0..3], &s[4..6], &s[7..11]);
        let area_ok = area != b"000" && area != b"666" && area[0] != b'9';
        let ok = area_ok
            && group != b"00"
            && serial != b"0000"
            && number_start(text, start)
            && number_end(text, start + 11);
        if ok {
            out.push(Candidate::new(PiiKind::Ssn, Rank::Ssn, start..start + 11));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{iban_valid, luhn_valid};
    use crate::pii::{detect, PiiKind};

    fn found(kind: PiiKind, text: &str) -> Vec<&str> {
        detect(text, &[kind])
            .into_iter()
            .map(|f| &text[f.range])
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
            ("4111 1111 1111 1111 123", "4111 1111 1111 1111"),
            ("4111 1111 1111 1111 12/26", "4111 1111 1111 1111"),
        ];
        for (text, want) in cases {
            assert_eq!(found(PiiKind::Card, text), vec![want], "{text}");
        }
    }

    #[test]
    fn cards_next_to_each_other_are_both_found() {
        let text = "4111 1111 1111 1111 5555 5555 5555 4444";
        assert_eq!(
            found(PiiKind::Card, text),
            vec!["4111 1111 1111 1111", "5555 5555 5555 4444"]
        );
    }

    #[test]
    fn a_card_shaped_tail_of_a_longer_number_is_left() {
        // `6139 1416 7191 84` passes Luhn, but it is the tail of a 22-digit USPS number.
        for text in [
            "tracking 9400 1000 6139 1416 7191 84",
            "9400 1000 6139 1416 7191 84",
            "ref 1234 4111 1111 1111 1111",
            "1234 5678 9012 3456 4111 1111 1111 1111",
        ] {
            assert!(found(PiiKind::Card, text).is_empty(), "{text}");
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
            assert!(found(PiiKind::Card, text).is_empty(), "{text}");
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
            ("ref-NL91ABNA0417164300", "NL91ABNA0417164300"),
        ];
        for (text, want) in cases {
            assert_eq!(found(PiiKind::Iban, text), vec![want], "{text}");
        }
    }

    #[test]
    fn finds_ibans_written_in_lower_case() {
        let cases = [
            (
                "iban: gb82 west 1234 5698 7654 32.",
                "gb82 west 1234 5698 7654 32",
            ),
            ("gb82west12345698765432", "gb82west12345698765432"),
            ("de89 3704 0044 0532 0130 00", "de89 3704 0044 0532 0130 00"),
            ("nl91abna0417164300", "nl91abna0417164300"),
        ];
        for (text, want) in cases {
            assert_eq!(found(PiiKind::Iban, text), vec![want], "{text}");
        }
    }

    #[test]
    fn leaves_iban_lookalikes() {
        for text in [
            "DE89370400440532013001",
            "DE8937040044053201300",
            "DE893704004405320130001",
            "XX89370400440532013000",
            "de89370400440532013001",
            // One case for the letters: mixed case is not how an IBAN is written.
            "Gb82 west 1234 5698 7654 32",
            "GB82 west 1234 5698 7654 32",
            "gb82 WEST 1234 5698 7654 32",
            // Lower case with spaces must be grouped in fours, so words are not read as letters.
            "gb82 we st12 3456 9876 5432",
            "de89 37040044 0532013000",
            "ORD-2024-000123",
            "ID12345678",
            "order 00123456",
        ] {
            assert!(found(PiiKind::Iban, text).is_empty(), "{text}");
        }
    }

    #[test]
    fn finds_ssns_in_valid_ranges() {
        assert_eq!(found(PiiKind::Ssn, "SSN 123-45-6789."), vec!["123-45-6789"]);
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
            assert!(found(PiiKind::Ssn, text).is_empty(), "{text}");
        }
    }
}
