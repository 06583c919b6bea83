//! Secrets: API keys by prefix (shopfloor's own `sf_` keys among them), JWTs, PEM private keys and unprefixed high-entropy tokens.
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

use std::ops::Range;

use super::boundary;
use super::{Candidate, PiiKind, Rank};

/// The shortest run of token characters anything here can start: a JWT's `ey` and eight more
/// before its first dot.
const MIN_RUN: usize = 10;
/// The shortest unprefixed token the entropy rule looks at.
const MIN_ENTROPY_TOKEN: usize = 32;

const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_END: &str = "-----END ";
const PEM_DASHES: &str = "-----";
/// The longest label looked at, e.g. `ENCRYPTED PRIVATE KEY` or `OPENSSH PRIVATE KEY`.
const PEM_MAX_LABEL: usize = 64;
// BEGIN lines are found as runs of token characters (`-----BEGIN`), so they must be long enough.
const _: () = assert!(PEM_BEGIN.trim_ascii_end().len() >= MIN_RUN);

/// Push every secret in `text`.
pub(super) fn find(text: &str, out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    // `-----BEGIN` is itself a run of token characters, as long as the shortest looked at.
    let pem_begin = PEM_BEGIN.trim_end().as_bytes();
    let mut pem_begins = Vec::new();
    each_long_run(bytes, |run| {
        if bytes[..run.end].ends_with(pem_begin) && bytes.get(run.end) == Some(&b' ') {
            pem_begins.push(run.end - pem_begin.len());
        }
        find_in_run(text, run.clone(), out);
        if run.len() >= MIN_ENTROPY_TOKEN {
            entropy_token(text, run, out);
        }
    });
    find_pem_keys(text, &pem_begins, out);
}

/// `[A-Za-z0-9+/_-]`: what API keys, base64 and base64url are written in.
fn is_token(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & TOKEN != 0
}

/// `[A-Za-z0-9_-]`: base64url, as in JWT segments and most key bodies.
fn is_url_safe(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & URL_SAFE != 0
}

const TOKEN: u8 = 1;
const URL_SAFE: u8 = 2;

/// One lookup per byte on the scan's hot path instead of a chain of range comparisons.
static CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            classes[b] = TOKEN | URL_SAFE;
        } else if byte == b'+' || byte == b'/' {
            classes[b] = TOKEN;
        }
        b += 1;
    }
    classes
};

/// Call `f` with every maximal run of token characters at least [`MIN_RUN`] long. Instead of
/// reading every byte, it probes the last byte a long enough run starting at the cursor would
/// cover: when that is not a token character, no such run starts before it, and prose, whose
/// words are shorter than [`MIN_RUN`], is mostly skipped that way.
fn each_long_run(bytes: &[u8], mut f: impl FnMut(Range<usize>)) {
    // Invariant: `cursor` is 0 or follows a byte that is not a token character.
    let mut cursor = 0;
    while cursor + MIN_RUN <= bytes.len() {
        let probe = cursor + MIN_RUN - 1;
        if !is_token(bytes[probe]) {
            cursor = probe + 1;
            continue;
        }
        let start = probe
            - bytes[cursor..probe]
                .iter()
                .rev()
                .take_while(|&&b| is_token(b))
                .count();
        let end = probe
            + 1
            + bytes[probe + 1..]
                .iter()
                .take_while(|&&b| is_token(b))
                .count();
        if end - start >= MIN_RUN {
            f(start..end);
        }
        cursor = end + 1;
    }
}

/// Prefixed keys and JWTs in a run: they start where a word does, at the run's start or after
/// one of its `+`, `/` and `-`. Like a left-to-right search, a key's shape uses up the bytes it
/// covers even when the key is rejected, and a JWT is tried once per base64url segment, from its
/// first `ey` word; so no byte is read more than a few times however the run is built.
fn find_in_run(text: &str, run: Range<usize>, out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    let mut keys_from = run.start;
    let mut jwts_from = run.start;
    for start in run.clone() {
        let word_start = start == run.start || matches!(bytes[start - 1], b'+' | b'/' | b'-');
        if !word_start || !bytes[start].is_ascii_alphabetic() {
            continue;
        }
        if start >= keys_from {
            if let Some((range, accepted)) = prefixed_key(text, start) {
                keys_from = range.end;
                if accepted {
                    push(out, range);
                }
                continue;
            }
        }
        if start >= jwts_from && bytes[start..].starts_with(b"ey") {
            let header_end = start + run_len(bytes, start, usize::MAX, is_url_safe);
            jwts_from = header_end;
            if let Some(range) = jwt(text, start, header_end) {
                jwts_from = range.end;
                keys_from = keys_from.max(range.end);
                push(out, range);
            }
        }
    }
}

fn push(out: &mut Vec<Candidate>, range: Range<usize>) {
    out.push(Candidate::new(PiiKind::Secret, Rank::PrefixedSecret, range));
}

/// The length of the run of bytes from `from` on that `class` takes, counting at most `max`.
fn run_len(bytes: &[u8], from: usize, max: usize, class: fn(u8) -> bool) -> usize {
    bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take(max)
        .take_while(|&&b| class(b))
        .count()
}

/// An API key by prefix at `start` (a word start): shopfloor's `sf_`, `sk-`/`sk-ant-`, `AKIA`/`ASIA`,
/// `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`, `github_pat_`, `xoxb-`/`xoxp-`/`xoxa-`/`xoxr-`/`xoxs-`,
/// each with a body long enough to be a key: its range, and whether it is taken. Free-text slugs
/// like `sk-the-long-hyphenated-name` are not: a key has digits and letters, and is not glued to
/// a word after it.
fn prefixed_key(text: &str, start: usize) -> Option<(Range<usize>, bool)> {
    let bytes = text.as_bytes();
    let rest = &bytes[start..];
    let alphanumeric = |b: u8| b.is_ascii_alphanumeric();
    let word = |b: u8| boundary::is_word(b);
    let upper_or_digit = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let alphanumeric_or_dash = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let one_of = |at: usize, set: &[u8]| rest.get(at).is_some_and(|b| set.contains(b));
    let hex = |b: u8| b.is_ascii_hexdigit();
    let (prefix, body, min) = if rest.starts_with(b"sf_") {
        // shopfloor's own keys: `sf_` and 64 hex digits; a shortened one is still a key.
        (3, run_len(bytes, start + 3, usize::MAX, hex), 32)
    } else if rest.starts_with(b"sk-") {
        (3, run_len(bytes, start + 3, usize::MAX, is_url_safe), 20)
    } else if rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") {
        (4, run_len(bytes, start + 4, 16, upper_or_digit), 16)
    } else if rest.starts_with(b"github_pat_") {
        (11, run_len(bytes, start + 11, usize::MAX, word), 22)
    } else if rest.starts_with(b"gh") && one_of(2, b"pousr") && one_of(3, b"_") {
        (4, run_len(bytes, start + 4, usize::MAX, alphanumeric), 36)
    } else if rest.starts_with(b"xox") && one_of(3, b"abprs") && one_of(4, b"-") {
        (
            5,
            run_len(bytes, start + 5, usize::MAX, alphanumeric_or_dash),
            10,
        )
    } else {
        return None;
    };
    if body < min {
        return None;
    }
    let end = start + prefix + body;
    let key = &bytes[start..end];
    let mixed = key.iter().any(u8::is_ascii_digit) && key.iter().any(u8::is_ascii_alphabetic);
    Some((start..end, mixed && boundary::word_end(text, end)))
}

/// A JWT at `start` whose header, a base64url run, ends at `header_end`: `ey…` header, `.ey…`
/// payload (a JSON object each, which base64 encodes as `ey`) and a signature that is empty for
/// `"alg": "none"`; the header must decode to a JSON object with `"alg"`.
fn jwt(text: &str, start: usize, header_end: usize) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    if boundary::before(text, start) == Some(b'.') || header_end - start < 10 {
        return None;
    }
    let payload = header_end + 1;
    if bytes.get(header_end) != Some(&b'.') || !bytes[payload..].starts_with(b"ey") {
        return None;
    }
    let payload_end = payload + run_len(bytes, payload, usize::MAX, is_url_safe);
    if payload_end - payload < 6 || bytes.get(payload_end) != Some(&b'.') {
        return None;
    }
    let end = payload_end + 1 + run_len(bytes, payload_end + 1, usize::MAX, is_url_safe);
    header_has_alg(&text[start..header_end]).then_some(start..end)
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

/// PEM private-key blocks at the `-----BEGIN ` lines the run scan found (`begins`). Ends are
/// found with one forward-only cursor, so that many BEGIN lines without an END cannot make the
/// scan quadratic.
fn find_pem_keys(text: &str, begins: &[usize], out: &mut Vec<Candidate>) {
    let mut from = 0;
    let mut next_end: Option<usize> = None;
    // Once a search finds no END line, none exists further on either.
    let mut ends_exhausted = false;
    for &begin in begins {
        if begin < from {
            continue;
        }
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

/// A run of token characters, with up to two `=` of padding, that looks random.
fn entropy_token(text: &str, run: Range<usize>, out: &mut Vec<Candidate>) {
    if looks_random(&text[run.clone()]) {
        let padding = run_len(text.as_bytes(), run.end, 2, |b| b == b'=');
        out.push(Candidate::new(
            PiiKind::Secret,
            Rank::EntropySecret,
            run.start..run.end + padding,
        ));
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
            "sf_4f1c0b9e2d3a4b5c6d7e8f90123456789abcdef0123456789abcdef012345678",
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
        // Inside the `Bearer` credential it is written as, which ends before the full stop.
        assert_eq!(findings, [format!("Bearer {JWT_SAMPLE}")], "{findings:?}");
        assert!(found(&format!("id {JWT_SAMPLE} here")).contains(&JWT_SAMPLE));
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
            // `id=`, not `token=`: a value named as a credential is taken with its name.
            let text = format!("id={token}&x=1");
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
