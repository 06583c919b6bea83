//! The SQLite store: one file in WAL mode, one writer connection, a few readers.

mod access;
mod eval;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use crate::codec::{
    self, ATTEMPT_COLUMNS, ATTEMPT_COLUMN_COUNT, BATCH_COLUMNS, RUN_COLUMNS, RUN_COLUMN_COUNT,
};
use crate::{
    migrate, ApiKeyRecord, AuditEntry, BatchRecord, BatchStatus, ClaimedCase, EvalCaseRecord,
    EvalRecord, EvalStatus, NewAuditEntry, Result, RunFilter, RunRecord, RunSummary, Store,
    StoreError,
};

/// SQLite accepts at most this many bind parameters per statement (the default since 3.32).
const MAX_BINDS: usize = 32_766;
/// Runs per multi-row INSERT. Full-size statements are prepared once and cached; a shorter
/// remainder is prepared per use, so that flushes of every size do not fill the statement cache
/// with large statements used once.
const RUNS_PER_INSERT: usize = 128;
/// Attempts per multi-row INSERT (cached the same way).
const ATTEMPTS_PER_INSERT: usize = 256;
const _: () = assert!(RUNS_PER_INSERT * RUN_COLUMN_COUNT <= MAX_BINDS);
const _: () = assert!(ATTEMPTS_PER_INSERT * ATTEMPT_COLUMN_COUNT <= MAX_BINDS);

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Reader connections; WAL lets them read while the writer writes.
const READERS: u32 = 4;

/// A store in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: SQLite has one writer at a time, and queueing in the pool is cheaper
    /// than connections spinning on the busy timeout.
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Open (creating it and its folder if needed) the database file at `path` and migrate it.
    pub async fn open(path: &Path) -> Result<Self> {
        let location = path.display().to_string();
        let open_error = |message: String| StoreError::Open {
            location: location.clone(),
            message,
        };
        if path.is_dir() {
            return Err(open_error(
                "that is a folder; give the path of a database file inside it, e.g. \
                 .shopfloor/shopfloor.db"
                    .into(),
            ));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                open_error(format!(
                    "cannot create the folder {}: {e}; create it or choose another path",
                    parent.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Queued batch inputs are raw text until their run is recorded (redacted); zero
            // what is deleted instead of leaving it in free pages.
            .pragma("secure_delete", "on");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                open_error(format!(
                    "{e}; check that the path is a SQLite database file (or does not exist yet) \
                     and that its folder is writable"
                ))
            })?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_lazy_with(options);
        let store = Self { writer, readers };
        store.migrate().await?;
        Ok(store)
    }

    /// A database in memory that lives as long as this store (for tests and throwaway runs).
    pub async fn open_in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| StoreError::Open {
                location: "sqlite::memory:".into(),
                message: e.to_string(),
            })?
            .foreign_keys(true);
        // One connection that never idles out: the database vanishes with its last connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open {
                location: "sqlite::memory:".into(),
                message: e.to_string(),
            })?;
        let store = Self {
            writer: pool.clone(),
            readers: pool,
        };
        store.migrate().await?;
        Ok(store)
    }

    fn read_pool(&self) -> &SqlitePool {
        &self.readers
    }

    fn write_pool(&self) -> &SqlitePool {
        &self.writer
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        migrate::apply_sqlite(&mut conn).await
    }
}

/// Insert a batch's row.
async fn insert_batch<'c>(
    executor: impl sqlx::Executor<'c, Database = Sqlite>,
    batch: &BatchRecord,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO batches ({BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    sqlx::query::<Sqlite>(&sql)
        .bind(&batch.id)
        .bind(&batch.workflow)
        .bind(&batch.version)
        .bind(&batch.source)
        .bind(codec::to_bigint("batches.total_cases", batch.total_cases)?)
        .bind(&batch.model_override)
        .bind(batch.status.as_str())
        .bind(batch.created_at_ms)
        .bind(batch.finished_at_ms)
        .bind(batch.caller.as_ref().map(|c| c.key_id.as_str()))
        .bind(batch.caller.as_ref().and_then(|c| c.user.as_deref()))
        .bind(batch.caller.as_ref().and_then(|c| c.team.as_deref()))
        .execute(executor)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn insert_runs(&self, runs: &[RunRecord]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let (run_rows, attempt_rows) = codec::rows(runs)?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut inserted = std::collections::HashSet::with_capacity(run_rows.len());
        for chunk in run_rows.chunks(RUNS_PER_INSERT) {
            let mut query =
                QueryBuilder::<Sqlite>::new(format!("INSERT INTO runs ({RUN_COLUMNS}) "));
            query.push_values(chunk, |mut row, r| {
                row.push_bind(r.id)
                    .push_bind(r.workflow)
                    .push_bind(r.version)
                    .push_bind(r.batch_id)
                    .push_bind(r.case_index)
                    .push_bind(r.status)
                    .push_bind(r.input.as_str())
                    .push_bind(r.prompt.as_str())
                    .push_bind(r.raw_output)
                    .push_bind(r.output.as_deref())
                    .push_bind(r.error)
                    .push_bind(r.model)
                    .push_bind(r.prompt_tokens)
                    .push_bind(r.completion_tokens)
                    .push_bind(r.cost_usd)
                    .push_bind(r.latency_ms)
                    .push_bind(r.created_at_ms)
                    .push_bind(r.key_id)
                    .push_bind(r.caller_user)
                    .push_bind(r.team)
                    .push_bind(r.sampled_for_review);
            });
            // Skips runs whose id or (batch_id, case_index) is already recorded; RETURNING
            // names the ones actually written, whose attempts are the only ones to write.
            query.push(" ON CONFLICT DO NOTHING RETURNING id");
            let ids: Vec<String> = query
                .build_query_scalar()
                .persistent(chunk.len() == RUNS_PER_INSERT)
                .fetch_all(&mut *tx)
                .await?;
            inserted.extend(ids);
        }
        let attempts: Vec<_> = attempt_rows
            .into_iter()
            .filter(|a| inserted.contains(a.run_id))
            .collect();
        for chunk in attempts.chunks(ATTEMPTS_PER_INSERT) {
            let mut query =
                QueryBuilder::<Sqlite>::new(format!("INSERT INTO attempts ({ATTEMPT_COLUMNS}) "));
            query.push_values(chunk, |mut row, a| {
                row.push_bind(a.run_id)
                    .push_bind(a.n)
                    .push_bind(a.model)
                    .push_bind(a.provider)
                    .push_bind(a.started_at_ms)
                    .push_bind(a.latency_ms)
                    .push_bind(a.prompt_tokens)
                    .push_bind(a.completion_tokens)
                    .push_bind(a.cost_usd)
                    .push_bind(a.outcome)
                    .push_bind(a.error)
                    .push_bind(a.raw_output);
            });
            query
                .build()
                .persistent(chunk.len() == ATTEMPTS_PER_INSERT)
                .execute(&mut *tx)
                .await?;
        }
        // A queued case is done once its run is recorded.
        for run in run_rows.iter().filter(|r| r.batch_id.is_some()) {
            sqlx::query::<Sqlite>(
                "DELETE FROM batch_cases WHERE batch_id = $1 AND case_index = $2",
            )
            .bind(run.batch_id)
            .bind(run.case_index)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let Some(row) = sqlx::query::<Sqlite>(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
        else {
            return Ok(None);
        };
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1 ORDER BY n");
        let attempts = sqlx::query::<Sqlite>(&sql)
            .bind(id)
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(codec::attempt_from_row)
            .collect::<Result<Vec<_>>>()?;
        codec::run_from_row(&row, attempts).map(Some)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        codec::list_runs_query::<Sqlite>(filter)
            .build()
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(codec::summary_from_row)
            .collect()
    }

    async fn create_batch(&self, batch: &BatchRecord) -> Result<()> {
        insert_batch(&self.writer, batch).await
    }

    async fn get_batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1");
        sqlx::query::<Sqlite>(&sql)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .map(|row| codec::batch_from_row(&row))
            .transpose()
    }

    async fn set_batch_status(&self, id: &str, status: BatchStatus, at_ms: i64) -> Result<()> {
        let finished = (status != BatchStatus::Running).then_some(at_ms);
        let done = sqlx::query::<Sqlite>(
            "UPDATE batches SET status = $1, finished_at_ms = $2 WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(finished)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "batch",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    async fn batch_recorded_cases(&self, batch_id: &str) -> Result<Vec<u64>> {
        sqlx::query_scalar::<Sqlite, i64>(
            "SELECT case_index FROM runs WHERE batch_id = $1 AND case_index IS NOT NULL \
             ORDER BY case_index",
        )
        .bind(batch_id)
        .fetch_all(&self.readers)
        .await?
        .into_iter()
        .map(codec::case_index)
        .collect()
    }

    async fn create_eval(&self, eval: &EvalRecord) -> Result<()> {
        eval::create(self, eval).await
    }

    async fn finish_eval(
        &self,
        id: &str,
        status: EvalStatus,
        summary: &serde_json::Value,
        passed: Option<bool>,
        at_ms: i64,
    ) -> Result<()> {
        eval::finish(self, id, status, summary, passed, at_ms).await
    }

    async fn get_eval(&self, id: &str) -> Result<Option<EvalRecord>> {
        eval::get(self, id).await
    }

    async fn list_evals(&self, workflow: Option<&str>, limit: u32) -> Result<Vec<EvalRecord>> {
        eval::list(self, workflow, limit).await
    }

    async fn insert_eval_cases(&self, cases: &[EvalCaseRecord]) -> Result<()> {
        eval::insert_cases(self, cases).await
    }

    async fn eval_cases(
        &self,
        eval_id: &str,
        after_line: u64,
        limit: u32,
    ) -> Result<Vec<EvalCaseRecord>> {
        eval::cases(self, eval_id, after_line, limit).await
    }

    async fn cached_eval_case(
        &self,
        workflow: &str,
        version: &str,
        model_override: Option<&str>,
        input_hash: &str,
    ) -> Result<Option<EvalCaseRecord>> {
        eval::cached_case(self, workflow, version, model_override, input_hash).await
    }

    async fn set_baseline(&self, workflow: &str, eval_id: &str, at_ms: i64) -> Result<()> {
        eval::set_baseline(self, workflow, eval_id, at_ms).await
    }

    async fn baseline(&self, workflow: &str) -> Result<Option<String>> {
        eval::baseline(self, workflow).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query::<Sqlite>("SELECT 1")
            .execute(&self.readers)
            .await?;
        Ok(())
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        access::create_api_key(self, key).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        access::api_key_by_hash(self, key_hash).await
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        access::list_api_keys(self).await
    }

    async fn revoke_api_key(&self, name_or_id: &str, at_ms: i64) -> Result<ApiKeyRecord> {
        access::revoke_api_key(self, name_or_id, at_ms).await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        access::append_audit(self, entry).await
    }

    async fn audit_entries(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        access::audit_entries(self, after_seq, limit).await
    }

    async fn latest_audit(&self, action: &str, subject: &str) -> Result<Option<AuditEntry>> {
        access::latest_audit(self, action, subject).await
    }

    async fn enqueue_batch(
        &self,
        batch: &BatchRecord,
        cases: &[(u64, serde_json::Value)],
    ) -> Result<()> {
        access::enqueue_batch(self, batch, cases).await
    }

    async fn claim_batch_cases(
        &self,
        worker: &str,
        limit: u32,
        lease_until_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<ClaimedCase>> {
        access::claim_batch_cases(self, worker, limit, lease_until_ms, now_ms).await
    }

    async fn extend_batch_leases(&self, worker: &str, lease_until_ms: i64) -> Result<u64> {
        access::extend_batch_leases(self, worker, lease_until_ms).await
    }

    async fn batch_progress(&self, batch_id: &str) -> Result<(u64, u64)> {
        access::batch_progress(self, batch_id).await
    }

    async fn batch_runs(
        &self,
        batch_id: &str,
        after_case: u64,
        limit: u32,
    ) -> Result<Vec<RunRecord>> {
        access::batch_runs(self, batch_id, after_case, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_enforce_foreign_keys_and_wait_when_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        for pool in [&store.writer, &store.readers] {
            let mut conn = pool.acquire().await.unwrap();
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(fk, 1);
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(busy, 10_000);
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(sync, 1, "synchronous=NORMAL");
        }
    }
}
