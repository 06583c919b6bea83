//! Byte-level context checks around a candidate match.
//!
//! The `regex` crate has no look-around, so detectors match the value itself and then look at
//! the bytes on either side. Only ASCII bytes matter here: a multi-byte UTF-8 character next to a
//! value counts as a separator, and offsets handed back are always those of the regex match, so
//! they stay on char boundaries.

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

/// True when the byte before `start` does not glue the value to a word.
pub(super) fn word_start(text: &str, start: usize) -> bool {
    !before(text, start).is_some_and(is_word)
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

/// Every match of a bounded-length pattern that `accept` takes. After a rejected match the search
/// resumes one character later rather than after it, so that a rejected candidate (`045 020`
/// glued to `19`) cannot hide a valid one overlapping it (`020 7946 0958`). Because the patterns
/// this is used with match at most a few dozen bytes, the total work stays linear.
pub(super) fn each_match<'t>(
    pattern: &regex::Regex,
    text: &'t str,
    mut accept: impl FnMut(regex::Match<'t>) -> bool,
) {
    let mut from = 0;
    while let Some(m) = pattern.find_at(text, from) {
        from = if accept(m) {
            m.end().max(m.start() + 1)
        } else {
            m.start() + m.as_str().chars().next().map_or(1, char::len_utf8)
        };
        if from > text.len() {
            break;
        }
    }
}
