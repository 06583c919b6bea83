//! IPv4 and IPv6 addresses.

use std::net::Ipv6Addr;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

use super::boundary::{self, number_end, number_start};
use super::{Candidate, PiiKind, Rank};

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}").expect("static pattern")
});

// Up to eight hex groups joined by colons (empty groups make `::`), optionally ending in a dotted
// IPv4; `std` decides whether the candidate really is an address.
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}")
        .expect("static pattern")
});

/// Push every IPv4 and IPv6 address in `text`.
pub(super) fn find(text: &str, out: &mut Vec<Candidate>) {
    boundary::each_match(&IPV4, text, |m| {
        // A CIDR suffix (`10.0.0.0/8`) still ends the address.
        let end_ok = number_end(text, m.end()) || boundary::at(text, m.end()) == Some(b'/');
        let ok = valid_ipv4(m.as_str()) && number_start(text, m.start()) && end_ok;
        if ok {
            out.push(Candidate::new(PiiKind::Ip, Rank::Ip, m.range()));
        }
        ok
    });
    boundary::each_match(&IPV6, text, |m| {
        let glued = |b: u8| boundary::is_word(b) || b == b':';
        let start_ok = !boundary::before(text, m.start()).is_some_and(glued);
        let end_ok = !boundary::at(text, m.end()).is_some_and(glued);
        let ok = start_ok && end_ok && valid_ipv6(m.as_str());
        if ok {
            out.push(Candidate::new(PiiKind::Ip, Rank::Ip, m.range()));
        }
        ok
    });
}

/// Four decimal octets ≤ 255 without leading zeros (`010` reads as octal to some tools).
fn valid_ipv4(candidate: &str) -> bool {
    candidate.split('.').all(|octet| {
        octet.parse::<u16>().is_ok_and(|n| n <= 255)
            && (octet.len() == 1 || !octet.starts_with('0'))
    })
}

/// A parseable IPv6 address with at least one decimal digit: `dead::beef` is far more often a
/// path in code than an address.
fn valid_ipv6(candidate: &str) -> bool {
    candidate.bytes().any(|b| b.is_ascii_digit()) && Ipv6Addr::from_str(candidate).is_ok()
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
