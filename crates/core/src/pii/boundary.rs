//! Byte-level scanning: where candidates can start, and context checks around them.
//!
//! Detectors match the value itself and then look at the bytes on either side. Only ASCII bytes
//! matter here: a multi-byte UTF-8 character next to a value counts as a separator, and every
//! offset handed back is that of an ASCII byte or the end of the text, so it lies on a char
//! boundary.

/// The byte just before `at`, if any.
pub(super) fn before(text: &str, at: usize) -> Option<u8> {
    at.checked_sub(1)
        .and_then(|i| text.as_bytes().get(i).copied())
}

/// The byte at `at`, if any.
pub(super) fn at(text: &str, at: usize) -> Option<u8> {
    text.as_bytes().get(at).copied()
}

/// Letters, digits and `_`: what continues an identifier or a number.
pub(super) fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// True when the byte at `end` does not glue the value to a word.
pub(super) fn word_end(text: &str, end: usize) -> bool {
    !at(text, end).is_some_and(is_word)
}

/// True when a number starting at `start` is not the tail of a longer number such as `1.5`,
/// `12-34` or `a1`.
pub(super) fn number_start(text: &str, start: usize) -> bool {
    match before(text, start) {
        None => true,
        Some(b) if is_word(b) => false,
        // `+1 555…` is one international number, not a national one after a plus.
        Some(b'+') => false,
        Some(b'.' | b',' | b'-' | b'/') => !before(text, start - 1).is_some_and(is_word),
        Some(_) => true,
    }
}

/// True when a number ending at `end` is not followed by more of the same number, such as the
/// `.5` of `1.5` or the `-12` of `34-12`; a sentence's final `.` or `,` is fine.
pub(super) fn number_end(text: &str, end: usize) -> bool {
    match at(text, end) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'.' | b',' | b'-' | b'/') => !at(text, end + 1).is_some_and(|b| b.is_ascii_digit()),
        Some(_) => true,
    }
}

/// The last digit of a digit group that the value starting at `start` follows after one space,
/// as the `0123` of the tracking number `9400 1000 0123 4567` follows `1000`: a weakly marked
/// form (a national phone number) that starts there may be the middle of a longer number.
pub(super) fn digit_group_before(text: &str, start: usize) -> Option<usize> {
    let follows = before(text, start) == Some(b' ')
        && start >= 2
        && before(text, start - 1).is_some_and(|b| b.is_ascii_digit());
    follows.then(|| start - 2)
}

/// How many ASCII digits there are from `from` on, counting at most `max`.
pub(super) fn digits_at(bytes: &[u8], from: usize, max: usize) -> usize {
    bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count()
}

/// Where the numeric detectors look, found in one pass over the text.
#[derive(Debug, Default)]
pub(super) struct Anchors {
    /// Digits that start a word: the byte before is not a letter, digit or `_`. Every number a
    /// numeric detector reports starts here, or at the `+` or `(` just before.
    pub(super) numbers: Vec<usize>,
    /// Digits that follow two letters which start a word, as the `8` of `DE89`: IBANs start two
    /// bytes before.
    pub(super) letter_pairs: Vec<usize>,
}

impl Anchors {
    /// Scan `text` once, eight bytes at a time: a word without a digit, the common case in
    /// prose, is skipped with one comparison, and in one with digits the first is found by its
    /// bit.
    pub(super) fn scan(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut anchors = Anchors::default();
        let mut i = 0;
        while let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            match digit_bits(word) {
                0 => i += 8,
                bits => i = anchors.digit_run(bytes, i + bits.trailing_zeros() as usize / 8),
            }
        }
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() {
                i = anchors.digit_run(bytes, i);
            } else {
                i += 1;
            }
        }
        anchors
    }

    /// Record the run of digits starting at `start` if it is an anchor; returns where it ends.
    fn digit_run(&mut self, bytes: &[u8], start: usize) -> usize {
        let prev = start.checked_sub(1).map(|i| bytes[i]);
        match prev {
            Some(b) if b.is_ascii_digit() => {}
            Some(b) if b.is_ascii_alphabetic() => {
                let pair_starts_word = start >= 2
                    && bytes[start - 2].is_ascii_alphabetic()
                    && (start == 2 || !is_word(bytes[start - 3]));
                if pair_starts_word {
                    self.letter_pairs.push(start);
                }
            }
            Some(b'_') => {}
            _ => self.numbers.push(start),
        }
        start + 1 + digits_at(bytes, start + 1, usize::MAX)
    }
}

/// The top bit of each byte of `word` (little-endian) that is an ASCII digit, and possibly of
/// bytes above the lowest digit. After `^ '0'` the digits are the bytes below 10; subtracting 10
/// from each sets the top bit of those (a borrow only ever runs on from a byte that is already a
/// digit, and bytes from 0x80 up are masked out). So the lowest bit set, if any, marks the first
/// digit exactly.
fn digit_bits(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let shifted = word ^ (ONES * u64::from(b'0'));
    shifted.wrapping_sub(ONES * 10) & !shifted & (ONES * 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_bits_find_the_first_digit() {
        for byte in 0..=255u8 {
            for position in 0..8 {
                let mut word = [b'a'; 8];
                word[position] = byte;
                let bits = digit_bits(u64::from_le_bytes(word));
                let first = (bits != 0).then(|| bits.trailing_zeros() as usize / 8);
                let want = byte.is_ascii_digit().then_some(position);
                assert_eq!(first, want, "{byte} at {position}");
            }
        }
        assert_eq!(digit_bits(u64::from_le_bytes(*b"/:/:\x80\xff ~")), 0);
        let bits = digit_bits(u64::from_le_bytes(*b"ab:9\xff0z1"));
        assert_eq!(bits.trailing_zeros() / 8, 3);
    }

    #[test]
    fn scan_finds_runs_across_word_edges() {
        // Runs that start in one eight-byte word and end in the next, and a tail shorter than one.
        let text = "abcdef 12345678 x DE89 ab 7";
        let anchors = Anchors::scan(text);
        assert_eq!(anchors.numbers, [7, 26]);
        assert_eq!(anchors.letter_pairs, [20]);
    }

    #[test]
    fn anchors_mark_number_starts_and_letter_pairs() {
        let text = "DE89 x12 a1 12.5 (030) +44 _9 ab12 a-b 99é7 GB";
        let anchors = Anchors::scan(text);
        let numbers: Vec<&str> = anchors.numbers.iter().map(|&i| &text[i..]).collect();
        let firsts: Vec<char> = numbers.iter().filter_map(|s| s.chars().next()).collect();
        assert_eq!(firsts, ['1', '5', '0', '4', '9', '7']);
        let pairs: Vec<&str> = anchors
            .letter_pairs
            .iter()
            .map(|&i| &text[i - 2..i + 2])
            .collect();
        assert_eq!(pairs, ["DE89", "ab12"]);
    }
}
