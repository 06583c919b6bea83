//! The [`Store`](crate::Store) implementation both backends share, written once.
//!
//! [`store_impl!`] expands, in each backend's module, into that backend's `impl Store`: every
//! query that reads the same in SQLite and PostgreSQL is spelled here, once, over the backend's
//! `sqlx::Database` (both accept `$1` placeholders). What really differs by dialect is left to
//! a few methods each backend defines on its store (see the macro's documentation).
//!
//! Why a macro and not generic functions over `sqlx::Database`: the futures of generic sqlx
//! code (executors and arguments bound by higher-ranked lifetimes) fail `async_trait`'s `Send`
//! check, which the store needs because servers spawn its calls. The macro expands into the
//! same monomorphic code a hand-written impl would be, so run recording costs exactly what it
//! did before; the recording statements themselves (multi-row `VALUES` on SQLite, `UNNEST` of
//! arrays on PostgreSQL) stay per backend because their SQL differs.

/// What a write transaction must exclude beyond the row locks its statements take. SQLite
/// serialises every write anyway (one writer connection, `BEGIN IMMEDIATE`); PostgreSQL,
/// shared by replicas, takes an advisory lock for the two that read before they write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxLock {
    /// Nothing more: the transaction's statements lock what they touch.
    Rows,
    /// Key creation: the check that no live key has the name, then the insert.
    KeyNames,
    /// Audit appends: reading the last entry, then chaining the next to it.
    AuditChain,
}

/// `impl Store for $store` over `$db`, named `$backend`. The invoking module's `$store` defines:
///
/// - `fn reader(&self) -> &Pool<$db>` and `fn writer(&self) -> &Pool<$db>`;
/// - `async fn begin_write(&self, lock: TxLock) -> Result<Transaction<'static, $db>>`;
/// - `async fn write_runs(&self, runs: &[RunRecord]) -> Result<()>`: [`Store::insert_runs`];
/// - `async fn write_eval_cases(&self, rows: &[EvalCaseRow<'_>]) -> Result<()>`: the rows of
///   [`Store::insert_eval_cases`], in one transaction;
/// - `async fn queue_cases(tx: &mut $db::Connection, batch_id: &str, cases: &[(u64, Value)])
///   -> Result<()>`: the queue rows of [`Store::enqueue_batch`];
/// - `async fn claim_cases(&self, claim: Claim<'_>) -> Result<Vec<ClaimedCase>>`:
///   [`Store::claim_batch_cases`].
///
/// [`Store::insert_runs`]: crate::Store::insert_runs
/// [`Store::insert_eval_cases`]: crate::Store::insert_eval_cases
/// [`Store::enqueue_batch`]: crate::Store::enqueue_batch
/// [`Store::claim_batch_cases`]: crate::Store::claim_batch_cases
macro_rules! store_impl {
    ($store:ty, $db:ty, $backend:literal) => {
        /// The key whose `column` (`key_hash` or `id`: never caller text) is `value`.
        async fn api_key_where(
            pool: &sqlx::Pool<$db>,
            column: &'static str,
            value: &str,
        ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
            use $crate::keys;
            let sql = format!(
                "SELECT {} FROM api_keys WHERE {column} = $1",
                keys::KEY_COLUMNS
            );
            sqlx::query::<$db>(&sql)
                .bind(value)
                .fetch_optional(pool)
                .await?
                .map(|row| keys::key_from_row(&row))
                .transpose()
        }

        /// Insert a batch's row.
        async fn insert_batch<'c>(
            executor: impl sqlx::Executor<'c, Database = $db>,
            batch: &$crate::BatchRecord,
        ) -> $crate::Result<()> {
            let sql = format!(
                "INSERT INTO batches ({}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                $crate::codec::BATCH_COLUMNS
            );
            sqlx::query::<$db>(&sql)
                .bind(&batch.id)
                .bind(&batch.workflow)
                .bind(&batch.version)
                .bind(&batch.source)
                .bind($crate::codec::to_bigint(
                    "batches.total_cases",
                    batch.total_cases,
                )?)
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

        /// The first (`order` "ASC") or last ("DESC") audit entry with this action and subject.
        async fn audit_at_end(
            pool: &sqlx::Pool<$db>,
            action: $crate::AuditAction,
            subject: &str,
            order: &'static str,
        ) -> $crate::Result<Option<$crate::AuditEntry>> {
            use $crate::audit;
            let sql = format!(
                "SELECT {} FROM audit_log WHERE action = $1 AND subject = $2 \
                 ORDER BY seq {order} LIMIT 1",
                audit::AUDIT_COLUMNS
            );
            sqlx::query::<$db>(&sql)
                .bind(action.as_str())
                .bind(subject)
                .fetch_optional(pool)
                .await?
                .map(|row| audit::audit_from_row(&row))
                .transpose()
        }

        #[::async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn insert_runs(&self, runs: &[$crate::RunRecord]) -> $crate::Result<()> {
                if runs.is_empty() {
                    return Ok(());
                }
                self.write_runs(runs).await
            }

            async fn get_run(&self, id: &str) -> $crate::Result<Option<$crate::RunRecord>> {
                use $crate::codec::{self, ATTEMPT_COLUMNS, RUN_COLUMNS};
                let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
                let Some(row) = sqlx::query::<$db>(&sql)
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                else {
                    return Ok(None);
                };
                let sql =
                    format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1 ORDER BY n");
                let attempts = sqlx::query::<$db>(&sql)
                    .bind(id)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(codec::attempt_from_row)
                    .collect::<$crate::Result<Vec<_>>>()?;
                let review = sqlx::query::<$db>(
                    "SELECT reason, approvals_required, due_at_ms FROM reviews WHERE run_id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?
                .map(|row| $crate::reviews::ticket_from_row(&row))
                .transpose()?;
                codec::run_from_row(&row, attempts, review).map(Some)
            }

            async fn list_runs(
                &self,
                filter: &$crate::RunFilter,
            ) -> $crate::Result<Vec<$crate::RunSummary>> {
                $crate::codec::list_runs_query::<$db>(filter)
                    .build()
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map($crate::codec::summary_from_row)
                    .collect()
            }

            async fn create_batch(&self, batch: &$crate::BatchRecord) -> $crate::Result<()> {
                insert_batch(self.writer(), batch).await
            }

            async fn get_batch(&self, id: &str) -> $crate::Result<Option<$crate::BatchRecord>> {
                let sql = format!(
                    "SELECT {} FROM batches WHERE id = $1",
                    $crate::codec::BATCH_COLUMNS
                );
                sqlx::query::<$db>(&sql)
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| $crate::codec::batch_from_row(&row))
                    .transpose()
            }

            async fn set_batch_status(
                &self,
                id: &str,
                status: $crate::BatchStatus,
                at_ms: i64,
            ) -> $crate::Result<()> {
                let finished = (status != $crate::BatchStatus::Running).then_some(at_ms);
                let done = sqlx::query::<$db>(
                    "UPDATE batches SET status = $1, finished_at_ms = $2 WHERE id = $3",
                )
                .bind(status.as_str())
                .bind(finished)
                .bind(id)
                .execute(self.writer())
                .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound {
                        kind: "batch",
                        id: id.to_owned(),
                    });
                }
                Ok(())
            }

            async fn batch_recorded_cases(&self, batch_id: &str) -> $crate::Result<Vec<u64>> {
                sqlx::query_scalar::<$db, i64>(
                    "SELECT case_index FROM runs WHERE batch_id = $1 AND case_index IS NOT NULL \
                     ORDER BY case_index",
                )
                .bind(batch_id)
                .fetch_all(self.reader())
                .await?
                .into_iter()
                .map($crate::codec::case_index)
                .collect()
            }

            async fn create_eval(&self, eval: &$crate::EvalRecord) -> $crate::Result<()> {
                sqlx::query::<$db>($crate::eval_codec::INSERT_EVAL)
                    .bind(&eval.id)
                    .bind(&eval.workflow)
                    .bind(&eval.version)
                    .bind(&eval.dataset)
                    .bind(&eval.dataset_hash)
                    .bind(&eval.model_override)
                    .bind(eval.status.as_str())
                    .bind($crate::codec::to_bigint(
                        "evals.total_cases",
                        eval.total_cases,
                    )?)
                    .bind(eval.summary.as_ref().map($crate::codec::json_text))
                    .bind(eval.passed)
                    .bind(eval.created_at_ms)
                    .bind(eval.finished_at_ms)
                    .bind(
                        eval.case_limit
                            .map(|n| $crate::codec::to_bigint("evals.case_limit", n))
                            .transpose()?,
                    )
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn finish_eval(
                &self,
                id: &str,
                status: $crate::EvalStatus,
                summary: &serde_json::Value,
                passed: Option<bool>,
                at_ms: i64,
            ) -> $crate::Result<()> {
                let done = sqlx::query::<$db>($crate::eval_codec::FINISH_EVAL)
                    .bind(status.as_str())
                    .bind($crate::codec::json_text(summary))
                    .bind(passed)
                    .bind($crate::eval_codec::finished_at(status, at_ms))
                    .bind(id)
                    .execute(self.writer())
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::eval_codec::unknown_eval(id));
                }
                Ok(())
            }

            async fn get_eval(&self, id: &str) -> $crate::Result<Option<$crate::EvalRecord>> {
                let sql = format!(
                    "SELECT {} FROM evals WHERE id = $1",
                    $crate::eval_codec::EVAL_COLUMNS
                );
                sqlx::query::<$db>(&sql)
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| $crate::eval_codec::eval_from_row(&row))
                    .transpose()
            }

            async fn list_evals(
                &self,
                workflow: Option<&str>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::EvalRecord>> {
                $crate::eval_codec::list_evals_query::<$db>(workflow, limit)
                    .build()
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map($crate::eval_codec::eval_from_row)
                    .collect()
            }

            async fn insert_eval_cases(
                &self,
                cases: &[$crate::EvalCaseRecord],
            ) -> $crate::Result<()> {
                use $crate::eval_codec;
                if cases.is_empty() {
                    return Ok(());
                }
                // An eval's key never changes once created, so it is read before the write.
                let mut keys = std::collections::HashMap::new();
                for id in eval_codec::eval_ids(cases) {
                    let row = sqlx::query::<$db>(eval_codec::EVAL_KEY)
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?
                        .ok_or_else(|| eval_codec::unknown_eval(id))?;
                    keys.insert(id, eval_codec::eval_key_from_row(&row)?);
                }
                let rows = eval_codec::case_rows(cases, &keys)?;
                self.write_eval_cases(&rows).await
            }

            async fn eval_cases(
                &self,
                eval_id: &str,
                after_line: u64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::EvalCaseRecord>> {
                use $crate::eval_codec;
                let Some(after_line) = eval_codec::after_line_bind(after_line) else {
                    return Ok(Vec::new());
                };
                sqlx::query::<$db>(&eval_codec::EVAL_CASES_PAGE)
                    .bind(eval_id)
                    .bind(after_line)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(eval_codec::eval_case_from_row)
                    .collect()
            }

            async fn cached_eval_case(
                &self,
                workflow: &str,
                version: &str,
                model_override: Option<&str>,
                input_hash: &str,
            ) -> $crate::Result<Option<$crate::EvalCaseRecord>> {
                use $crate::eval_codec::{
                    self, CACHED_CASE_WITHOUT_OVERRIDE, CACHED_CASE_WITH_OVERRIDE,
                };
                let query = match model_override {
                    Some(model) => sqlx::query::<$db>(&CACHED_CASE_WITH_OVERRIDE)
                        .bind(workflow)
                        .bind(version)
                        .bind(model),
                    None => sqlx::query::<$db>(&CACHED_CASE_WITHOUT_OVERRIDE)
                        .bind(workflow)
                        .bind(version),
                };
                query
                    .bind(input_hash)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| eval_codec::eval_case_from_row(&row))
                    .transpose()
            }

            async fn set_baseline(
                &self,
                workflow: &str,
                eval_id: &str,
                at_ms: i64,
            ) -> $crate::Result<()> {
                use $crate::eval_codec;
                let done = sqlx::query::<$db>(eval_codec::SET_BASELINE)
                    .bind(workflow)
                    .bind(eval_id)
                    .bind(at_ms)
                    .execute(self.writer())
                    .await?;
                if done.rows_affected() > 0 {
                    return Ok(());
                }
                let exists = sqlx::query::<$db>(eval_codec::EVAL_EXISTS)
                    .bind(eval_id)
                    .fetch_optional(self.writer())
                    .await?
                    .is_some();
                Err(eval_codec::baseline_refused(eval_id, exists))
            }

            async fn baseline(&self, workflow: &str) -> $crate::Result<Option<String>> {
                Ok(
                    sqlx::query_scalar::<$db, String>($crate::eval_codec::BASELINE)
                        .bind(workflow)
                        .fetch_optional(self.reader())
                        .await?,
                )
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query::<$db>("SELECT 1")
                    .execute(self.reader())
                    .await?;
                Ok(())
            }

            async fn create_api_key(&self, key: &$crate::ApiKeyRecord) -> $crate::Result<()> {
                use $crate::keys;
                let mut tx = self.begin_write($crate::queries::TxLock::KeyNames).await?;
                let live = sqlx::query_scalar::<$db, String>(keys::LIVE_KEY_NAMED)
                    .bind(&key.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if live.is_some() {
                    return Err(keys::duplicate_key(&key.name));
                }
                let limits = keys::limit_columns(&key.limits);
                sqlx::query::<$db>(keys::INSERT_KEY)
                    .bind(&key.id)
                    .bind(&key.name)
                    .bind(key.role.as_str())
                    .bind(&key.team)
                    .bind(&key.key_hash)
                    .bind(&key.prefix)
                    .bind(key.created_at_ms)
                    .bind(key.revoked_at_ms)
                    .bind(limits.0)
                    .bind(limits.1)
                    .bind(limits.2)
                    .bind(limits.3)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_key_limits(
                &self,
                name_or_id: &str,
                limits: &::shopfloor_core::limits::KeyLimits,
            ) -> $crate::Result<$crate::ApiKeyRecord> {
                use $crate::keys;
                let (rpm, tpm, usd, period) = keys::limit_columns(limits);
                let sql = format!("{} RETURNING {}", keys::SET_KEY_LIMITS, keys::KEY_COLUMNS);
                sqlx::query::<$db>(&sql)
                    .bind(rpm)
                    .bind(tpm)
                    .bind(usd)
                    .bind(period)
                    .bind(name_or_id)
                    .fetch_optional(self.writer())
                    .await?
                    .map(|row| keys::key_from_row(&row))
                    .transpose()?
                    .ok_or_else(|| keys::no_live_key(name_or_id))
            }

            async fn api_key_by_hash(
                &self,
                key_hash: &str,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                api_key_where(self.reader(), "key_hash", key_hash).await
            }

            async fn api_key_by_id(
                &self,
                id: &str,
            ) -> $crate::Result<Option<$crate::ApiKeyRecord>> {
                api_key_where(self.reader(), "id", id).await
            }

            async fn list_api_keys(&self) -> $crate::Result<Vec<$crate::ApiKeyRecord>> {
                use $crate::keys;
                let sql = format!(
                    "SELECT {} FROM api_keys ORDER BY created_at_ms, id",
                    keys::KEY_COLUMNS
                );
                sqlx::query::<$db>(&sql)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(keys::key_from_row)
                    .collect()
            }

            async fn revoke_api_key(
                &self,
                name_or_id: &str,
                at_ms: i64,
            ) -> $crate::Result<$crate::ApiKeyRecord> {
                use $crate::keys;
                let sql = format!("{} RETURNING {}", keys::REVOKE_KEY, keys::KEY_COLUMNS);
                sqlx::query::<$db>(&sql)
                    .bind(at_ms)
                    .bind(name_or_id)
                    .fetch_optional(self.writer())
                    .await?
                    .map(|row| keys::key_from_row(&row))
                    .transpose()?
                    .ok_or_else(|| keys::no_live_key(name_or_id))
            }

            async fn append_audit(
                &self,
                entry: $crate::NewAuditEntry,
            ) -> $crate::Result<$crate::AuditEntry> {
                use $crate::audit;
                let mut tx = self
                    .begin_write($crate::queries::TxLock::AuditChain)
                    .await?;
                let last = sqlx::query::<$db>(audit::LAST_AUDIT)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| audit::last_from_row(&row))
                    .transpose()?;
                let entry = $crate::AuditEntry::chain(entry, last);
                sqlx::query::<$db>(audit::INSERT_AUDIT)
                    .bind($crate::codec::to_bigint("audit_log.seq", entry.seq)?)
                    .bind(entry.at_ms)
                    .bind(&entry.actor)
                    .bind(entry.action.as_str())
                    .bind(&entry.subject)
                    .bind($crate::codec::json_text(&entry.detail))
                    .bind(&entry.prev_hash)
                    .bind(&entry.hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(entry)
            }

            async fn audit_entries(
                &self,
                after_seq: u64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::AuditEntry>> {
                use $crate::audit;
                let sql = format!(
                    "SELECT {} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                    audit::AUDIT_COLUMNS
                );
                sqlx::query::<$db>(&sql)
                    .bind($crate::codec::to_bigint("audit_log.seq", after_seq)?)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(audit::audit_from_row)
                    .collect()
            }

            async fn latest_audit(
                &self,
                action: $crate::AuditAction,
                subject: &str,
            ) -> $crate::Result<Option<$crate::AuditEntry>> {
                audit_at_end(self.reader(), action, subject, "DESC").await
            }

            async fn first_audit(
                &self,
                action: $crate::AuditAction,
                subject: &str,
            ) -> $crate::Result<Option<$crate::AuditEntry>> {
                audit_at_end(self.reader(), action, subject, "ASC").await
            }

            async fn enqueue_batch(
                &self,
                batch: &$crate::BatchRecord,
                cases: &[(u64, serde_json::Value)],
            ) -> $crate::Result<()> {
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                insert_batch(&mut *tx, batch).await?;
                Self::queue_cases(&mut tx, &batch.id, cases).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_batch_cases(
                &self,
                worker: &str,
                limit: u32,
                lease_until_ms: i64,
                now_ms: i64,
            ) -> $crate::Result<Vec<$crate::ClaimedCase>> {
                let claim = $crate::queue::Claim {
                    worker,
                    limit,
                    lease_until_ms,
                    now_ms,
                };
                self.claim_cases(claim).await
            }

            async fn extend_batch_leases(
                &self,
                worker: &str,
                lease_until_ms: i64,
            ) -> $crate::Result<u64> {
                Ok(sqlx::query::<$db>($crate::queue::EXTEND_LEASES)
                    .bind(lease_until_ms)
                    .bind(worker)
                    .execute(self.writer())
                    .await?
                    .rows_affected())
            }

            async fn batch_progress(&self, batch_id: &str) -> $crate::Result<(u64, u64)> {
                use $crate::queue;
                let total = sqlx::query_scalar::<$db, i64>(queue::BATCH_TOTAL)
                    .bind(batch_id)
                    .fetch_optional(self.reader())
                    .await?
                    .ok_or_else(|| $crate::StoreError::NotFound {
                        kind: "batch",
                        id: batch_id.to_string(),
                    })?;
                let recorded = sqlx::query_scalar::<$db, i64>(queue::BATCH_RECORDED)
                    .bind(batch_id)
                    .fetch_one(self.reader())
                    .await?;
                Ok((
                    $crate::codec::non_negative("batches", "total_cases", total)?,
                    $crate::codec::non_negative("runs", "count", recorded)?,
                ))
            }

            async fn batch_runs(
                &self,
                batch_id: &str,
                after_case: u64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::RunRecord>> {
                let sql = format!(
                    "SELECT {} FROM runs WHERE batch_id = $1 AND case_index > $2 \
                     ORDER BY case_index LIMIT $3",
                    $crate::codec::RUN_COLUMNS
                );
                sqlx::query::<$db>(&sql)
                    .bind(batch_id)
                    .bind($crate::codec::to_bigint("runs.case_index", after_case)?)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(|row| $crate::codec::run_from_row(row, Vec::new(), None))
                    .collect()
            }
        }
    };
}
pub(crate) use store_impl;
