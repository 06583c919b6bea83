//! Proptest strategies for the fuzzing in [`super`]: documents pooled from the tables, business
//! lookalikes that must stay, fresh valid values of every kind, and tickets that plant them.

use std::ops::Range;

use proptest::prelude::*;

use super::{NEGATIVES, POSITIVES};
use crate::pii::PiiKind;

fn piece() -> impl Strategy<Value = String> {
    let pooled: Vec<String> = POSITIVES
        .iter()
        .map(|(_, v)| v.to_string())
        .chain(NEGATIVES.iter().map(|s| s.to_string()))
        .chain(["[EMAIL_1]", "[CARD_2]", "[SECRET_10]", "[IP_1", "EMAIL_1]"].map(String::from))
        .collect();
    prop_oneof![
        4 => proptest::sample::select(pooled),
        2 => "[a-zA-Z]{1,12}",
        1 => "[0-9 .:+@\\-\\[\\]_/]{1,12}",
        1 => any::<String>(),
    ]
}

pub(super) fn document() -> impl Strategy<Value = String> {
    let separator = proptest::sample::select(vec![" ", "\n", ", ", " | ", ". "]);
    prop::collection::vec((piece(), separator), 0..24).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(piece, sep)| piece + sep)
            .collect::<String>()
    })
}

/// Business text with digits in it that is not personal data: none of it may be touched.
fn lookalike() -> impl Strategy<Value = String> {
    let date =
        (2000u16..2030, 1u8..13, 1u8..29, 0..3usize).prop_map(|(y, m, d, form)| match form {
            0 => format!("{y}-{m:02}-{d:02}"),
            1 => format!("{d:02}/{m:02}/{y}"),
            _ => format!("{d:02}.{m:02}.{y}"),
        });
    let amount = (0u32..100_000, 0u8..100, 0..3usize).prop_map(|(n, c, form)| match form {
        0 => format!("${},{:03}.{c:02}", n / 1000 + 1, n % 1000),
        1 => format!("{n},{c:02} €"),
        _ => format!("EUR {n}.{c:02}"),
    });
    let version =
        (0u8..20, 0u8..50, 0u16..300, any::<u8>(), 0..4usize).prop_map(|(a, b, c, d, form)| {
            match form {
                0 => format!("v{a}.{b}.{c}"),
                1 => format!("{a}.{b}.{c}"),
                2 => format!("version {a}.{b}.{c}.{d}"),
                _ => format!("10.0.{}.{c}", 19000 + u16::from(d)),
            }
        });
    let usps = ("9[2-5]00", prop::collection::vec("[0-9]{4}", 4), "[0-9]{2}")
        .prop_map(|(head, blocks, tail)| format!("{head} {} {tail}", blocks.join(" ")));
    let not_luhn = ("[1-9][0-9]{14}", 0..3usize).prop_map(|(body, form)| {
        let wrong = (luhn_check_digit(&body) + 1) % 10;
        let number = format!("{body}{wrong}");
        match form {
            0 => number,
            1 => grouped(&number, 4, " "),
            _ => grouped(&number, 4, "-"),
        }
    });
    prop_oneof![
        "[0-9]{6}".prop_map(|d| format!("Order 00{d}")),
        "[0-9]{5}".prop_map(|d| format!("order #A-{d}")),
        "[0-9]{6}".prop_map(|d| format!("ORD-2024-{d}")),
        date,
        amount,
        version,
        usps,
        "1Z[A-Z0-9]{16}",
        not_luhn,
        "[0-9a-f]{40}",
        "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}",
    ]
}

/// A fresh, valid value of some kind, written as people write it.
fn planted() -> impl Strategy<Value = (PiiKind, String)> {
    prop_oneof![
        r"[a-z][a-z0-9._+-]{0,8}[a-z0-9]@[a-z][a-z0-9-]{0,8}[a-z0-9]\.(com|org|io|de|co\.uk)"
            .prop_map(|email| (PiiKind::Email, email)),
        phone().prop_map(|phone| (PiiKind::Phone, phone)),
        card().prop_map(|card| (PiiKind::Card, card)),
        iban().prop_map(|iban| (PiiKind::Iban, iban)),
        (1u16..900, 1u8..100, 1u16..10_000)
            .prop_filter("area 666 is never issued", |(area, _, _)| *area != 666)
            .prop_map(|(a, g, s)| (PiiKind::Ssn, format!("{a:03}-{g:02}-{s:04}"))),
        any::<[u8; 4]>().prop_map(|[a, b, c, d]| (PiiKind::Ip, format!("{a}.{b}.{c}.{d}"))),
        any::<[u16; 7]>().prop_map(|s| {
            let address = std::net::Ipv6Addr::new(0x2001, s[0], s[1], s[2], s[3], s[4], s[5], s[6]);
            (PiiKind::Ip, address.to_string())
        }),
        secret().prop_map(|secret| (PiiKind::Secret, secret)),
    ]
}

fn phone() -> impl Strategy<Value = String> {
    let north_american = ("[2-9][0-9]{2}", "[0-9]{3}", "[0-9]{4}", 0..4usize).prop_map(
        |(area, exchange, line, form)| match form {
            0 => format!("({area}) {exchange}-{line}"),
            1 => format!("{area}-{exchange}-{line}"),
            2 => format!("{area}.{exchange}.{line}"),
            _ => format!("+1 {area}-{exchange}-{line}"),
        },
    );
    let international = (
        "(44|49|33|39|34|31|353|971)",
        "[1-9][0-9]{1,3}",
        "[0-9]{6,8}",
        any::<bool>(),
    )
        .prop_map(|(code, area, subscriber, plus)| {
            let prefix = if plus { "+" } else { "00" };
            format!("{prefix}{code} {area} {subscriber}")
        });
    prop_oneof![
        north_american,
        international,
        ("0[1-9][0-9]{1,3}", "[1-9][0-9]{4,6}")
            .prop_map(|(area, number)| format!("{area} {number}")),
        "0[1-9]( [0-9]{2}){4}",
    ]
}

fn card() -> impl Strategy<Value = String> {
    let sixteen =
        ("(4|51|55|2221|6011|35)", "[0-9]{14}", 0..3usize).prop_map(|(prefix, body, form)| {
            let mut number = format!("{prefix}{body}");
            number.truncate(15);
            number.push(char::from(b'0' + luhn_check_digit(&number)));
            match form {
                0 => number,
                1 => grouped(&number, 4, " "),
                _ => grouped(&number, 4, "-"),
            }
        });
    let amex = ("3[47][0-9]{12}", any::<bool>()).prop_map(|(body, spaced)| {
        let number = format!("{body}{}", luhn_check_digit(&body));
        if spaced {
            format!("{} {} {}", &number[..4], &number[4..10], &number[10..])
        } else {
            number
        }
    });
    prop_oneof![3 => sixteen, 1 => amex]
}

fn iban() -> impl Strategy<Value = String> {
    let bban = prop_oneof![
        "[0-9]{18}".prop_map(|b| ("DE", b)),
        "[A-Z]{4}[0-9]{14}".prop_map(|b| ("GB", b)),
        "[A-Z]{4}[0-9]{10}".prop_map(|b| ("NL", b)),
        "[0-9]{10}[A-Z0-9]{11}[0-9]{2}".prop_map(|b| ("FR", b)),
    ];
    (bban, any::<bool>(), any::<bool>()).prop_map(|((country, bban), spaced, lower)| {
        let rearranged = format!("{bban}{country}00");
        let remainder = rearranged.chars().fold(0u32, |r, c| {
            let value = c.to_digit(36).unwrap_or_default();
            if value < 10 {
                (r * 10 + value) % 97
            } else {
                (r * 100 + value) % 97
            }
        });
        let compact = format!("{country}{:02}{bban}", 98 - remainder);
        let iban = if spaced {
            grouped(&compact, 4, " ")
        } else {
            compact
        };
        if lower {
            iban.to_lowercase()
        } else {
            iban
        }
    })
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9]{30}".prop_map(|body| format!("sk-proj-{body}7q")),
        "[A-Z0-9]{15}".prop_map(|body| format!("AKIA{body}7")),
        "[A-Za-z0-9]{35}".prop_map(|body| format!("ghp_{body}1")),
        ("[0-9]{12}", "[A-Za-z0-9]{24}").prop_map(|(id, body)| format!("xoxb-{id}-{body}")),
        "[A-Za-z0-9_-]{20,43}".prop_map(|signature| {
            format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.{signature}")
        }),
        "[0-9a-f]{64}".prop_map(|body| format!("sf_{body}")),
        (
            "(password|passwd|api_key|token|DB_PASSWORD|client_secret)",
            "(=|: | = )",
            "[A-Za-z0-9!%*+/-]{1,16}",
        )
            .prop_map(|(name, separator, value)| format!("{name}{separator}{value}")),
        (
            "(postgres|mysql|redis|amqp)",
            "[a-z]{0,8}",
            "[A-Za-z0-9!%*]{1,12}",
            "[a-z]{1,8}\\.(internal|example\\.com)(:[0-9]{4})?",
        )
            .prop_map(|(scheme, user, password, host)| {
                format!("{scheme}://{user}:{password}@{host}")
            }),
    ]
}

fn luhn_check_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match (i % 2 == 0, d * 2) {
                (true, doubled) if doubled > 9 => doubled - 9,
                (true, doubled) => doubled,
                (false, _) => d,
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

fn grouped(compact: &str, size: usize, separator: &str) -> String {
    compact
        .as_bytes()
        .chunks(size)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(separator)
}

/// A piece of a generated ticket: a planted value, or text that must stay.
#[derive(Debug, Clone)]
pub(super) enum Part {
    Value(PiiKind, String),
    Plain(String),
}

/// Tickets made of prose words, business numbers and planted values, joined by punctuation
/// that ends a number (a single space would let two numbers run into one).
pub(super) fn ticket() -> impl Strategy<Value = Vec<Part>> {
    const WORDS: &[&str] = &[
        "Hi", "team", "the", "customer", "said", "please", "refund", "call", "me", "at", "or",
        "mail", "card", "number", "account", "thanks", "from", "login", "address", "IBAN", "key",
        "order", "tracking", "SSN", "é", "日本",
    ];
    let part = prop_oneof![
        3 => planted().prop_map(|(kind, value)| Part::Value(kind, value)),
        3 => lookalike().prop_map(Part::Plain),
        4 => proptest::sample::select(WORDS).prop_map(|w| Part::Plain(w.to_string())),
    ];
    prop::collection::vec(part, 1..16)
}

/// The text of a ticket, and where its planted values are.
pub(super) fn assemble(
    parts: &[Part],
    separators: &[&str],
) -> (String, Vec<(PiiKind, Range<usize>)>) {
    let mut text = String::new();
    let mut planted = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            text.push_str(separators[i % separators.len()]);
        }
        match part {
            Part::Value(kind, value) => {
                planted.push((*kind, text.len()..text.len() + value.len()));
                text.push_str(value);
            }
            Part::Plain(plain) => text.push_str(plain),
        }
    }
    (text, planted)
}
