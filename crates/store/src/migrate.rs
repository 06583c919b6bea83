//! Schema migrations: an ordered list of SQL texts embedded in the binary, applied at open and
//! recorded in `schema_migrations`, so opening a database twice changes nothing.
//!
//! To change the schema, add a file under `migrations/` and append it to [`MIGRATIONS`] with the
//! next version; never edit one that has shipped. Every migration so far is one text that both
//! databases accept; the first one whose dialects must differ gives [`Migration`] a text per
//! backend.

use std::time::{SystemTime, UNIX_EPOCH};

// `Executor::execute` rather than `RawSql::execute`: the latter, an `async fn` generic over its
// executor, makes the caller's future fail rustc's `Send` check, and servers spawn `open()`.
use sqlx::{Executor, PgConnection, Postgres, Sqlite, SqliteConnection};

use crate::{Result, StoreError};

/// One schema change.
#[derive(Debug)]
struct Migration {
    version: i64,
    name: &'static str,
    /// The SQL, for both databases.
    sql: &'static str,
}

impl Migration {
    const fn new(version: i64, name: &'static str, sql: &'static str) -> Self {
        Self { version, name, sql }
    }
}

/// Every migration, oldest first; versions are consecutive from 1.
const MIGRATIONS: &[Migration] = &[
    Migration::new(
        1,
        "runs_attempts_batches",
        include_str!("../migrations/0001_runs.sql"),
    ),
    Migration::new(
        2,
        "evals_cases_baselines",
        include_str!("../migrations/0002_evals.sql"),
    ),
    Migration::new(
        3,
        "keys_callers_audit_batch_queue",
        include_str!("../migrations/0003_access.sql"),
    ),
    Migration::new(
        4,
        "batch_caller",
        include_str!("../migrations/0004_batch_caller.sql"),
    ),
    Migration::new(
        5,
        "audit_lookup_index",
        include_str!("../migrations/0005_audit_lookup.sql"),
    ),
    Migration::new(
        6,
        "reviews_error_kinds_confidence",
        include_str!("../migrations/0006_reviews.sql"),
    ),
    Migration::new(
        7,
        "webhook_outbox",
        include_str!("../migrations/0007_outbox.sql"),
    ),
    Migration::new(
        8,
        "kpi_values",
        include_str!("../migrations/0008_outcomes.sql"),
    ),
    Migration::new(
        9,
        "batch_runner",
        include_str!("../migrations/0009_batch_runner.sql"),
    ),
    Migration::new(
        10,
        "dashboard_sessions",
        include_str!("../migrations/0010_dashboard.sql"),
    ),
    Migration::new(
        11,
        "idempotency_keys",
        include_str!("../migrations/0011_idempotency.sql"),
    ),
    Migration::new(
        12,
        "key_limits_and_usage",
        include_str!("../migrations/0012_key_limits.sql"),
    ),
    Migration::new(
        13,
        "run_origin",
        include_str!("../migrations/0013_run_origin.sql"),
    ),
    Migration::new(
        14,
        "experiments",
        include_str!("../migrations/0014_experiments.sql"),
    ),
    Migration::new(
        15,
        "eval_case_limit",
        include_str!("../migrations/0015_eval_case_limit.sql"),
    ),
    Migration::new(
        16,
        "rollups",
        include_str!("../migrations/0016_rollups.sql"),
    ),
    Migration::new(
        17,
        "runs_by_status",
        include_str!("../migrations/0017_runs_by_status.sql"),
    ),
    Migration::new(
        18,
        "retention_marks",
        include_str!("../migrations/0018_retention.sql"),
    ),
    Migration::new(
        19,
        "review_rollups",
        include_str!("../migrations/0019_review_rollups.sql"),
    ),
];

/// The table that records which migrations are applied.
const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version        BIGINT PRIMARY KEY,
    name           TEXT NOT NULL,
    applied_at_ms  BIGINT NOT NULL
)";

/// Serialises migrations across replicas opening one PostgreSQL database at once.
const POSTGRES_LOCK_KEY: i64 = 0x5e0f_100a_0001;

/// The newest schema version this build knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The migrations not yet in `applied`. Refuses a database that a newer build migrated, since
/// this build would misread its tables.
fn pending(applied: &[i64]) -> Result<Vec<&'static Migration>> {
    let latest = latest_version();
    if let Some(&newer) = applied.iter().find(|&&v| v > latest) {
        return Err(StoreError::Migration {
            version: newer,
            message: format!(
                "the database has schema version {newer}, but this build of shopfloor knows only \
                 up to {latest}; upgrade shopfloor to use this database"
            ),
        });
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn failed(version: i64, error: sqlx::Error) -> StoreError {
    StoreError::Migration {
        version,
        message: error.to_string(),
    }
}

/// A failure outside any one migration: locking, reading or committing the bookkeeping.
fn bookkeeping(error: sqlx::Error) -> StoreError {
    StoreError::Migration {
        version: 0,
        message: format!("while reading or committing schema_migrations: {error}"),
    }
}

/// Apply the migrations `tx` (a transaction on `$db`) has not applied yet, and record them.
/// A macro because generic sqlx code over both databases makes `open()`'s future fail the
/// `Send` check servers need (see `queries.rs`).
macro_rules! apply_pending {
    ($tx:ident, $db:ty) => {{
        $tx.execute(sqlx::raw_sql(CREATE_SCHEMA_MIGRATIONS))
            .await
            .map_err(bookkeeping)?;
        let applied: Vec<i64> =
            sqlx::query_scalar::<$db, i64>("SELECT version FROM schema_migrations")
                .fetch_all(&mut *$tx)
                .await
                .map_err(bookkeeping)?;
        for migration in pending(&applied)? {
            let version = migration.version;
            $tx.execute(sqlx::raw_sql(migration.sql))
                .await
                .map_err(|e| failed(version, e))?;
            sqlx::query::<$db>(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(migration.name)
            .bind(now_ms())
            .execute(&mut *$tx)
            .await
            .map_err(|e| failed(version, e))?;
        }
        $tx.commit().await.map_err(bookkeeping)
    }};
}

/// Apply pending migrations to a SQLite database, all in one write transaction.
pub(crate) async fn apply_sqlite(conn: &mut SqliteConnection) -> Result<()> {
    use sqlx::Connection;
    // IMMEDIATE takes the write lock up front, so two processes opening a new file do not
    // both decide to migrate it.
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(bookkeeping)?;
    apply_pending!(tx, Sqlite)
}

/// Apply pending migrations to a PostgreSQL database, all in one transaction.
pub(crate) async fn apply_postgres(conn: &mut PgConnection) -> Result<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await.map_err(bookkeeping)?;
    // Replicas starting together wait here for the first one's migrations instead of racing it.
    sqlx::query::<Postgres>("SELECT pg_advisory_xact_lock($1)")
        .bind(POSTGRES_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(bookkeeping)?;
    apply_pending!(tx, Postgres)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
        }
    }

    #[test]
    fn pending_skips_applied_and_refuses_newer() {
        assert_eq!(pending(&[]).unwrap().len(), MIGRATIONS.len());
        assert!(pending(&[1]).unwrap().iter().all(|m| m.version != 1));
        let err = pending(&[latest_version() + 1]).unwrap_err().to_string();
        assert!(err.contains("upgrade shopfloor"), "{err}");
    }
}
