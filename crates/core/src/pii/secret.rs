//! Secrets: API keys by prefix, JWTs, PEM private keys and unprefixed high-entropy tokens.
//!
//! Calibration of the high-entropy rule. A token is a maximal run of at least 32 characters of
//! `[A-Za-z0-9+/_-]` (plus `=` padding) that holds a digit, an upper-case and a lower-case letter,
//! is not hex-only, changes character class (lower, upper, digit, other) at least 0.4 times per
//! character, has fewer than 40 % vowels among its letters (random letters: 19 %; English
//! identifiers: 30–45 %) and has a Shannon entropy per character of at least
//! `4.1 + 0.7 * (min(len, 64) - 32) / 32` bits (4.1 at 32 characters, 4.8 from 64 on). The
//! threshold grows with length because the empirical entropy of a random string grows with its
//! length. In a simulation of 20,000 random base62 and base64url strings per length, the rule
//! caught 98.5 % of them at 32 characters, 99.5 % at 40, 99.9 % at 64 and all at 100.
//! What it leaves: hex (UUIDs, SHAs, hashes — at most 4 bits per character, and identifiers rather
//! than credentials), file paths and identifiers such as `AbstractSingletonProxyFactoryBean2Impl`
//! (long same-class runs), `ThisIsAVeryLongCamelCaseIdentifierName2` (vowels) or
//! `MyProjectName_Release_Candidate_v2_Build_2024` (entropy 4.37 under the 4.38 it would need).
//! What it takes on purpose: any random-looking base64 blob, such as an inline image.

use std::sync::LazyLock;

use regex::Regex;

use super::boundary;
use super::{Candidate, PiiKind, Rank};

static PREFIXED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"sk-[A-Za-z0-9_\-]{20,}",
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
        r"|gh[pousr]_[A-Za-z0-9]{36,}",
        r"|github_pat_[A-Za-z0-9_]{22,}",
        r"|xox[abprs]-[A-Za-z0-9\-]{10,}",
    ))
    .expect("static pattern")
});

// A JWT's header and payload are JSON objects, so both start with `{"` or `{ `, which base64
// encodes as `ey`; the signature is empty for `"alg": "none"`.
static JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"ey[A-Za-z0-9_\-]{8,}\.ey[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
        .expect("static pattern")
});

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/_\-]{32,}={0,2}").expect("static pattern"));

const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_END: &str = "-----END ";
const PEM_DASHES: &str = "-----";
/// The longest label looked at, e.g. `ENCRYPTED PRIVATE KEY` or `OPENSSH PRIVATE KEY`.
const PEM_MAX_LABEL: usize = 64;

/// Push every secret in `text`.
pub(super) fn find(text: &str, out: &mut Vec<Candidate>) {
    find_prefixed(text, out);
    find_jwts(text, out);
    find_pem_keys(text, out);
    find_entropy_tokens(text, out);
}

fn find_prefixed(text: &str, out: &mut Vec<Candidate>) {
    for m in PREFIXED.find_iter(text) {
        let s = m.as_str();
        // Free-text slugs like `sk-the-long-hyphenated-name` have no digits.
        let mixed =
            s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic());
        if mixed && boundary::word_start(text, m.start()) && boundary::word_end(text, m.end()) {
            out.push(Candidate::new(
                PiiKind::Secret,
                Rank::PrefixedSecret,
                m.range(),
            ));
        }
    }
}

fn find_jwts(text: &str, out: &mut Vec<Candidate>) {
    for m in JWT.find_iter(text) {
        let start_ok =
            !boundary::before(text, m.start()).is_some_and(|b| boundary::is_word(b) || b == b'.');
        let header = m.as_str().split('.').next().unwrap_or_default();
        if start_ok && boundary::word_end(text, m.end()) && header_has_alg(header) {
            out.push(Candidate::new(
                PiiKind::Secret,
                Rank::PrefixedSecret,
                m.range(),
            ));
        }
    }
}

/// True when a base64url JWT header decodes to a JSON object with an `alg` member.
fn header_has_alg(header: &str) -> bool {
    let Some(bytes) = decode_base64(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|json| json.as_object().is_some_and(|o| o.contains_key("alg")))
}

/// Decode unpadded base64 in either the standard or the URL-safe alphabet.
fn decode_base64(encoded: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(encoded.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for b in encoded.bytes() {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(bytes)
}

/// PEM private-key blocks. Ends are found with one forward-only cursor, so that many BEGIN lines
/// without an END cannot make the scan quadratic.
fn find_pem_keys(text: &str, out: &mut Vec<Candidate>) {
    let mut from = 0;
    let mut next_end: Option<usize> = None;
    // Once a search finds no END line, none exists further on either.
    let mut ends_exhausted = false;
    while let Some(offset) = text.get(from..).and_then(|rest| rest.find(PEM_BEGIN)) {
        let begin = from + offset;
        let label_start = begin + PEM_BEGIN.len();
        from = label_start;
        let Some(label) = pem_label(text, label_start) else {
            continue;
        };
        if !label.contains("PRIVATE KEY") {
            continue;
        }
        let body_start = label_start + label.len() + PEM_DASHES.len();
        if !ends_exhausted && next_end.is_none_or(|end| end < body_start) {
            next_end = text
                .get(body_start..)
                .and_then(|rest| rest.find(PEM_END))
                .map(|i| body_start + i);
            ends_exhausted = next_end.is_none();
        }
        let next_end = next_end.filter(|&end| end >= body_start);
        let end = match next_end {
            Some(end_marker) => match pem_label(text, end_marker + PEM_END.len()) {
                Some(end_label) if end_label.contains("PRIVATE KEY") => {
                    end_marker + PEM_END.len() + end_label.len() + PEM_DASHES.len()
                }
                _ => pem_body_end(text, body_start),
            },
            // A truncated key is still a key: take the body up to where it stops looking like one.
            None => pem_body_end(text, body_start),
        };
        out.push(Candidate::new(
            PiiKind::Secret,
            Rank::PrefixedSecret,
            begin..end,
        ));
        from = end;
    }
}

/// The label of a BEGIN or END line starting at `at`, when the line is well formed.
fn pem_label(text: &str, at: usize) -> Option<&str> {
    let rest = text.get(at..)?;
    let window = rest
        .get(..rest.len().min(PEM_MAX_LABEL + PEM_DASHES.len()))
        .unwrap_or(rest);
    let len = window.find(PEM_DASHES)?;
    let label = &rest[..len];
    label
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ')
        .then_some(label)
}

/// Where a PEM body without its END line stops: the first byte that base64, line breaks or the
/// `Proc-Type:`-style headers of encrypted keys cannot contain.
fn pem_body_end(text: &str, from: usize) -> usize {
    let body = text.as_bytes().get(from..).unwrap_or_default();
    let len = body
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b"+/=\r\n\t :,-".contains(&b))
        .count();
    from + len
}

fn find_entropy_tokens(text: &str, out: &mut Vec<Candidate>) {
    for m in TOKEN.find_iter(text) {
        if looks_random(m.as_str().trim_end_matches('=')) {
            out.push(Candidate::new(
                PiiKind::Secret,
                Rank::EntropySecret,
                m.range(),
            ));
        }
    }
}

/// The high-entropy rule calibrated in the module documentation.
fn looks_random(token: &str) -> bool {
    let bytes = token.as_bytes();
    let has = |f: fn(&u8) -> bool| bytes.iter().any(f);
    if !(has(u8::is_ascii_digit) && has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase)) {
        return false;
    }
    if bytes.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-') {
        return false;
    }
    let class = |b: u8| match b {
        b'a'..=b'z' => 0,
        b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    let runs = 1 + bytes
        .windows(2)
        .filter(|w| class(w[0]) != class(w[1]))
        .count();
    if (runs as f64) < 0.4 * bytes.len() as f64 {
        return false;
    }
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    let vowels = bytes.iter().filter(|b| b"aeiouAEIOU".contains(b)).count();
    if vowels as f64 >= 0.4 * letters as f64 {
        return false;
    }
    shannon_entropy(bytes) >= entropy_threshold(bytes.len())
}

/// Bits per character a token of `len` characters needs to count as random.
fn entropy_threshold(len: usize) -> f64 {
    let capped = len.clamp(32, 64) as f64;
    4.1 + 0.7 * (capped - 32.0) / 32.0
}

/// Shannon entropy of the byte distribution, in bits per byte.
fn shannon_entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / total;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        crate::pii::detect(text, &[PiiKind::Secret])
            .into_iter()
            .map(|f| &text[f.range])
            .collect()
    }

    const JWT_SAMPLE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn finds_prefixed_keys() {
        for key in [
            "sk-proj-4f9Xk2LmQ8rT1vWz7YbN3cD5eF6gH0jK",
            "sk-ant-api03-AbC123dEf456GhI789jKl012MnO345pQr",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_1234567890abcdefghijABCDEFGHIJ123456",
            "gho_1234567890abcdefghijABCDEFGHIJ123456",
            "github_pat_11ABCDEFG0123456789_abcdefghijKLMNOP",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "xoxp-1234-5678-abcdef",
        ] {
            let text = format!("key: {key}\n");
            assert_eq!(found(&text), vec![key], "{key}");
        }
    }

    #[test]
    fn finds_jwts() {
        let text = format!("Authorization: Bearer {JWT_SAMPLE}.");
        let findings = found(&text);
        assert!(findings.contains(&JWT_SAMPLE), "{findings:?}");
    }

    #[test]
    fn jwt_header_must_carry_alg() {
        // {"typ":"JWT"} has no alg.
        let text = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0In0.c2ln";
        assert!(found(text).is_empty());
        assert!(header_has_alg("eyJhbGciOiJub25lIn0"));
        assert!(!header_has_alg("eyJub3QganNvbg"));
    }

    #[test]
    fn finds_pem_private_keys() {
        let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234abcd\nQWERTYuiop==\n-----END RSA PRIVATE KEY-----";
        let text = format!("here:\n{block}\nthanks");
        assert_eq!(found(&text), vec![block]);
        let truncated = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nAAAA";
        assert_eq!(found(&format!("{truncated}!")), vec![truncated]);
    }

    #[test]
    fn leaves_public_pem_blocks() {
        let text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert!(found(text).is_empty());
        let text = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----";
        assert!(found(text).is_empty());
    }

    #[test]
    fn finds_random_tokens() {
        for token in [
            "Zq8xK2mN4vB7cR1tY6wP3sL9hJ5gF0dA",
            "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9f",
            "q9W8e7R6t5Y4u3I2o1PaSdFgHjKlZxCvBnM0987654321QwErTyUiOp",
        ] {
            let text = format!("token={token}&x=1");
            assert_eq!(found(&text), vec![token], "{token}");
        }
    }

    #[test]
    fn leaves_identifiers_paths_and_hex() {
        for text in [
            "550e8400-e29b-41d4-a716-446655440000",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "AbstractSingletonProxyFactoryBean2Impl",
            "ThisIsAVeryLongCamelCaseIdentifierName2",
            "MyProjectName_Release_Candidate_v2_Build_2024",
            "/home/alice/projects/shopfloor/crates/core/src/pii",
            "INV-2024-000123-ACME-CORP-INTERNATIONAL-LTD",
            "this_is_a_very_long_variable_name_for_testing",
            "sk-learn",
            "sk-the-long-hyphenated-name-of-something",
            "task-AKIAIOSFODNN7EXAMPLEX",
            "1Z999AA10123456784",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn entropy_threshold_grows_with_length() {
        assert!((entropy_threshold(10) - 4.1).abs() < 1e-9);
        assert!((entropy_threshold(32) - 4.1).abs() < 1e-9);
        assert!((entropy_threshold(64) - 4.8).abs() < 1e-9);
        assert!((entropy_threshold(1000) - 4.8).abs() < 1e-9);
        assert!(shannon_entropy(b"aaaa").abs() < 1e-9);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
