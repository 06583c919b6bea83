//! IPv4 and IPv6 addresses.

use std::net::Ipv6Addr;
use std::ops::Range;
use std::str::FromStr;

use super::boundary::{self, digits_at, number_end, number_start};
use super::{Candidate, PiiKind, Rank};

/// Words that make a dotted quad a version rather than an address: `version 1.2.3.4`,
/// `Build: 10.0.0.1`. Compared ignoring case.
const VERSION_WORDS: &[&str] = &["version", "ver", "v", "build", "release", "firmware", "fw"];

/// Push every IPv4 and IPv6 address in `text`; `numbers` are the number starts of
/// [`super::boundary::Anchors`].
pub(super) fn find(text: &str, numbers: &[usize], out: &mut Vec<Candidate>) {
    let mut from = 0;
    for &start in numbers {
        if start < from {
            continue;
        }
        if let Some(range) = ipv4_at(text, start) {
            from = range.end;
            out.push(Candidate::new(PiiKind::Ip, Rank::Ip, range));
        }
    }
    find_ipv6(text, out);
}

/// An IPv4 address at `start`: four decimal octets ≤ 255 without leading zeros (`010` reads as
/// octal to some tools), not part of a longer dotted run (so the version `10.0.19045.2965`
/// stays) and not announced as a version.
fn ipv4_at(text: &str, start: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let mut end = start;
    for octet in 0..4 {
        if octet > 0 {
            if bytes.get(end) != Some(&b'.') {
                return None;
            }
            end += 1;
        }
        let len = digits_at(bytes, end, 3);
        if len == 0 || !valid_octet(&bytes[end..end + len]) {
            return None;
        }
        end += len;
    }
    // A CIDR suffix (`10.0.0.0/8`) still ends the address.
    let end_ok = number_end(text, end) || boundary::at(text, end) == Some(b'/');
    let ok = end_ok && number_start(text, start) && !announced_as_version(text, start);
    ok.then_some(start..end)
}

fn valid_octet(digits: &[u8]) -> bool {
    let value = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    value <= 255 && (digits.len() == 1 || digits[0] != b'0')
}

/// True when the word before `start` (past spaces and one `:` or `.`) is a version word.
fn announced_as_version(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end_matches(' ');
    let before = before
        .strip_suffix([':', '.'])
        .unwrap_or(before)
        .trim_end_matches(' ');
    // One letter more than the longest version word is enough to tell.
    let word_len = before
        .bytes()
        .rev()
        .take(9)
        .take_while(u8::is_ascii_alphabetic)
        .count();
    let word_start = before.len() - word_len;
    let word = &before[word_start..];
    // The word stands alone: `--v 1.2.3.4` ends a token, and that token may itself be redacted.
    let alone = match boundary::before(before, word_start) {
        None => true,
        Some(byte) => byte.is_ascii_whitespace() || !byte.is_ascii() || b"([{\"',;".contains(&byte),
    };
    alone && VERSION_WORDS.iter().any(|v| v.eq_ignore_ascii_case(word))
}

/// IPv6 addresses: up to eight hex groups joined by colons (empty groups make `::`), optionally
/// ending in a dotted IPv4; `std` decides whether a candidate really is an address. Every
/// address holds a colon within its first five bytes, so candidates are taken from the colons.
fn find_ipv6(text: &str, out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    let glued = |b: u8| boundary::is_word(b) || b == b':';
    let mut from = 0;
    let mut search = 0;
    while let Some(offset) = text.get(search..).and_then(|rest| rest.find(':')) {
        let colon = search + offset;
        search = colon + 1;
        let hex_before = bytes[from..colon]
            .iter()
            .rev()
            .take(5)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        // Five hex digits before a colon glue any candidate to a word.
        let start = colon - hex_before;
        if hex_before > 4 || boundary::before(text, start).is_some_and(glued) {
            continue;
        }
        let end = ipv6_end(bytes, start);
        let ok = end > start
            && !boundary::at(text, end).is_some_and(glued)
            && valid_ipv6(&text[start..end]);
        if ok {
            out.push(Candidate::new(PiiKind::Ip, Rank::Ip, start..end));
            from = end;
            search = end;
        }
    }
}

/// Where the colon-joined hex groups (and dotted tail) starting at `start` end; `start` when
/// there are fewer than two colons.
fn ipv6_end(bytes: &[u8], start: usize) -> usize {
    let hex_at = |i: usize| {
        bytes
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_hexdigit())
            .count()
    };
    let mut end = start + hex_at(start);
    let mut colons = 0;
    while colons < 7 && bytes.get(end) == Some(&b':') {
        end += 1 + hex_at(end + 1);
        colons += 1;
    }
    if colons < 2 {
        return start;
    }
    for _ in 0..3 {
        let digits = digits_at(bytes, end + 1, 3);
        if bytes.get(end) != Some(&b'.') || digits == 0 {
            break;
        }
        end += 1 + digits;
    }
    end
}

/// A parseable IPv6 address with at least one decimal digit: `dead::beef` is far more often a
/// path in code than an address.
fn valid_ipv6(candidate: &str) -> bool {
    candidate.bytes().any(|b| b.is_ascii_digit()) && Ipv6Addr::from_str(candidate).is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::boundary::Anchors;
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &Anchors::scan(text).numbers, &mut out);
        out.iter().map(|c| &text[c.finding.range.clone()]).collect()
    }

    /// `1.2.3.4` is both a valid address and a plausible version. A dotted quad counts as an
    /// address — leaving a real one in the clear costs more than redacting a version — unless
    /// the text says it is a version: a `v` glued to it, or a version word just before it.
    #[test]
    fn a_dotted_quad_is_an_address_unless_marked_as_a_version() {
        for text in [
            "1.2.3.4",
            "ping 1.2.3.4",
            "from 1.2.3.4 at 10:30",
            "(1.2.3.4)",
        ] {
            assert_eq!(found(text), vec!["1.2.3.4"], "{text}");
        }
        for text in [
            "v1.2.3.4",
            "app v 1.2.3.4",
            "version 1.2.3.4",
            "Version: 1.2.3.4",
            "upgraded to build 1.2.3.4 today",
            "Firmware 2.1.0.12",
            "ver. 1.2.3.4",
            "release 10.0.0.1",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
        // Only the word right before counts.
        assert_eq!(found("version 2 runs on 1.2.3.4"), vec!["1.2.3.4"]);
        assert_eq!(found("subversion 1.2.3.4"), vec!["1.2.3.4"]);
        // A word that ends a token announces nothing.
        assert_eq!(found("key--v 1.2.3.4"), vec!["1.2.3.4"]);
        assert_eq!(found("me@example.build 1.2.3.4"), vec!["1.2.3.4"]);
        assert!(found("(version 1.2.3.4)").is_empty());
    }

    #[test]
    fn finds_addresses() {
        let cases = [
            ("from 192.168.1.10.", "192.168.1.10"),
            ("host=10.0.0.1:8080", "10.0.0.1"),
            ("0.0.0.0/0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            (
                "2001:db8:85a3:0:0:8a2e:370:7334",
                "2001:db8:85a3:0:0:8a2e:370:7334",
            ),
            ("addr 2001:db8::1 up", "2001:db8::1"),
            ("loopback ::1.", "::1"),
            ("fe80::1%eth0", "fe80::1"),
        ];
        for (text, want) in cases {
            assert_eq!(found(text), vec![want], "{text}");
        }
    }

    #[test]
    fn embedded_ipv4_is_part_of_the_ipv6_address() {
        let text = "[::ffff:192.0.2.1]:443";
        let findings = crate::pii::detect(text, &[PiiKind::Ip]);
        assert_eq!(findings.len(), 1);
        assert_eq!(&text[findings[0].range.clone()], "::ffff:192.0.2.1");
    }

    #[test]
    fn leaves_lookalikes() {
        for text in [
            "256.1.1.1",
            "1.2.3",
            "v1.2.3.4",
            "1.2.3.4.5",
            "01.2.3.4",
            "10.0.19045",
            "10.0.19045.2965",
            "1.234,56",
            "12:30:45",
            "std::fmt::Display",
            "dead::beef",
            "00:1A:2B:3C:4D:5E",
            "a :: b",
            "::",
            "2024-03-15T10:20:30Z",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
