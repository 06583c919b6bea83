//! Phone numbers: international (`+CC …` and `00CC …`), North American, and national
//! trunk-prefix forms.
//!
//! Each form is matched by hand from the number starts the shared scan found (see
//! [`super::boundary::Anchors`]), so the text is never searched once per form.

use std::ops::Range;

use super::boundary::{digit_group_before, digits_at, number_end, number_start};
use super::{Candidate, PiiKind, Rank};

/// E.164 caps a number at 15 digits, country code included.
const MAX_INTERNATIONAL_DIGITS: usize = 15;
/// Shorter international runs are more often scores or amounts than phone numbers.
const MIN_INTERNATIONAL_DIGITS: usize = 8;
/// How many digit blocks may follow an international country code.
const MAX_BLOCKS: usize = 7;
/// National numbers: trunk prefix, area code and subscriber number together.
const NATIONAL_DIGITS: std::ops::RangeInclusive<usize> = 8..=12;

/// Push every phone number in `text`; `numbers` are the number starts of
/// [`super::boundary::Anchors`].
pub(super) fn find(text: &str, numbers: &[usize], out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    // Each form resumes after the last number it took, as a left-to-right search would.
    let mut international_from = 0;
    let mut north_american_from = 0;
    let mut national_from = 0;
    for &digit in numbers {
        let opener = digit.checked_sub(1).filter(|&i| bytes[i] == b'(');
        // `+CC …` from the plus, `00CC …` from the first zero.
        let international_start = match digit.checked_sub(1).filter(|&i| bytes[i] == b'+') {
            Some(plus) => Some((plus, 1)),
            None => (bytes[digit] == b'0').then_some((digit, 2)),
        };
        if let Some((start, prefix)) = international_start.filter(|(s, _)| *s >= international_from)
        {
            if let Some(range) = international(text, start, prefix) {
                international_from = range.end;
                // Only the `00` form is weak enough to need the digits before it checked.
                let digit_before = if prefix == 2 {
                    digit_group_before(text, start)
                } else {
                    None
                };
                push(out, range, digit_before);
            }
        }
        for start in opener.into_iter().chain([digit]) {
            if start >= north_american_from {
                if let Some(range) = north_american(text, start) {
                    north_american_from = range.end;
                    push(out, range, None);
                }
            }
            if start >= national_from {
                if let Some(range) = national(text, start) {
                    national_from = range.end;
                    push(out, range, digit_group_before(text, start));
                }
            }
        }
    }
}

/// Push a phone number; a weakly marked one right after a digit group (`digit_before`) is kept
/// only when that group is part of another finding.
fn push(out: &mut Vec<Candidate>, range: Range<usize>, digit_before: Option<usize>) {
    out.push(Candidate::new(PiiKind::Phone, Rank::Phone, range).unless_uncovered(digit_before));
}

/// An international number at `start`, written `+CC …` (`prefix` 1) or `00CC …` (`prefix` 2).
///
/// `00` also starts order numbers (`00123456`), so that form must look like a phone number: a
/// country code that exists, written as such (followed by a separator); after a digit group it
/// is kept only when that group is a value of its own (see [`Candidate::unless_uncovered`]).
fn international(text: &str, start: usize, prefix: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let code_start = start + prefix;
    if prefix == 2 {
        let code = digits_at(bytes, code_start, 4);
        let separated = matches!(bytes.get(code_start + code), Some(b' ' | b'.' | b'-'));
        if bytes.get(start + 1) != Some(&b'0')
            || !separated
            || !is_country_code(&bytes[code_start..code_start + code])
        {
            return None;
        }
    }
    let extent = international_extent(bytes, code_start)?;
    let candidate = &text[start..extent];
    let ends_ok = |len: usize| number_end(text, start + len);
    let len = international_len(candidate, prefix, ends_ok)?;
    number_start(text, start).then_some(start..start + len)
}

/// The end of the digits and separators after an international prefix, taken as far as a phone
/// number's shape allows: a country code of up to three digits, then up to seven blocks of up to
/// five digits (or `(0)`-style groups of up to four), each after at most one separator.
fn international_extent(bytes: &[u8], code_start: usize) -> Option<usize> {
    if !matches!(bytes.get(code_start), Some(b'1'..=b'9')) {
        return None;
    }
    let code_end = code_start + 1 + digits_at(bytes, code_start + 1, 2);
    let mut end = code_end;
    let mut blocks = 0;
    while blocks < MAX_BLOCKS {
        let mut i = end;
        if matches!(bytes.get(i), Some(b' ' | b'.' | b'-')) {
            i += 1;
        }
        let block_end = if bytes.get(i) == Some(&b'(') {
            let n = digits_at(bytes, i + 1, 4);
            (n > 0 && bytes.get(i + 1 + n) == Some(&b')')).then_some(i + 2 + n)
        } else {
            let n = digits_at(bytes, i, 5);
            (n > 0).then_some(i + n)
        };
        let Some(block_end) = block_end else {
            break;
        };
        end = block_end;
        blocks += 1;
    }
    // A code of two or three digits can give its last digits up as the one block required.
    (blocks > 0 || code_end > code_start + 1).then_some(end)
}

/// The length of the phone number at the start of an international candidate: trailing blocks
/// are dropped while there are more than 15 digits after the `prefix` (a number followed by
/// another number) or the number would end glued to more digits (`ends_ok` says).
fn international_len(
    candidate: &str,
    prefix: usize,
    ends_ok: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut end = candidate.len();
    loop {
        let digits = candidate[prefix..end]
            .bytes()
            .filter(u8::is_ascii_digit)
            .count();
        if digits < MIN_INTERNATIONAL_DIGITS {
            return None;
        }
        if digits <= MAX_INTERNATIONAL_DIGITS && ends_ok(end) {
            return Some(end);
        }
        // Cut at the last separator; a block without one cannot be split sensibly.
        let cut = candidate[prefix..end].rfind([' ', '.', '-', '('])? + prefix;
        end = candidate[..cut].trim_end_matches([' ', '.', '-']).len();
    }
}

/// True for an assigned ITU country calling code as written after `00`. Codes are prefix-free:
/// `1` and `7` stand alone, two-digit codes are listed, and three-digit codes start with one of
/// the zones that hold only three-digit codes.
fn is_country_code(code: &[u8]) -> bool {
    #[rustfmt::skip]
    const TWO_DIGITS: &[&[u8; 2]] = &[
        b"20", b"27", b"30", b"31", b"32", b"33", b"34", b"36", b"39", b"40", b"41", b"43", b"44",
        b"45", b"46", b"47", b"48", b"49", b"51", b"52", b"53", b"54", b"55", b"56", b"57", b"58",
        b"60", b"61", b"62", b"63", b"64", b"65", b"66", b"81", b"82", b"84", b"86", b"90", b"91",
        b"92", b"93", b"94", b"95", b"98",
    ];
    #[rustfmt::skip]
    const THREE_DIGIT_ZONES: &[&[u8; 2]] = &[
        b"21", b"22", b"23", b"24", b"25", b"26", b"29", b"35", b"37", b"38", b"42", b"50", b"59",
        b"67", b"68", b"69", b"85", b"87", b"88", b"96", b"97", b"99",
    ];
    match code {
        [b'1' | b'7'] => true,
        [a, b] => TWO_DIGITS.contains(&&[*a, *b]),
        [a, b, _] => THREE_DIGIT_ZONES.contains(&&[*a, *b]),
        _ => false,
    }
}

/// A North American number at `start`: `(555) 123-4567`, `555-123-4567`, `555.123.4567`, with
/// an optional `1-` in front. The area code cannot start with 0 or 1.
fn north_american(text: &str, start: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let mut i = start;
    if bytes.get(i) == Some(&b'1') {
        if !matches!(bytes.get(i + 1), Some(b' ' | b'.' | b'-')) {
            return None;
        }
        i += 2;
    }
    let area_digits =
        |at: usize| matches!(bytes.get(at), Some(b'2'..=b'9')) && digits_at(bytes, at + 1, 2) == 2;
    if bytes.get(i) == Some(&b'(') {
        if !area_digits(i + 1) || bytes.get(i + 4) != Some(&b')') {
            return None;
        }
        i += 5;
        if bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    } else {
        if !area_digits(i) || !matches!(bytes.get(i + 3), Some(b'.' | b'-')) {
            return None;
        }
        i += 4;
    }
    let shaped = digits_at(bytes, i, 3) == 3
        && matches!(bytes.get(i + 3), Some(b'.' | b'-'))
        && digits_at(bytes, i + 4, 4) == 4;
    let end = i + 8;
    let ok = shaped
        && consistent_separators(&text[start..end])
        && number_start(text, start)
        && number_end(text, end);
    ok.then_some(start..end)
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

/// A national number at `start`: trunk prefix `0` plus area code (3–6 digits in all), one
/// separator and the subscriber number of 3–8 digits, optionally one more block of 3–4 (UK
/// `020 7946 0958`, DE `030 123456`, `030/123456`, `(030) 123456`); or the French pairs
/// `01 23 45 67 89`. A separator is required, so bare digit runs (order numbers) stay; dates
/// never match because the trunk prefix needs three digits before the first separator. After a
/// digit group it is kept only when that group is a value of its own (see
/// [`Candidate::unless_uncovered`]).
fn national(text: &str, start: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let end = national_area_form(bytes, start).or_else(|| french_pairs(bytes, start))?;
    let digits = |end: usize| {
        bytes[start..end]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .count()
    };
    let fits = |end: &usize| number_end(text, *end) && NATIONAL_DIGITS.contains(&digits(*end));
    // One more block when it fits, so that `020 7946 0958` is one number; the shorter form
    // when the longer one runs into the next number.
    let block = digits_at(bytes, end + 1, 4);
    let longer =
        (matches!(bytes.get(end), Some(b' ' | b'-')) && block >= 3).then_some(end + 1 + block);
    let end = longer.filter(fits).or(Some(end).filter(fits))?;
    number_start(text, start).then_some(start..end)
}

/// `0AAA SSSSSS`, `0AAA/SSSSSS`, `0AAA-SSSSSS` or `(0AAA) SSSSSS`: where the subscriber digits end.
fn national_area_form(bytes: &[u8], start: usize) -> Option<usize> {
    let paren = bytes.get(start) == Some(&b'(');
    let zero = start + usize::from(paren);
    if bytes.get(zero) != Some(&b'0') || !matches!(bytes.get(zero + 1), Some(b'1'..=b'9')) {
        return None;
    }
    let area = digits_at(bytes, zero + 2, 5);
    if !(1..=4).contains(&area) {
        return None;
    }
    let mut i = zero + 2 + area;
    if paren {
        if bytes.get(i) != Some(&b')') {
            return None;
        }
        i += 1;
        if bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    } else {
        if !matches!(bytes.get(i), Some(b' ' | b'/' | b'-')) {
            return None;
        }
        i += 1;
    }
    let subscriber = digits_at(bytes, i, 8);
    (subscriber >= 3).then_some(i + subscriber)
}

/// `01 23 45 67 89` or `01.23.45.67.89`: where the last pair ends.
fn french_pairs(bytes: &[u8], start: usize) -> Option<usize> {
    if bytes.get(start) != Some(&b'0') || !matches!(bytes.get(start + 1), Some(b'1'..=b'9')) {
        return None;
    }
    let mut i = start + 2;
    for _ in 0..4 {
        if !matches!(bytes.get(i), Some(b' ' | b'.')) || digits_at(bytes, i + 1, 2) != 2 {
            return None;
        }
        i += 3;
    }
    Some(i)
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
            ("+44 (0) 20 7946 0958", "+44 (0) 20 7946 0958"),
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
            ("FR 01.23.45.67.89", "01.23.45.67.89"),
        ];
        for (text, want) in cases {
            assert_eq!(found(text), vec![want], "{text}");
        }
    }

    #[test]
    fn finds_international_numbers_written_with_00() {
        let cases = [
            ("UK 0044 20 7946 0958", "0044 20 7946 0958"),
            ("Tel. 0049 30 1234567.", "0049 30 1234567"),
            ("0049-30-1234567", "0049-30-1234567"),
            ("0033 1 23 45 67 89", "0033 1 23 45 67 89"),
            ("US 001 555 123 4567", "001 555 123 4567"),
            ("0044 (0) 20 7946 0958", "0044 (0) 20 7946 0958"),
            ("Ireland 00353 1 234 5678", "00353 1 234 5678"),
        ];
        for (text, want) in cases {
            assert_eq!(found(text), vec![want], "{text}");
        }
    }

    #[test]
    fn the_00_form_leaves_order_numbers_amounts_dates_and_versions() {
        for text in [
            "Order 00123456",
            "order 0012345678 shipped",
            "ORD-0044-20794609",
            "amount 0.00 1234 5678",
            "0012 345 678 90",
            "0099 1234 5678",
            "0044 1234",
            "on 2024-03-15",
            "v0.0.44.20",
            "1.2.3.4",
            "+0044 20 7946 0958",
            "x0044 20 7946 0958",
            "DE89 3704 0044 0532 0130 00",
            "serial 1234 0044 2079 4609 58",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn long_international_runs_are_trimmed_to_e164() {
        let candidate = "+44 20 7946 0958 12345 678";
        let any_end = |_| true;
        assert_eq!(
            international_len(candidate, 1, any_end),
            Some("+44 20 7946 0958".len())
        );
        assert_eq!(international_len("+1234567890123456", 1, any_end), None);
        assert_eq!(international_len("+1 234", 1, any_end), None);
        assert_eq!(
            international_len("0044 20 7946 0958 12345", 2, any_end),
            Some("0044 20 7946 0958".len())
        );
        assert_eq!(found("030 123456 123-45-6789"), vec!["030 123456"]);
        assert_eq!(found("030 123456 4111 1111"), vec!["030 123456"]);
    }

    #[test]
    fn country_codes_are_checked_for_the_00_form() {
        for code in ["1", "7", "44", "49", "33", "353", "971", "852"] {
            assert!(is_country_code(code.as_bytes()), "{code}");
        }
        for code in ["2", "12", "42", "80", "123", "441", "0", "", "4412"] {
            assert!(!is_country_code(code.as_bytes()), "{code}");
        }
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
            "tracking 9400 1000 0123 4567 8901 23",
            "9400 1000 0000 0000 0000 00",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
