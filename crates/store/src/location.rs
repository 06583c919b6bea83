//! Where a store lives: parsing the location a user gave, and showing it without secrets.

use std::path::PathBuf;

use crate::{Result, StoreError};

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A `postgres://` or `postgresql://` URL, as given.
    Postgres(String),
    /// A SQLite database file.
    SqliteFile(PathBuf),
    /// A SQLite database that lives as long as the store (tests, throwaway runs).
    SqliteMemory,
}

/// Tell the backends apart by the location's form.
pub(crate) fn parse(location: &str) -> Result<Location> {
    let trimmed = location.trim();
    if trimmed.is_empty() {
        return Err(StoreError::Open {
            location: String::new(),
            message: "no database location given; pass a file path (SQLite) or a postgres:// URL"
                .into(),
        });
    }
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return Ok(Location::Postgres(trimmed.to_owned()));
    }
    if matches!(trimmed, "sqlite::memory:" | ":memory:") {
        return Ok(Location::SqliteMemory);
    }
    if let Some(path) = trimmed
        .strip_prefix("sqlite://")
        .or_else(|| trimmed.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(StoreError::Open {
                location: trimmed.to_owned(),
                message: "the sqlite:// URL names no file; write sqlite://PATH, e.g. sqlite://.shopfloor/shopfloor.db".into(),
            });
        }
        return Ok(Location::SqliteFile(PathBuf::from(path)));
    }
    if let Some(scheme) = url_scheme(trimmed) {
        return Err(StoreError::Open {
            location: redact_location(trimmed),
            message: format!(
                "the URL scheme `{scheme}` is not supported; use postgres://…, sqlite://PATH or a file path"
            ),
        });
    }
    Ok(Location::SqliteFile(PathBuf::from(trimmed)))
}

/// The scheme of `text` if it looks like a URL (`scheme://…`); file paths have none.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// A location fit to print or log: a password in the URL (user info or `password=` query
/// parameter) is replaced by `***`.
pub fn redact_location(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_are_postgres() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db?sslmode=disable",
        ] {
            assert_eq!(parse(url).unwrap(), Location::Postgres(url.into()));
        }
    }

    #[test]
    fn sqlite_urls_and_paths_are_files() {
        assert_eq!(
            parse("sqlite://.shopfloor/a.db").unwrap(),
            Location::SqliteFile(".shopfloor/a.db".into())
        );
        assert_eq!(
            parse("sqlite:///tmp/a.db").unwrap(),
            Location::SqliteFile("/tmp/a.db".into())
        );
        assert_eq!(
            parse("sqlite:a.db").unwrap(),
            Location::SqliteFile("a.db".into())
        );
        assert_eq!(
            parse("data/runs.db").unwrap(),
            Location::SqliteFile("data/runs.db".into())
        );
        assert_eq!(parse("sqlite::memory:").unwrap(), Location::SqliteMemory);
    }

    #[test]
    fn unknown_schemes_and_empty_locations_are_rejected() {
        let err = parse("mysql://root:hunter2@db/x").unwrap_err().to_string();
        assert!(err.contains("`mysql` is not supported"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse("  ").is_err());
        assert!(parse("sqlite://").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_location(
                "postgres://app:s3cret@db.internal:5432/shop?sslmode=require&password=x"
            ),
            "postgres://app:***@db.internal:5432/shop?sslmode=require&password=***"
        );
        assert_eq!(
            redact_location("postgres://app@db/shop"),
            "postgres://app@db/shop"
        );
        assert_eq!(redact_location("postgres://a:b@c"), "postgres://a:***@c");
        assert_eq!(redact_location("/var/lib/shop.db"), "/var/lib/shop.db");
    }
}
