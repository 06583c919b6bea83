//! Where runs are kept: one [`Store`] trait, a SQLite and a PostgreSQL implementation.
//!
//! Nothing outside this crate writes SQL. Records are plain data; the engine builds them.

mod codec;
mod location;
mod migrate;
mod postgres;
mod record;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;

pub use location::redact_location;
pub use postgres::PostgresStore;
pub use record::{
    AttemptOutcome, AttemptRecord, BatchRecord, BatchStatus, RunFilter, RunRecord, RunStatus,
    RunSummary,
};
pub use sqlite::SqliteStore;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot open the database at {location}: {message}")]
    Open { location: String, message: String },
    /// A migration failed.
    #[error("database migration {version} failed: {message}")]
    Migration { version: i64, message: String },
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored value could not be read back (corrupt row, unknown enum text).
    #[error("corrupt stored value in {table}.{column}: {message}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        message: String,
    },
    /// A value cannot be stored: it does not fit the database's signed 64-bit integers.
    #[error("cannot store {field} = {value}: it is larger than {max}, the largest the database keeps", max = i64::MAX)]
    OutOfRange { field: &'static str, value: u64 },
    /// The record to change does not exist.
    #[error("no {kind} with id {id:?} is recorded")]
    NotFound { kind: &'static str, id: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Persistence for runs and batches. Both implementations pass the same test suite.
#[async_trait]
pub trait Store: Send + Sync {
    /// Which backend this is: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Record finished runs (with their attempts) in one transaction. A run whose
    /// `(batch_id, case_index)` or id is already recorded is skipped with its attempts, so a
    /// retried flush never records a case twice.
    async fn insert_runs(&self, runs: &[RunRecord]) -> Result<()>;

    /// One run with its attempts.
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>>;

    /// Runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>>;

    /// Start a batch.
    async fn create_batch(&self, batch: &BatchRecord) -> Result<()>;

    /// One batch.
    async fn get_batch(&self, id: &str) -> Result<Option<BatchRecord>>;

    /// Set a batch's status (and its finish time when it ends).
    async fn set_batch_status(&self, id: &str, status: BatchStatus, at_ms: i64) -> Result<()>;

    /// The case indexes of a batch that are already recorded, ascending.
    async fn batch_recorded_cases(&self, batch_id: &str) -> Result<Vec<u64>>;

    /// Whether the database answers (for readiness checks).
    async fn ping(&self) -> Result<()>;
}

/// Open a store from a URL (`postgres://…`, `sqlite://PATH`, `sqlite::memory:`) or a plain file
/// path (SQLite), creating the file and its folder if needed, and apply migrations.
pub async fn open(location: &str) -> Result<Arc<dyn Store>> {
    Ok(match location::parse(location)? {
        location::Location::Postgres(url) => Arc::new(PostgresStore::open(&url).await?),
        location::Location::SqliteFile(path) => Arc::new(SqliteStore::open(&path).await?),
        location::Location::SqliteMemory => Arc::new(SqliteStore::open_in_memory().await?),
    })
}

#[cfg(test)]
mod tests {
    /// Servers open the store inside spawned tasks, which needs its future to be `Send`.
    #[test]
    fn open_can_be_spawned() {
        fn assert_send<T: Send>(_: &T) {}
        let future = super::open("sqlite::memory:");
        assert_send(&future);
    }
}
