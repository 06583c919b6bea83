//! The SQLite store: one file in WAL mode, one writer connection, a few readers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::query_builder::Separated;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, Transaction};

use crate::batch_lease::batch_lease_store_impl;
use crate::codec::{
    self, to_bigint, ATTEMPT_COLUMNS, ATTEMPT_COLUMN_COUNT, RUN_COLUMNS, RUN_COLUMN_COUNT,
};
use crate::drift::drift_store_impl;
use crate::eval_codec::{EvalCaseRow, EVAL_CASE_INSERT_COLUMNS, EVAL_CASE_INSERT_COLUMN_COUNT};
use crate::experiments::experiment_store_impl;
use crate::idempotency::idempotency_store_impl;
use crate::key_usage::key_usage_store_impl;
use crate::outbox::outbox_store_impl;
use crate::outcomes::outcome_store_impl;
use crate::queries::{store_impl, TxLock};
use crate::queue::{self, Claim, CLAIMED_COLUMNS};
use crate::retention::retention_store_impl;
use crate::review_rollups::review_rollup_fns;
use crate::reviews::review_store_impl;
use crate::rollups::rollup_writes;
use crate::sessions::session_store_impl;
use crate::{migrate, BatchStatus, ClaimedCase, Result, RunRecord, StoreError};

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
/// Eval cases per multi-row INSERT: one engine flush, cached the same way.
const CASES_PER_INSERT: usize = 256;
const _: () = assert!(CASES_PER_INSERT * EVAL_CASE_INSERT_COLUMN_COUNT <= MAX_BINDS);

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

/// Create `folder` (and those above it) readable by its owner only: it holds the database,
/// whose inputs and answers are the company's. An existing folder is left as it is.
fn private_folder(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

/// Create the database file readable and writable by its owner only (SQLite gives its `-wal`
/// and `-shm` files the same mode); an existing one readable by everyone loses that.
fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode();
                if mode & 0o007 != 0 {
                    let private = std::fs::Permissions::from_mode(mode & !0o007);
                    std::fs::set_permissions(path, private)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
            }
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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
            private_folder(parent).map_err(|e| {
                open_error(format!(
                    "cannot create the folder {}: {e}; create it or choose another path",
                    parent.display()
                ))
            })?;
        }
        private_file(path).map_err(|e| {
            open_error(format!(
                "cannot create the database file: {e}; check that its folder is writable"
            ))
        })?;
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

    fn reader(&self) -> &SqlitePool {
        &self.readers
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        migrate::apply_sqlite(&mut conn).await
    }

    /// A write transaction. The one writer connection and `BEGIN IMMEDIATE` (the write lock up
    /// front, against other processes) serialise every write, so no lock needs more.
    async fn begin_write(&self, _lock: TxLock) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Record runs with multi-row `VALUES` statements of fixed sizes, in one transaction.
    async fn write_runs(&self, runs: &[RunRecord]) -> Result<()> {
        let (run_rows, attempt_rows) = codec::rows(runs)?;
        let mut tx = self.begin_write(TxLock::Rows).await?;
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
                    .push_bind(r.sampled_for_review)
                    .push_bind(r.confidence)
                    .push_bind(r.origin)
                    .push_bind(r.experiment_id)
                    .push_bind(r.arm);
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
        let into = format!("INSERT INTO attempts ({ATTEMPT_COLUMNS}) ");
        insert_chunked(
            &mut tx,
            &into,
            "",
            &attempts,
            ATTEMPTS_PER_INSERT,
            |mut row, a| {
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
                    .push_bind(a.raw_output)
                    .push_bind(a.error_kind);
            },
        )
        .await?;
        let reviewed: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.review.is_some() && inserted.contains(&r.id))
            .collect();
        insert_review_rows(&mut tx, &reviewed).await?;
        add_key_usage(&mut tx, runs, &inserted).await?;
        add_run_rollups(&mut tx, runs, &run_rows, &inserted).await?;
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

    /// Record eval case rows with multi-row `VALUES` statements, in one transaction.
    async fn write_eval_cases(&self, rows: &[EvalCaseRow<'_>]) -> Result<()> {
        let mut tx = self.begin_write(TxLock::Rows).await?;
        let into = format!("INSERT INTO eval_cases ({EVAL_CASE_INSERT_COLUMNS}) ");
        // Only a repeated case is skipped; a second case on a recorded line is an error.
        let skip_repeats = " ON CONFLICT (eval_id, case_id) DO NOTHING";
        insert_chunked(
            &mut tx,
            &into,
            skip_repeats,
            rows,
            CASES_PER_INSERT,
            |mut row, c| {
                row.push_bind(c.eval_id)
                    .push_bind(c.case_id)
                    .push_bind(c.line)
                    .push_bind(c.run_id)
                    .push_bind(c.input_hash)
                    .push_bind(c.status)
                    .push_bind(c.output.as_deref())
                    .push_bind(c.raw_output)
                    .push_bind(c.expected.as_str())
                    .push_bind(c.scores.as_str())
                    .push_bind(c.tags.as_str())
                    .push_bind(c.latency_ms)
                    .push_bind(c.cost_usd)
                    .push_bind(c.prompt_tokens)
                    .push_bind(c.completion_tokens)
                    .push_bind(c.cached)
                    .push_bind(c.workflow)
                    .push_bind(c.version)
                    .push_bind(c.model_override);
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queue a batch's cases, one statement each (they run inside one transaction).
    async fn queue_cases(
        tx: &mut SqliteConnection,
        batch_id: &str,
        cases: &[(u64, Value)],
    ) -> Result<()> {
        for (index, input) in cases {
            sqlx::query::<Sqlite>(queue::INSERT_CASE)
                .bind(batch_id)
                .bind(to_bigint("batch_cases.case_index", *index)?)
                .bind(codec::json_text(input))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Lease queued cases: pick them, then mark them, in one write transaction (which no other
    /// writer can interleave with).
    async fn claim_cases(&self, claim: Claim<'_>) -> Result<Vec<ClaimedCase>> {
        let mut tx = self.begin_write(TxLock::Rows).await?;
        let sql = format!(
            "SELECT {CLAIMED_COLUMNS} FROM batch_cases c JOIN batches b ON b.id = c.batch_id \
             WHERE c.lease_until_ms < $1 AND b.status = $2 \
             ORDER BY c.batch_id, c.case_index LIMIT $3"
        );
        let claimed = sqlx::query::<Sqlite>(&sql)
            .bind(claim.now_ms)
            .bind(BatchStatus::Running.as_str())
            .bind(i64::from(claim.limit))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(queue::claimed_from_row)
            .collect::<Result<Vec<_>>>()?;
        for case in &claimed {
            sqlx::query::<Sqlite>(
                "UPDATE batch_cases SET lease_owner = $1, lease_until_ms = $2 \
                 WHERE batch_id = $3 AND case_index = $4",
            )
            .bind(claim.worker)
            .bind(claim.lease_until_ms)
            .bind(&case.batch_id)
            .bind(to_bigint("batch_cases.case_index", case.case_index)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(claimed)
    }
}

store_impl!(SqliteStore, Sqlite, "sqlite");
review_store_impl!(SqliteStore, Sqlite, "");
outbox_store_impl!(SqliteStore, Sqlite, "");
drift_store_impl!(SqliteStore, Sqlite);
rollup_writes!(Sqlite);
review_rollup_fns!(Sqlite);

/// Rows per multi-row upsert of a rollup.
const ROLLUP_ROWS: usize = 500;

/// Add `rows` ((workflow, version, hour, key) → runs) to the counts in `table`, whose key
/// column is `key`.
async fn add_counts<'a, K>(
    tx: &mut sqlx::SqliteConnection,
    table: &str,
    key: &str,
    rows: &std::collections::BTreeMap<(&'a str, &'a str, i64, K), i64>,
) -> Result<()>
where
    K: Copy + Send + 'a + sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite>,
{
    let rows: Vec<_> = rows.iter().collect();
    for chunk in rows.chunks(ROLLUP_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {table} (workflow, version, hour, {key}, runs) "
        ));
        q.push_values(chunk, |mut row, ((workflow, version, hour, key), n)| {
            row.push_bind(*workflow)
                .push_bind(*version)
                .push_bind(*hour)
                .push_bind(*key)
                .push_bind(**n);
        });
        q.push(format!(
            " ON CONFLICT (workflow, version, hour, {key}) DO UPDATE SET \
             runs = {table}.runs + excluded.runs"
        ));
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Add `deltas` to the rollup tables, one multi-row upsert per table and chunk.
async fn apply_rollups(
    tx: &mut sqlx::SqliteConnection,
    deltas: &crate::rollups::Deltas<'_>,
) -> crate::Result<()> {
    let hours: Vec<_> = deltas.hours.iter().collect();
    for chunk in hours.chunks(ROLLUP_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO run_hours (workflow, hour, version, status, team, runs, cost_usd, \
             latency_ms, fallbacks, anonymous) ",
        );
        q.push_values(
            chunk,
            |mut row, ((workflow, hour, version, status, team), s)| {
                row.push_bind(*workflow)
                    .push_bind(*hour)
                    .push_bind(*version)
                    .push_bind(*status)
                    .push_bind(*team)
                    .push_bind(s.runs)
                    .push_bind(s.cost_usd)
                    .push_bind(s.latency_ms)
                    .push_bind(s.fallbacks)
                    .push_bind(s.anonymous);
            },
        );
        q.push(
            " ON CONFLICT (workflow, hour, version, status, team) DO UPDATE SET \
             runs = run_hours.runs + excluded.runs, \
             cost_usd = run_hours.cost_usd + excluded.cost_usd, \
             latency_ms = run_hours.latency_ms + excluded.latency_ms, \
             fallbacks = run_hours.fallbacks + excluded.fallbacks, \
             anonymous = run_hours.anonymous + excluded.anonymous",
        );
        q.build().execute(&mut *tx).await?;
    }
    add_counts(tx, "run_hour_outputs", "output", &deltas.outputs).await?;
    add_counts(tx, "run_hour_latency", "bucket", &deltas.latency).await?;
    let callers: Vec<_> = deltas.callers.iter().collect();
    for chunk in callers.chunks(ROLLUP_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO run_day_callers (workflow, day, caller_user, team, key_id) ",
        );
        q.push_values(chunk, |mut row, (workflow, day, user, team, key)| {
            row.push_bind(*workflow)
                .push_bind(*day)
                .push_bind(*user)
                .push_bind(*team)
                .push_bind(*key);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}
outcome_store_impl!(SqliteStore, Sqlite);
batch_lease_store_impl!(SqliteStore, Sqlite);
session_store_impl!(SqliteStore, Sqlite);
idempotency_store_impl!(SqliteStore, Sqlite);
key_usage_store_impl!(SqliteStore, Sqlite);
experiment_store_impl!(SqliteStore, Sqlite);
retention_store_impl!(SqliteStore, Sqlite);

/// Insert `rows` with multi-row `VALUES` statements of `per_insert` rows (`into` the table and
/// its columns, then `suffix`), binding each row with `bind`. Statements of the full size are
/// prepared once and cached; the shorter last one is not, so flushes of every size do not fill
/// the statement cache.
async fn insert_chunked<'a, T>(
    tx: &mut SqliteConnection,
    into: &str,
    suffix: &str,
    rows: &'a [T],
    per_insert: usize,
    mut bind: impl FnMut(Separated<'_, 'a, Sqlite, &'static str>, &'a T),
) -> Result<()> {
    for chunk in rows.chunks(per_insert) {
        let mut query = QueryBuilder::<Sqlite>::new(into);
        query.push_values(chunk, &mut bind);
        query.push(suffix);
        query
            .build()
            .persistent(chunk.len() == per_insert)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval_codec::{CACHED_CASE_WITHOUT_OVERRIDE, CACHED_CASE_WITH_OVERRIDE};

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

    /// The cache lookup must probe its partial index, not scan every case: SQLite uses a
    /// partial index only when the query repeats the index's `WHERE`.
    #[tokio::test]
    async fn cache_lookup_uses_its_index() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        for sql in [&*CACHED_CASE_WITH_OVERRIDE, &*CACHED_CASE_WITHOUT_OVERRIDE] {
            let plan = sqlx::query::<Sqlite>(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&store.readers)
                .await
                .unwrap_or_else(|e| panic!("{e}: {sql}"))
                .iter()
                .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                plan.contains("USING INDEX eval_cases_cache"),
                "{plan}\n{sql}"
            );
        }
    }
}
