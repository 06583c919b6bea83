//! Test support for this crate and the crates above it (feature `testing`): a PostgreSQL
//! database of a test's own, created at its start and dropped at its end.
//!
//! ```ignore
//! let db = shopfloor_store::testing::TestPostgres::create().await;
//! let store = shopfloor_store::open(db.url()).await?;
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

use crate::location::redact_location;

/// The environment variable that points tests at a PostgreSQL server (any database on it).
pub const POSTGRES_URL_ENV: &str = "SHOPFLOOR_TEST_POSTGRES_URL";
/// The server tests use when [`POSTGRES_URL_ENV`] is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database with a random name on the test server, dropped (with its connections) on drop.
#[derive(Debug)]
pub struct TestPostgres {
    server_url: String,
    name: String,
    url: String,
}

impl TestPostgres {
    /// Create a fresh, empty database.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses: a test that needs PostgreSQL fails,
    /// saying so, rather than passing without it.
    pub async fn create() -> Self {
        let server_url =
            std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("shopfloor_test_{:016x}", random_u64());
        let mut conn = admin_connection(&server_url)
            .await
            .unwrap_or_else(|message| {
                panic!(
                "this test needs PostgreSQL, which cannot be reached at {}: {message}. Start it \
                 (trust auth on 127.0.0.1:5432) or point {POSTGRES_URL_ENV} at a server where \
                 the user may create databases.",
                redact_location(&server_url)
            )
            });
        if let Err(e) = conn
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
        {
            panic!(
                "cannot create the test database {name} at {}: {e}; the user in \
                 {POSTGRES_URL_ENV} needs the CREATEDB privilege",
                redact_location(&server_url)
            );
        }
        let _ = conn.close().await;
        let url = with_database(&server_url, &name);
        Self {
            server_url,
            name,
            url,
        }
    }

    /// The URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The test database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // Drop runs inside the test's async runtime, which cannot be blocked on; a thread with a
        // runtime of its own can, and joining it means the database is gone when drop returns.
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = admin_connection(&server_url).await?;
                // FORCE ends the connections the store's pool still holds.
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

async fn admin_connection(server_url: &str) -> Result<PgConnection, String> {
    let options: sqlx::postgres::PgConnectOptions =
        server_url.parse().map_err(|e: sqlx::Error| e.to_string())?;
    // Test databases are created and dropped by the hundred; logging each statement is noise.
    options
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// `url` with its database (path) replaced by `name`, keeping user, host and query.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{authority}/{name}{query}")
}

/// Enough randomness for database names that never collide between parallel tests.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
    }
}
