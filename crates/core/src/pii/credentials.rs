//! Credentials written next to their name: `password=hunter2`, `passwd: x`, `api_key = "…"`,
//! `DB_TOKEN=…`, `"client_secret": "…"`, and URLs carrying a password
//! (`postgres://user:pw@host/db`, `redis://:pw@host`), and the tokens of an `Authorization`
//! header (`Bearer eyJ…`, `Basic dXNlcjpwdw==`) wherever they are written.
//!
//! Such a value can be anything, `hunter2` included, so it is recognised by what precedes it,
//! and the finding covers the name with the value (`db_password=hunter2`) or the URL through its
//! host (`postgres://user:pw@db:5432`): on its own, each is still a credential, which keeps findings
//! self-describing as the rounds in [`super::rounds`] require. Values stop at a bracket, so that
//! a placeholder after a name (`password=[SECRET_1]`) is never taken again and redacting twice
//! changes nothing. Neither rule crosses a line break.

use std::ops::Range;

use super::{Candidate, PiiKind, Rank};

/// Names whose value is a credential, lower case; an identifier ending in one of them
/// (`DB_PASSWORD`, `x-api-key`, `github_token`) names one too.
const NAMES: [&str; 10] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
];

/// The longest identifier looked back over from a `=` or `:`.
const MAX_NAME: usize = 64;
/// The longest URL scheme looked back over from `://`.
const MAX_SCHEME: usize = 32;

/// Push every named credential and every URL with a password in `text`.
pub(super) fn find(text: &str, out: &mut Vec<Candidate>) {
    let bytes = text.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        let range = match byte {
            b'=' => assignment(bytes, at),
            b':' if bytes[at + 1..].starts_with(b"//") => url_with_password(bytes, at),
            b':' => assignment(bytes, at),
            b'B' | b'b' => authorization(bytes, at),
            _ => None,
        };
        if let Some(range) = range {
            out.push(Candidate::new(PiiKind::Secret, Rank::PrefixedSecret, range));
        }
    }
}

/// Letters, digits and `_ - .`: what names a setting.
fn is_name(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

/// What ends an unquoted value: blanks, quotes, brackets and the separators of query strings,
/// lists and markup.
fn ends_value(byte: u8) -> bool {
    byte.is_ascii_whitespace()
        || byte.is_ascii_control()
        || matches!(
            byte,
            b'"' | b'\''
                | b'`'
                | b','
                | b';'
                | b'&'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'<'
                | b'>'
        )
}

/// Whether `name` (a setting, a header, a JSON key) names a credential: it ends in one of
/// [`NAMES`] that is not the tail of a longer word (`db_password`, `apiKey`, `X-Api-Key`; not
/// `bypassword`).
pub fn is_credential_name(name: &str) -> bool {
    credential_keyword(name.as_bytes()).is_some()
}

/// The keyword of [`NAMES`] that `name` ends in, if it names a credential.
fn credential_keyword(name: &[u8]) -> Option<&'static str> {
    let keyword = NAMES.iter().find(|n| {
        name.len() >= n.len() && name[name.len() - n.len()..].eq_ignore_ascii_case(n.as_bytes())
    })?;
    let keyword_start = name.len() - keyword.len();
    if keyword_start > 0 && name[keyword_start - 1].is_ascii_alphabetic() {
        // `bypassword` is not a password; `db_password`, `DB.PASSWORD` and `apiKey` are.
        let camel = name[keyword_start].is_ascii_uppercase()
            && name[keyword_start - 1].is_ascii_lowercase();
        if !camel {
            return None;
        }
    }
    Some(keyword)
}

/// `NAME = value` or `NAME: value` with the separator at `sep`: the name (with an optional
/// closing quote and blanks before the separator), the separator, blanks, an optional opening
/// quote and a value of at least one byte.
fn assignment(bytes: &[u8], sep: usize) -> Option<Range<usize>> {
    let mut name_end = sep;
    while name_end > 0 && sep - name_end < 4 && matches!(bytes[name_end - 1], b' ' | b'\t') {
        name_end -= 1;
    }
    if name_end > 0 && matches!(bytes[name_end - 1], b'"' | b'\'') {
        name_end -= 1;
    }
    let mut start = name_end;
    while start > 0 && name_end - start < MAX_NAME && is_name(bytes[start - 1]) {
        start -= 1;
    }
    credential_keyword(&bytes[start..name_end])?;
    let mut value = sep + 1;
    while value < bytes.len() && value - sep <= 4 && matches!(bytes[value], b' ' | b'\t') {
        value += 1;
    }
    let quote = bytes
        .get(value)
        .copied()
        .filter(|b| matches!(b, b'"' | b'\''));
    if quote.is_some() {
        value += 1;
    }
    let len = bytes[value..]
        .iter()
        .take_while(|&&b| match quote {
            // A quoted value may hold blanks, not a line break or a bracket.
            Some(q) => b != q && b != b'\n' && b != b'\r' && b != b'[' && b != b']',
            None => !ends_value(b),
        })
        .count();
    (len > 0).then_some(start..value + len)
}

/// `Bearer TOKEN` or `Basic TOKEN` starting at `at`: the scheme, blanks, and a token of at
/// least 8 characters of RFC 6750's `b64token` holding a digit or a symbol, or 12 in mixed
/// case (so that "basic understanding" stays prose). The finding covers the scheme with the token.
fn authorization(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    if at > 0 && is_name(bytes[at - 1]) {
        return None;
    }
    let rest = &bytes[at..];
    let scheme = ["bearer", "basic"]
        .iter()
        .find(|s| rest.len() > s.len() && rest[..s.len()].eq_ignore_ascii_case(s.as_bytes()))?;
    let mut value = at + scheme.len();
    let blanks = bytes[value..]
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t'))
        .count();
    if blanks == 0 || blanks > 4 {
        return None;
    }
    value += blanks;
    let token = &bytes[value..];
    let len = token
        .iter()
        .take_while(|&&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        })
        .count();
    // A full stop after the token ends the sentence, not the token.
    let len = len
        - token[..len]
            .iter()
            .rev()
            .take_while(|&&b| b == b'.')
            .count();
    let token = &token[..len];
    let marked = token.iter().any(|b| !b.is_ascii_alphabetic())
        || (len >= 12
            && token.iter().any(u8::is_ascii_uppercase)
            && token.iter().any(u8::is_ascii_lowercase));
    (len >= 8 && marked).then_some(at..value + len)
}

/// `scheme://user:password@host` with `://` at `colon`: the scheme, the user (possibly empty),
/// a `:`, a password of at least one byte, the `@` and the host with its port. The host is
/// taken too so that a user and host that read as an email (`pw@db.example.com`) stay inside
/// this finding, which then names the merged one.
fn url_with_password(bytes: &[u8], colon: usize) -> Option<Range<usize>> {
    let mut start = colon;
    while start > 0
        && colon - start < MAX_SCHEME
        && (bytes[start - 1].is_ascii_alphanumeric()
            || matches!(bytes[start - 1], b'+' | b'.' | b'-'))
    {
        start -= 1;
    }
    // A scheme starts with a letter.
    start += bytes[start..colon]
        .iter()
        .take_while(|b| !b.is_ascii_alphabetic())
        .count();
    if start == colon {
        return None;
    }
    let userinfo = colon + 3;
    let at = userinfo + authority_part(&bytes[userinfo..]);
    if bytes.get(at) != Some(&b'@') {
        return None;
    }
    let password = bytes[userinfo..at].iter().position(|&b| b == b':')? + userinfo + 1;
    if password == at {
        return None;
    }
    Some(start..at + 1 + authority_part(&bytes[at + 1..]))
}

/// The length of the userinfo or the host at the start of `bytes`: up to `@`, a path, a query,
/// a fragment or the end of the value.
fn authority_part(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|&&b| !ends_value(b) && !matches!(b, b'@' | b'/' | b'?' | b'#'))
        .count()
}

#[cfg(test)]
mod tests {
    use crate::pii::{detect, redact, PiiKind, Redactions};

    fn found(text: &str) -> Vec<&str> {
        detect(text, &[PiiKind::Secret])
            .into_iter()
            .map(|f| &text[f.range])
            .collect()
    }

    #[test]
    fn finds_values_after_credential_names() {
        for (text, secret) in [
            ("login with password=hunter2 please", "password=hunter2"),
            ("passwd: hunter2", "passwd: hunter2"),
            ("api_key=abc123&x=1", "api_key=abc123"),
            ("token=xyz", "token=xyz"),
            (
                "export DB_PASSWORD='s3cret pass'",
                "DB_PASSWORD='s3cret pass",
            ),
            (r#"{"client_secret": "abc"}"#, r#"client_secret": "abc"#),
            ("X-Api-Key: k-9", "X-Api-Key: k-9"),
        ] {
            assert_eq!(found(text), vec![secret], "{text}");
        }
    }

    #[test]
    fn finds_urls_with_a_password() {
        for (text, secret) in [
            ("dsn postgres://u:pw@h/db here", "postgres://u:pw@h"),
            ("redis://:hunter2@cache:6379", "redis://:hunter2@cache:6379"),
            (
                "mongodb+srv://admin:p4ss@cluster0.example.net/x",
                "mongodb+srv://admin:p4ss@cluster0.example.net",
            ),
        ] {
            assert_eq!(found(text), vec![secret], "{text}");
        }
    }

    #[test]
    fn names_credentials_by_their_last_word() {
        for name in [
            "password",
            "db_password",
            "apiKey",
            "X-Api-Key",
            "client_secret",
            "TOKEN",
        ] {
            assert!(super::is_credential_name(name), "{name}");
        }
        for name in ["bypassword", "max_tokens", "name", "tokenizer", "secretary"] {
            assert!(!super::is_credential_name(name), "{name}");
        }
    }

    #[test]
    fn finds_the_tokens_of_authorization_headers() {
        for (text, secret) in [
            (
                "curl -H 'Authorization: Bearer sk-live-4f9a2b7c' https://x",
                "Bearer sk-live-4f9a2b7c",
            ),
            ("authorization: bearer abc.def.ghi1", "bearer abc.def.ghi1"),
            ("Basic dXNlcjpwYXNz", "Basic dXNlcjpwYXNz"),
        ] {
            assert_eq!(found(text), vec![secret], "{text}");
        }
        for text in [
            "a basic understanding of it",
            "the bearer of bad news",
            "Bearer [SECRET_1]",
            "Bearer ab1",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn leaves_names_without_values_and_urls_without_passwords() {
        for text in [
            "reset your password: ",
            "the password is long",
            "bypassword=1",
            "max_tokens=5",
            "https://example.com/a?b=c",
            "postgres://u@h/db",
            "https://user@example.com",
            "see http://h:8080/x",
            "password=[SECRET_1]",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        let text = "password=hunter2 and postgres://u:pw@db.internal/app";
        let once = redact(text, &[PiiKind::Secret], &mut Redactions::new());
        assert_eq!(once, "[SECRET_1] and [SECRET_2]/app");
        let twice = redact(&once, &[PiiKind::Secret], &mut Redactions::new());
        assert_eq!(twice, once);
    }
}
