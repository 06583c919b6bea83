//! Where runs and evals are kept: one [`Store`] trait, a SQLite and a PostgreSQL implementation.
//!
//! Nothing outside this crate writes SQL. Records are plain data; the engine builds them.

mod audit;
mod batch_lease;
mod codec;
mod drift;
mod eval_codec;
mod eval_record;
mod experiments;
mod idempotency;
mod key_usage;
mod keys;
mod location;
mod migrate;
mod outbox;
mod outcomes;
mod postgres;
mod queries;
mod queue;
mod record;
mod retention;
mod review_rollups;
mod reviews;
mod rollups;
mod sessions;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;

pub use audit::{
    verify_chain, AuditAction, AuditAnchor, AuditEntry, ChainBreak, ChainVerifier, NewAuditEntry,
    GENESIS_HASH,
};
pub use batch_lease::BatchLeaseStore;
pub use drift::{DriftStore, RunWindow, SampledRun, WindowCounts, SLOT_SAMPLING_MIN_RUNS};
pub use eval_record::{EvalCaseRecord, EvalRecord, EvalStatus};
pub use experiments::{
    ExperimentEnd, ExperimentFigures, ExperimentRecord, ExperimentState, ExperimentStore,
};
pub use idempotency::{IdempotencyClaim, IdempotencyRequest, IdempotencyStore, KeptAnswer};
pub use key_usage::KeyUsageStore;
pub use keys::{ApiKeyRecord, Caller};
pub use location::redact_location;
pub use outbox::{
    DeliveryOutcome, DeliveryState, EventFilter, EventKind, OutboxEvent, OutboxStore,
};
pub use outcomes::{
    week_of_ms, week_start_ms, CallerWeek, KpiValue, OutcomeStore, ReviewWeek, RunDay, RunWeek,
    TeamRuns, Window,
};
pub use postgres::PostgresStore;
pub use queue::ClaimedCase;
pub use record::{
    AttemptOutcome, AttemptRecord, BatchRecord, BatchStatus, ErrorKind, ExperimentArm, RunFilter,
    RunOrigin, RunRecord, RunStatus, RunSummary,
};
pub use retention::RetentionStore;
pub use review_rollups::{ReviewTallies, ReviewerTally};
pub use reviews::{
    ReviewClaim, ReviewCount, ReviewDecisionRecord, ReviewFilter, ReviewItem, ReviewStore,
    ReviewTicket, ReviewUpdate,
};
pub use sessions::{SessionRecord, SessionStore};
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
    /// A record with this name already exists.
    #[error("a {kind} named {name:?} already exists")]
    Duplicate { kind: &'static str, name: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Persistence for runs, batches, evals and baselines. Both implementations pass the same test suite.
#[async_trait]
pub trait Store:
    BatchLeaseStore
    + ReviewStore
    + OutboxStore
    + OutcomeStore
    + DriftStore
    + SessionStore
    + IdempotencyStore
    + KeyUsageStore
    + ExperimentStore
    + RetentionStore
    + Send
    + Sync
{
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

    /// Start an eval run.
    async fn create_eval(&self, eval: &EvalRecord) -> Result<()>;

    /// End an eval run: its status, summary, gate verdict and finish time (kept empty when
    /// `status` is `Running`, i.e. the eval is resumed). `NotFound` if the eval does not exist.
    async fn finish_eval(
        &self,
        id: &str,
        status: EvalStatus,
        summary: &serde_json::Value,
        passed: Option<bool>,
        at_ms: i64,
    ) -> Result<()>;

    /// One eval run.
    async fn get_eval(&self, id: &str) -> Result<Option<EvalRecord>>;

    /// Eval runs, newest first, optionally of one workflow; at most `limit`.
    async fn list_evals(&self, workflow: Option<&str>, limit: u32) -> Result<Vec<EvalRecord>>;

    /// Record case results in one transaction; a case already recorded for its eval
    /// (same `eval_id`, `case_id`) is skipped. Fails with `NotFound` when a case's eval was
    /// never created, and refuses a different case on a line its eval already recorded.
    async fn insert_eval_cases(&self, cases: &[EvalCaseRecord]) -> Result<()>;

    /// An eval's case results ordered by line, `limit` at a time after line `after_line`
    /// (0 for the first page), so that large evals are read without loading them whole.
    async fn eval_cases(
        &self,
        eval_id: &str,
        after_line: u64,
        limit: u32,
    ) -> Result<Vec<EvalCaseRecord>>;

    /// A finished, non-cached case result of any eval of `workflow` at `version` with the
    /// same model override and input hash, newest first: what the eval cache reuses.
    async fn cached_eval_case(
        &self,
        workflow: &str,
        version: &str,
        model_override: Option<&str>,
        input_hash: &str,
    ) -> Result<Option<EvalCaseRecord>>;

    /// Make `eval_id` the baseline of `workflow` (one baseline per workflow; replaces the old).
    /// Fails with `NotFound` of kind `eval` when no such eval exists, and of kind
    /// `eval of this workflow` when it is an eval of another workflow.
    async fn set_baseline(&self, workflow: &str, eval_id: &str, at_ms: i64) -> Result<()>;

    /// The baseline eval id of `workflow`, if any.
    async fn baseline(&self, workflow: &str) -> Result<Option<String>>;

    /// Whether the database answers (for readiness checks).
    async fn ping(&self) -> Result<()>;

    /// Keep a new API key. Fails with `Duplicate` when a live key has the same name.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;

    /// The key (live or revoked) whose SHA-256 is `key_hash`.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;

    /// Every key, live and revoked, oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;

    /// The key with this id, live or revoked.
    async fn api_key_by_id(&self, id: &str) -> Result<Option<ApiKeyRecord>>;

    /// Revoke the live key with this name or id; returns it. `NotFound` when there is none.
    async fn revoke_api_key(&self, name_or_id: &str, at_ms: i64) -> Result<ApiKeyRecord>;

    /// Set the limits of the live key with this name or id; returns it. `NotFound` when there
    /// is none.
    async fn set_key_limits(
        &self,
        name_or_id: &str,
        limits: &shopfloor_core::limits::KeyLimits,
    ) -> Result<ApiKeyRecord>;

    /// Append an entry to the audit log, numbered and chained to the last one atomically
    /// (replicas appending at once are serialised).
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry>;

    /// Audit entries with `seq > after_seq`, oldest first, at most `limit`.
    async fn audit_entries(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>>;

    /// The newest audit entry with this action and subject.
    async fn latest_audit(&self, action: AuditAction, subject: &str) -> Result<Option<AuditEntry>>;

    /// The oldest audit entry with this action and subject.
    async fn first_audit(&self, action: AuditAction, subject: &str) -> Result<Option<AuditEntry>>;

    /// Create a batch and queue its cases (1-based index, input) in one transaction.
    async fn enqueue_batch(
        &self,
        batch: &BatchRecord,
        cases: &[(u64, serde_json::Value)],
    ) -> Result<()>;

    /// Lease up to `limit` queued cases of running batches whose lease has run out (never
    /// leased, or held by a replica that stopped) to `worker` until `lease_until_ms`. Replicas
    /// claiming at once never get the same case. A case leaves the queue when its run is
    /// recorded ([`Store::insert_runs`]).
    async fn claim_batch_cases(
        &self,
        worker: &str,
        limit: u32,
        lease_until_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ClaimedCase>>;

    /// Extend every lease `worker` holds to `lease_until_ms`; returns how many it holds.
    async fn extend_batch_leases(&self, worker: &str, lease_until_ms: i64) -> Result<u64>;

    /// A batch's (total cases, recorded runs). `NotFound` for an unknown batch.
    async fn batch_progress(&self, batch_id: &str) -> Result<(u64, u64)>;

    /// A batch's recorded runs with `case_index > after_case`, in case order, at most
    /// `limit`, without their attempts (one indexed query per page).
    async fn batch_runs(
        &self,
        batch_id: &str,
        after_case: u64,
        limit: u32,
    ) -> Result<Vec<RunRecord>>;
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
