//! Whole-module behaviour: every detector together, precision on business text, and properties.

use proptest::prelude::*;

use super::*;

const ALL: &[PiiKind] = &PiiKind::ALL;

fn values(text: &str) -> Vec<(PiiKind, &str)> {
    detect(text, ALL)
        .into_iter()
        .map(|f| (f.kind, &text[f.range]))
        .collect()
}

/// One true positive per detector form; each must be found alone, whole and with the right kind.
const POSITIVES: &[(PiiKind, &str)] = &[
    (PiiKind::Email, "jane.doe@example.com"),
    (PiiKind::Email, "ops+alerts@mail.example.co.uk"),
    (PiiKind::Phone, "+1 (555) 123-4567"),
    (PiiKind::Phone, "+44 20 7946 0958"),
    (PiiKind::Phone, "(555) 123-4567"),
    (PiiKind::Phone, "555-123-4567"),
    (PiiKind::Phone, "020 7946 0958"),
    (PiiKind::Phone, "030 123456"),
    (PiiKind::Card, "4111 1111 1111 1111"),
    (PiiKind::Card, "5555-5555-5555-4444"),
    (PiiKind::Card, "378282246310005"),
    (PiiKind::Iban, "DE89 3704 0044 0532 0130 00"),
    (PiiKind::Iban, "GB82WEST12345698765432"),
    (PiiKind::Ssn, "123-45-6789"),
    (PiiKind::Ip, "192.168.1.10"),
    (PiiKind::Ip, "2001:db8::1"),
    (PiiKind::Secret, "sk-ant-api03-AbC123dEf456GhI789jKl012MnO345pQr"),
    (PiiKind::Secret, "AKIAIOSFODNN7EXAMPLE"),
    (PiiKind::Secret, "ghp_1234567890abcdefghijABCDEFGHIJ123456"),
    (PiiKind::Secret, "xoxb-123456789012-1234567890123-AbCdEfGhIjKl"),
    (PiiKind::Secret, "Zq8xK2mN4vB7cR1tY6wP3sL9hJ5gF0dA"),
    (
        PiiKind::Secret,
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ),
];

/// Business text that looks like data but is not personal: nothing here may be touched.
const NEGATIVES: &[&str] = &[
    "order #A-10293",
    "ORD-2024-000123",
    "due 2024-03-15",
    "due 15/03/2024",
    "due 03/15/2024 at 09:30",
    "2024-03-15T10:20:30Z",
    "v1.2.3",
    "Windows 10.0.19045",
    "build 10.0.19045.2965",
    "total $1,234.56",
    "total 1.234,56 €",
    "tracking 1Z999AA10123456784",
    "request 550e8400-e29b-41d4-a716-446655440000",
    "commit da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "short sha 3f2a9c1",
    "ref 4111111111111112",
    "ref 1234567812345678",
    "qty 12345678",
    "std::collections::HashMap",
    "score +5, up 100.00%",
    "room 0301, call ext. 4567",
    "ISO 9001:2015",
    "see RFC 7231 section 6.5.1",
    "icon@2x.png",
    "MyProjectName_Release_Candidate_v2_Build_2024",
];

#[test]
fn every_positive_is_found_whole() {
    for &(kind, value) in POSITIVES {
        let text = format!("Please see {value} for details.");
        assert_eq!(values(&text), vec![(kind, value)], "{value}");
        assert_eq!(values(value), vec![(kind, value)], "{value} alone");
    }
}

#[test]
fn business_lookalikes_are_left_alone() {
    for text in NEGATIVES {
        assert_eq!(values(text), vec![], "{text}");
    }
}

#[test]
fn kinds_parse_from_config_names() {
    for kind in PiiKind::ALL {
        assert_eq!(PiiKind::parse(kind.as_str()), Ok(kind));
        assert_eq!(kind.as_str().parse::<PiiKind>(), Ok(kind));
        assert_eq!(PiiKind::from_tag(kind.tag()), Some(kind));
    }
    let names: Vec<_> = PiiKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "email",
            "phone",
            "credit_card",
            "iban",
            "ssn",
            "ip",
            "secret"
        ]
    );
    let tags: Vec<_> = PiiKind::ALL.iter().map(|k| k.tag()).collect();
    assert_eq!(
        tags,
        ["EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET"]
    );
    let error = PiiKind::parse("card").unwrap_err();
    assert!(error.to_string().contains("`card`"), "{error}");
    assert!(error.to_string().contains("credit_card"), "{error}");
}

#[test]
fn detect_only_runs_the_requested_kinds() {
    let text = "a@example.com 10.0.0.1 123-45-6789";
    let kinds: Vec<_> = detect(text, &[PiiKind::Ip, PiiKind::Ssn])
        .into_iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(kinds, [PiiKind::Ip, PiiKind::Ssn]);
    assert!(detect(text, &[]).is_empty());
}

#[test]
fn overlapping_findings_merge_into_one_redaction() {
    // The international number's greedy blocks run into the card; both must disappear.
    let text = "+44 20 7946 0958 4111 1111 1111 1111";
    let findings = detect(text, ALL);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].range, 0..text.len());
    // A JWT is named as a secret, not as the entropy tokens inside it.
    let (_, jwt) = POSITIVES[POSITIVES.len() - 1];
    assert_eq!(values(jwt), vec![(PiiKind::Secret, jwt)]);
}

#[test]
fn summarize_counts_kinds_never_values() {
    let text = "a@example.com, b@example.com, 10.0.0.1";
    let summary = summarize(&detect(text, ALL));
    assert_eq!(summary, vec![(PiiKind::Email, 2), (PiiKind::Ip, 1)]);
    assert!(summarize(&[]).is_empty());
}

#[test]
fn adversarial_megabyte_inputs_finish() {
    // Shapes that make naive scanners quadratic: long runs of what a pattern almost matches.
    let unit_patterns = [
        "1",
        "1 ",
        "1-",
        "a",
        "a.",
        "a@",
        "@a.",
        "+1 ",
        "0",
        "::",
        "1:",
        "1.",
        "ey",
        "ey.",
        "-----BEGIN PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----.",
        "DE89",
        "[EMAIL_1",
        "Ab1",
        "sk-",
        "é",
        "4111 ",
    ];
    for unit in unit_patterns {
        let text = unit.repeat(1_000_000 / unit.len());
        let findings = detect(&text, ALL);
        let mut mapping = Redactions::new();
        let redacted = redact(&text, ALL, &mut mapping);
        assert_eq!(restore(&redacted, &mapping), text, "{unit:?}");
        assert!(findings
            .windows(2)
            .all(|w| w[0].range.end <= w[1].range.start));
    }
}

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

fn document() -> impl Strategy<Value = String> {
    let separator = proptest::sample::select(vec![" ", "\n", ", ", " | ", ". "]);
    prop::collection::vec((piece(), separator), 0..24).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(piece, sep)| piece + sep)
            .collect::<String>()
    })
}

proptest! {
    #[test]
    fn detect_never_panics_and_findings_are_well_formed(text in any::<String>()) {
        let findings = detect(&text, ALL);
        for finding in &findings {
            prop_assert!(finding.range.start < finding.range.end);
            prop_assert!(text.is_char_boundary(finding.range.start));
            prop_assert!(text.is_char_boundary(finding.range.end));
        }
        prop_assert!(findings.windows(2).all(|w| w[0].range.end <= w[1].range.start));
    }

    #[test]
    fn restore_inverts_redact_on_any_text(text in any::<String>()) {
        let mut mapping = Redactions::new();
        let redacted = redact(&text, ALL, &mut mapping);
        prop_assert_eq!(restore(&redacted, &mapping), text);
    }

    #[test]
    fn restore_inverts_redact_on_documents(texts in prop::collection::vec(document(), 1..4)) {
        // Several texts of one request share one mapping, as a system prompt and a user message do.
        let mut mapping = Redactions::new();
        let redacted: Vec<String> = texts.iter().map(|t| redact(t, ALL, &mut mapping)).collect();
        for (text, redacted) in texts.iter().zip(&redacted) {
            prop_assert_eq!(&restore(redacted, &mapping), text);
        }
    }

    #[test]
    fn redact_leaves_no_detected_value(text in document()) {
        let mut mapping = Redactions::new();
        let redacted = redact(&text, ALL, &mut mapping);
        for finding in detect(&text, ALL) {
            let value = &text[finding.range];
            prop_assert!(!redacted.contains(value), "{:?} left in {:?}", value, redacted);
        }
        prop_assert_eq!(detect(&redacted, ALL), vec![]);
    }

    #[test]
    fn luhn_accepts_exactly_one_check_digit(body in "[0-9]{12,18}") {
        let valid: Vec<char> = ('0'..='9')
            .filter(|d| financial::luhn_valid(&format!("{body}{d}")))
            .collect();
        prop_assert_eq!(valid.len(), 1);
    }

    #[test]
    fn mod97_rejects_any_single_digit_change(position in 4usize..22, delta in 1u8..10) {
        let mut iban = b"DE89370400440532013000".to_vec();
        let digit = iban[position] - b'0';
        iban[position] = b'0' + (digit + delta) % 10;
        let changed = String::from_utf8(iban).unwrap_or_default();
        prop_assert!(!financial::iban_valid(&changed), "{}", changed);
    }
}
