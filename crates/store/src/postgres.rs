//! The PostgreSQL store: a connection pool shared by any number of replicas. Bulk writes bind
//! one array per column and `UNNEST` them, so each statement is the same whatever the number
//! of rows and is prepared once per connection. Audit appends and key creation take a
//! transaction-scoped advisory lock; batch claims use `FOR UPDATE SKIP LOCKED`.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres, Transaction};

use crate::batch_lease::batch_lease_store_impl;
use crate::codec::{self, to_bigint, ATTEMPT_COLUMNS, RUN_COLUMNS};
use crate::drift::drift_store_impl;
use crate::eval_codec::{EvalCaseRow, EVAL_CASE_INSERT_COLUMNS};
use crate::experiments::experiment_store_impl;
use crate::idempotency::idempotency_store_impl;
use crate::key_usage::key_usage_store_impl;
use crate::location::redact_location;
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

/// One array per column of `rows`, for binding to an `UNNEST`.
macro_rules! column {
    ($rows:expr, $field:expr) => {
        $rows.iter().map($field).collect::<Vec<_>>()
    };
}
/// Connections per store (per replica).
const MAX_CONNECTIONS: u32 = 10;
/// How long a query waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A store in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://…`) and migrate it.
    pub async fn open(url: &str) -> Result<Self> {
        let open_error = |message: String| StoreError::Open {
            location: redact_location(url),
            message,
        };
        let options: PgConnectOptions = url.parse().map_err(|e| {
            open_error(format!(
                "not a valid PostgreSQL URL ({e}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ))
        })?;
        // One direct connection first: the pool would retry a refused connection until its
        // timeout and then report only that it timed out, hiding why.
        let mut conn = options.connect().await.map_err(|e| {
            open_error(format!(
                "{e}; check that PostgreSQL is running and reachable there, and that the user, \
                 password and database in the URL are right"
            ))
        })?;
        migrate::apply_postgres(&mut conn).await?;
        // A failed close only loses a connection we are done with.
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction, holding the advisory lock `lock` names until it ends.
    async fn begin_write(&self, lock: TxLock) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        let key = match lock {
            TxLock::Rows => return Ok(tx),
            TxLock::KeyNames => KEYS_LOCK_KEY,
            TxLock::AuditChain => AUDIT_LOCK_KEY,
        };
        sqlx::query::<Postgres>("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Record runs, their attempts and their queue removals with one statement each.
    async fn write_runs(&self, runs: &[RunRecord]) -> Result<()> {
        let (run_rows, attempt_rows) = codec::rows(runs)?;
        let mut tx = self.begin_write(TxLock::Rows).await?;
        // Skips runs whose id or (batch_id, case_index) is already recorded; RETURNING names
        // the ones actually written, whose attempts are the only ones to write.
        let inserted: HashSet<String> = sqlx::query_scalar::<Postgres, String>(&INSERT_RUNS)
            .bind(column!(run_rows, |r| r.id))
            .bind(column!(run_rows, |r| r.workflow))
            .bind(column!(run_rows, |r| r.version))
            .bind(column!(run_rows, |r| r.batch_id))
            .bind(column!(run_rows, |r| r.case_index))
            .bind(column!(run_rows, |r| r.status))
            .bind(column!(run_rows, |r| r.input.as_str()))
            .bind(column!(run_rows, |r| r.prompt.as_str()))
            .bind(column!(run_rows, |r| r.raw_output))
            .bind(column!(run_rows, |r| r.output.as_deref()))
            .bind(column!(run_rows, |r| r.error))
            .bind(column!(run_rows, |r| r.model))
            .bind(column!(run_rows, |r| r.prompt_tokens))
            .bind(column!(run_rows, |r| r.completion_tokens))
            .bind(column!(run_rows, |r| r.cost_usd))
            .bind(column!(run_rows, |r| r.latency_ms))
            .bind(column!(run_rows, |r| r.created_at_ms))
            .bind(column!(run_rows, |r| r.key_id))
            .bind(column!(run_rows, |r| r.caller_user))
            .bind(column!(run_rows, |r| r.team))
            .bind(column!(run_rows, |r| r.sampled_for_review))
            .bind(column!(run_rows, |r| r.confidence))
            .bind(column!(run_rows, |r| r.origin))
            .bind(column!(run_rows, |r| r.experiment_id))
            .bind(column!(run_rows, |r| r.arm))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let attempts: Vec<_> = attempt_rows
            .into_iter()
            .filter(|a| inserted.contains(a.run_id))
            .collect();
        if !attempts.is_empty() {
            sqlx::query::<Postgres>(&INSERT_ATTEMPTS)
                .bind(column!(attempts, |a| a.run_id))
                .bind(column!(attempts, |a| a.n))
                .bind(column!(attempts, |a| a.model))
                .bind(column!(attempts, |a| a.provider))
                .bind(column!(attempts, |a| a.started_at_ms))
                .bind(column!(attempts, |a| a.latency_ms))
                .bind(column!(attempts, |a| a.prompt_tokens))
                .bind(column!(attempts, |a| a.completion_tokens))
                .bind(column!(attempts, |a| a.cost_usd))
                .bind(column!(attempts, |a| a.outcome))
                .bind(column!(attempts, |a| a.error))
                .bind(column!(attempts, |a| a.raw_output))
                .bind(column!(attempts, |a| a.error_kind))
                .execute(&mut *tx)
                .await?;
        }
        let reviewed: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.review.is_some() && inserted.contains(&r.id))
            .collect();
        insert_review_rows(&mut tx, &reviewed).await?;
        add_key_usage(&mut tx, runs, &inserted).await?;
        add_run_rollups(&mut tx, runs, &run_rows, &inserted).await?;
        // A queued case is done once its run is recorded.
        let queued: Vec<_> = run_rows.iter().filter(|r| r.batch_id.is_some()).collect();
        if !queued.is_empty() {
            sqlx::query::<Postgres>(
                "DELETE FROM batch_cases c USING UNNEST($1::text[], $2::bigint[]) AS d(b, i) \
                 WHERE c.batch_id = d.b AND c.case_index = d.i",
            )
            .bind(column!(queued, |r| r.batch_id))
            .bind(column!(queued, |r| r.case_index))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Record eval case rows with one statement, so in one transaction: a flush is recorded
    /// whole or not at all.
    async fn write_eval_cases(&self, rows: &[EvalCaseRow<'_>]) -> Result<()> {
        sqlx::query::<Postgres>(&INSERT_CASES)
            .bind(column!(rows, |c| c.eval_id))
            .bind(column!(rows, |c| c.case_id))
            .bind(column!(rows, |c| c.line))
            .bind(column!(rows, |c| c.run_id))
            .bind(column!(rows, |c| c.input_hash))
            .bind(column!(rows, |c| c.status))
            .bind(column!(rows, |c| c.output.as_deref()))
            .bind(column!(rows, |c| c.raw_output))
            .bind(column!(rows, |c| c.expected.as_str()))
            .bind(column!(rows, |c| c.scores.as_str()))
            .bind(column!(rows, |c| c.tags.as_str()))
            .bind(column!(rows, |c| c.latency_ms))
            .bind(column!(rows, |c| c.cost_usd))
            .bind(column!(rows, |c| c.prompt_tokens))
            .bind(column!(rows, |c| c.completion_tokens))
            .bind(column!(rows, |c| c.cached))
            .bind(column!(rows, |c| c.workflow))
            .bind(column!(rows, |c| c.version))
            .bind(column!(rows, |c| c.model_override))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Queue a batch's cases with one statement.
    async fn queue_cases(
        tx: &mut PgConnection,
        batch_id: &str,
        cases: &[(u64, Value)],
    ) -> Result<()> {
        let indexes = cases
            .iter()
            .map(|(index, _)| to_bigint("batch_cases.case_index", *index))
            .collect::<Result<Vec<_>>>()?;
        sqlx::query::<Postgres>(
            "INSERT INTO batch_cases (batch_id, case_index, input, lease_owner, lease_until_ms) \
             SELECT $1, i, x, NULL, 0 FROM UNNEST($2::bigint[], $3::text[]) AS t(i, x)",
        )
        .bind(batch_id)
        .bind(indexes)
        .bind(column!(cases, |(_, input)| codec::json_text(input)))
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Lease queued cases in one statement. SKIP LOCKED: replicas claiming at once each take
    /// rows the others have not locked, instead of waiting for them or taking the same ones.
    async fn claim_cases(&self, claim: Claim<'_>) -> Result<Vec<ClaimedCase>> {
        sqlx::query::<Postgres>(&CLAIM_CASES)
            .bind(claim.now_ms)
            .bind(BatchStatus::Running.as_str())
            .bind(i64::from(claim.limit))
            .bind(claim.worker)
            .bind(claim.lease_until_ms)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(queue::claimed_from_row)
            .collect()
    }
}

store_impl!(PostgresStore, Postgres, "postgres");
review_store_impl!(PostgresStore, Postgres, "FOR UPDATE SKIP LOCKED");
outbox_store_impl!(PostgresStore, Postgres, "FOR UPDATE SKIP LOCKED");
drift_store_impl!(PostgresStore, Postgres);
rollup_writes!(Postgres);
review_rollup_fns!(Postgres);

/// Add `rows` ((workflow, version, hour, key) → runs) to the counts in `table`, whose key
/// column `key` has the SQL type `key_type`.
async fn add_counts<K>(
    tx: &mut PgConnection,
    table: &str,
    key: &str,
    key_type: &str,
    rows: &std::collections::BTreeMap<(&str, &str, i64, K), i64>,
) -> Result<()>
where
    K: Copy + Send + Sync + sqlx::postgres::PgHasArrayType + for<'q> sqlx::Encode<'q, Postgres>,
    K: sqlx::Type<Postgres>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = rows.iter().collect();
    sqlx::query::<Postgres>(&format!(
        "INSERT INTO {table} (workflow, version, hour, {key}, runs) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::{key_type}[], $5::bigint[]) \
         ON CONFLICT (workflow, version, hour, {key}) DO UPDATE SET runs = {table}.runs + excluded.runs"
    ))
    .bind(column!(rows, |(k, _)| k.0))
    .bind(column!(rows, |(k, _)| k.1))
    .bind(column!(rows, |(k, _)| k.2))
    .bind(column!(rows, |(k, _)| k.3))
    .bind(column!(rows, |(_, n)| **n))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Add `deltas` to the rollup tables: one `UNNEST` upsert per table, whose text never changes
/// (so it is prepared once per connection, whatever the number of rows).
async fn apply_rollups(tx: &mut PgConnection, deltas: &crate::rollups::Deltas<'_>) -> Result<()> {
    if !deltas.hours.is_empty() {
        let rows: Vec<_> = deltas.hours.iter().collect();
        sqlx::query::<Postgres>(
            "INSERT INTO run_hours (workflow, hour, version, status, team, runs, cost_usd, \
             latency_ms, fallbacks, anonymous) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
             $6::bigint[], $7::float8[], $8::bigint[], $9::bigint[], $10::bigint[]) \
             ON CONFLICT (workflow, hour, version, status, team) DO UPDATE SET \
             runs = run_hours.runs + excluded.runs, \
             cost_usd = run_hours.cost_usd + excluded.cost_usd, \
             latency_ms = run_hours.latency_ms + excluded.latency_ms, \
             fallbacks = run_hours.fallbacks + excluded.fallbacks, \
             anonymous = run_hours.anonymous + excluded.anonymous",
        )
        .bind(column!(rows, |(k, _)| k.0))
        .bind(column!(rows, |(k, _)| k.1))
        .bind(column!(rows, |(k, _)| k.2))
        .bind(column!(rows, |(k, _)| k.3))
        .bind(column!(rows, |(k, _)| k.4))
        .bind(column!(rows, |(_, s)| s.runs))
        .bind(column!(rows, |(_, s)| s.cost_usd))
        .bind(column!(rows, |(_, s)| s.latency_ms))
        .bind(column!(rows, |(_, s)| s.fallbacks))
        .bind(column!(rows, |(_, s)| s.anonymous))
        .execute(&mut *tx)
        .await?;
    }
    add_counts(tx, "run_hour_outputs", "output", "text", &deltas.outputs).await?;
    add_counts(tx, "run_hour_latency", "bucket", "bigint", &deltas.latency).await?;
    if !deltas.callers.is_empty() {
        let rows: Vec<_> = deltas.callers.iter().collect();
        sqlx::query::<Postgres>(
            "INSERT INTO run_day_callers (workflow, day, caller_user, team, key_id) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(column!(rows, |k| k.0))
        .bind(column!(rows, |k| k.1))
        .bind(column!(rows, |k| k.2))
        .bind(column!(rows, |k| k.3))
        .bind(column!(rows, |k| k.4))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
outcome_store_impl!(PostgresStore, Postgres);
batch_lease_store_impl!(PostgresStore, Postgres);
session_store_impl!(PostgresStore, Postgres);
idempotency_store_impl!(PostgresStore, Postgres);
key_usage_store_impl!(PostgresStore, Postgres);
experiment_store_impl!(PostgresStore, Postgres);
retention_store_impl!(PostgresStore, Postgres);

/// Serialises key creation (name check, then insert) across replicas.
const KEYS_LOCK_KEY: i64 = 0x5e0f_100a_0002;
/// Serialises audit appends across replicas, so that numbering and chaining stay linear.
const AUDIT_LOCK_KEY: i64 = 0x5e0f_100a_0003;

/// Insert every run of the arrays; skips recorded ones and names those it wrote.
static INSERT_RUNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO runs ({RUN_COLUMNS}) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
         $13::bigint[], $14::bigint[], $15::float8[], $16::bigint[], $17::bigint[], \
         $18::text[], $19::text[], $20::text[], $21::bool[], $22::float8[], $23::text[], $24::text[], $25::text[]) \
         ON CONFLICT DO NOTHING RETURNING id"
    )
});

/// Insert every attempt of the arrays.
static INSERT_ATTEMPTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO attempts ({ATTEMPT_COLUMNS}) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], \
         $6::bigint[], $7::bigint[], $8::bigint[], $9::float8[], $10::text[], $11::text[], \
         $12::text[], $13::text[])"
    )
});

/// Insert every eval case of the arrays. Only a repeated case is skipped; a second case on a
/// recorded line is an error.
static INSERT_CASES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO eval_cases ({EVAL_CASE_INSERT_COLUMNS}) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
         $12::bigint[], $13::float8[], $14::bigint[], $15::bigint[], $16::boolean[], \
         $17::text[], $18::text[], $19::text[]) \
         ON CONFLICT (eval_id, case_id) DO NOTHING"
    )
});

/// Lease the oldest queued cases of running batches whose lease ran out: binds now, the
/// running status, the limit, the worker and the lease's end.
static CLAIM_CASES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH picked AS ( \
             SELECT c.batch_id, c.case_index FROM batch_cases c \
             JOIN batches b ON b.id = c.batch_id \
             WHERE c.lease_until_ms < $1 AND b.status = $2 \
             ORDER BY c.batch_id, c.case_index LIMIT $3 \
             FOR UPDATE OF c SKIP LOCKED) \
         UPDATE batch_cases c SET lease_owner = $4, lease_until_ms = $5 \
         FROM picked, batches b \
         WHERE c.batch_id = picked.batch_id AND c.case_index = picked.case_index \
           AND b.id = c.batch_id \
         RETURNING {CLAIMED_COLUMNS}"
    )
});
