//! The PostgreSQL store: a connection pool shared by any number of replicas.

mod access;
mod eval;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres};

use crate::codec::{self, ATTEMPT_COLUMNS, BATCH_COLUMNS, RUN_COLUMNS};
use crate::location::redact_location;
use crate::{
    migrate, ApiKeyRecord, AuditEntry, BatchRecord, BatchStatus, ClaimedCase, EvalCaseRecord,
    EvalRecord, EvalStatus, NewAuditEntry, Result, RunFilter, RunRecord, RunSummary, Store,
    StoreError,
};

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

    fn pool_ref(&self) -> &PgPool {
        &self.pool
    }
}

/// Insert every run of the arrays in one statement; the statement is the same whatever the
/// number of runs, so it is prepared once per connection.
const INSERT_RUNS: &str = "INSERT INTO runs (id, workflow, version, batch_id, case_index, status, \
     input, prompt, raw_output, output, error, model, prompt_tokens, completion_tokens, \
     cost_usd, latency_ms, created_at_ms, key_id, caller_user, team, sampled_for_review) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
     $13::bigint[], $14::bigint[], $15::float8[], $16::bigint[], $17::bigint[], \
     $18::text[], $19::text[], $20::text[], $21::bool[]) \
     ON CONFLICT DO NOTHING RETURNING id";

const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (run_id, n, model, provider, started_at_ms, \
     latency_ms, prompt_tokens, completion_tokens, cost_usd, outcome, error, raw_output) \
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], \
     $6::bigint[], $7::bigint[], $8::bigint[], $9::float8[], $10::text[], $11::text[], \
     $12::text[])";

/// Insert a batch's row.
async fn insert_batch<'c>(
    executor: impl sqlx::Executor<'c, Database = Postgres>,
    batch: &BatchRecord,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO batches ({BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    );
    sqlx::query::<Postgres>(&sql)
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
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn insert_runs(&self, runs: &[RunRecord]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let (run_rows, attempt_rows) = codec::rows(runs)?;
        let mut tx = self.pool.begin().await?;
        // Skips runs whose id or (batch_id, case_index) is already recorded; RETURNING names
        // the ones actually written, whose attempts are the only ones to write.
        let inserted: std::collections::HashSet<String> =
            sqlx::query_scalar::<Postgres, String>(INSERT_RUNS)
                .bind(run_rows.iter().map(|r| r.id).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.workflow).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.version).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.batch_id).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.case_index).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.status).collect::<Vec<_>>())
                .bind(
                    run_rows
                        .iter()
                        .map(|r| r.input.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    run_rows
                        .iter()
                        .map(|r| r.prompt.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(run_rows.iter().map(|r| r.raw_output).collect::<Vec<_>>())
                .bind(
                    run_rows
                        .iter()
                        .map(|r| r.output.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(run_rows.iter().map(|r| r.error).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.model).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.prompt_tokens).collect::<Vec<_>>())
                .bind(
                    run_rows
                        .iter()
                        .map(|r| r.completion_tokens)
                        .collect::<Vec<_>>(),
                )
                .bind(run_rows.iter().map(|r| r.cost_usd).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.created_at_ms).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.key_id).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.caller_user).collect::<Vec<_>>())
                .bind(run_rows.iter().map(|r| r.team).collect::<Vec<_>>())
                .bind(
                    run_rows
                        .iter()
                        .map(|r| r.sampled_for_review)
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let attempts: Vec<_> = attempt_rows
            .into_iter()
            .filter(|a| inserted.contains(a.run_id))
            .collect();
        if !attempts.is_empty() {
            sqlx::query::<Postgres>(INSERT_ATTEMPTS)
                .bind(attempts.iter().map(|a| a.run_id).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.n).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.model).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.provider).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.started_at_ms).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.latency_ms).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.prompt_tokens).collect::<Vec<_>>())
                .bind(
                    attempts
                        .iter()
                        .map(|a| a.completion_tokens)
                        .collect::<Vec<_>>(),
                )
                .bind(attempts.iter().map(|a| a.cost_usd).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.outcome).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.error).collect::<Vec<_>>())
                .bind(attempts.iter().map(|a| a.raw_output).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        // A queued case is done once its run is recorded.
        let queued: Vec<_> = run_rows.iter().filter(|r| r.batch_id.is_some()).collect();
        if !queued.is_empty() {
            sqlx::query::<Postgres>(
                "DELETE FROM batch_cases c USING UNNEST($1::text[], $2::bigint[]) AS d(b, i) \
                 WHERE c.batch_id = d.b AND c.case_index = d.i",
            )
            .bind(queued.iter().map(|r| r.batch_id).collect::<Vec<_>>())
            .bind(queued.iter().map(|r| r.case_index).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let Some(row) = sqlx::query::<Postgres>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1 ORDER BY n");
        let attempts = sqlx::query::<Postgres>(&sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(codec::attempt_from_row)
            .collect::<Result<Vec<_>>>()?;
        codec::run_from_row(&row, attempts).map(Some)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        codec::list_runs_query::<Postgres>(filter)
            .build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(codec::summary_from_row)
            .collect()
    }

    async fn create_batch(&self, batch: &BatchRecord) -> Result<()> {
        insert_batch(&self.pool, batch).await
    }

    async fn get_batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1");
        sqlx::query::<Postgres>(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| codec::batch_from_row(&row))
            .transpose()
    }

    async fn set_batch_status(&self, id: &str, status: BatchStatus, at_ms: i64) -> Result<()> {
        let finished = (status != BatchStatus::Running).then_some(at_ms);
        let done = sqlx::query::<Postgres>(
            "UPDATE batches SET status = $1, finished_at_ms = $2 WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(finished)
        .bind(id)
        .execute(&self.pool)
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
        sqlx::query_scalar::<Postgres, i64>(
            "SELECT case_index FROM runs WHERE batch_id = $1 AND case_index IS NOT NULL \
             ORDER BY case_index",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
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
        sqlx::query::<Postgres>("SELECT 1")
            .execute(&self.pool)
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
