//! Retention (`[retention]` in `shopfloor.toml`): old production runs lose their texts, then
//! the runs themselves, in bounded batches so that the run writer never waits long behind
//! them. Eval runs (evals keep their own history), held runs (a review still waits on them)
//! and the rollups (migration 16) are never touched, so outcomes, drift references and the
//! portfolio keep the history's figures after its runs are gone. Reviews and their decisions
//! are kept: they are the evidence behind corrections.

use async_trait::async_trait;

use crate::Result;

/// What retention removes from runs.
#[async_trait]
pub trait RetentionStore {
    /// Strip the texts of at most `limit` production runs made before `before_ms`, oldest
    /// first: input and prompt become JSON `null`; the output, the model's raw answers and
    /// the error text are removed (a label cannot be told from a short text here, so every
    /// output goes; the label counts stay in the rollups); the run's figures (status, model,
    /// tokens, cost, latency, caller) stay. Runs stripped once are not
    /// read again (a mark remembers how far stripping got). Returns the runs stripped.
    async fn strip_run_texts(&self, before_ms: i64, limit: u32) -> Result<u64>;

    /// Delete at most `limit` production runs made before `before_ms` that no review waits
    /// on, oldest first, with their attempts. Returns the runs deleted.
    async fn delete_runs_before(&self, before_ms: i64, limit: u32) -> Result<u64>;
}

/// The production runs retention may strip or delete: not an eval's, and not held for review.
pub(crate) const RETAINED: &str = "origin <> 'eval' AND status <> 'held'";

/// `impl RetentionStore for $store` over `$db`.
macro_rules! retention_store_impl {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::retention::RetentionStore for $store {
            async fn strip_run_texts(&self, before_ms: i64, limit: u32) -> $crate::Result<u64> {
                use $crate::codec::Columns;
                use $crate::retention::RETAINED;
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                // How far stripping got: the last stripped run's (created_at_ms, id).
                let mark = sqlx::query::<$db>(
                    "SELECT up_to_ms, up_to_id FROM retention_marks WHERE name = 'texts'",
                )
                .fetch_optional(&mut *tx)
                .await?;
                let (mark_ms, mark_id) = match mark {
                    Some(row) => (row.int("up_to_ms")?, row.text("up_to_id")?),
                    None => (i64::MIN, String::new()),
                };
                let rows = sqlx::query::<$db>(&format!(
                    "SELECT id, created_at_ms FROM runs WHERE created_at_ms < $1 \
                     AND (created_at_ms > $2 OR (created_at_ms = $2 AND id > $3)) AND {RETAINED} \
                     ORDER BY created_at_ms, id LIMIT $4"
                ))
                .bind(before_ms)
                .bind(mark_ms)
                .bind(&mark_id)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                let Some(last) = rows.last() else {
                    return Ok(0);
                };
                let (last_ms, last_id) = (last.int("created_at_ms")?, last.text("id")?);
                let ids = rows
                    .iter()
                    .map(|row| row.text("id"))
                    .collect::<$crate::Result<Vec<_>>>()?;
                for chunk in ids.chunks(500) {
                    let list = $crate::retention::placeholders(chunk.len());
                    let runs_sql = format!(
                        "UPDATE runs SET input = 'null', prompt = 'null', raw_output = NULL, \
                         output = NULL, error = NULL WHERE id IN ({list})"
                    );
                    let attempts_sql = format!(
                        "UPDATE attempts SET raw_output = NULL, error = NULL WHERE run_id IN ({list})"
                    );
                    let mut runs = sqlx::query::<$db>(&runs_sql);
                    let mut attempts = sqlx::query::<$db>(&attempts_sql);
                    for id in chunk {
                        runs = runs.bind(id);
                        attempts = attempts.bind(id);
                    }
                    runs.execute(&mut *tx).await?;
                    attempts.execute(&mut *tx).await?;
                }
                sqlx::query::<$db>(
                    "INSERT INTO retention_marks (name, up_to_ms, up_to_id) VALUES ('texts', $1, $2) \
                     ON CONFLICT (name) DO UPDATE SET up_to_ms = excluded.up_to_ms, \
                     up_to_id = excluded.up_to_id",
                )
                .bind(last_ms)
                .bind(&last_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(ids.len() as u64)
            }

            async fn delete_runs_before(&self, before_ms: i64, limit: u32) -> $crate::Result<u64> {
                use $crate::retention::RETAINED;
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                // Attempts go with their runs (ON DELETE CASCADE).
                let deleted = sqlx::query::<$db>(&format!(
                    "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
                     WHERE created_at_ms < $1 AND {RETAINED} ORDER BY created_at_ms, id LIMIT $2)"
                ))
                .bind(before_ms)
                .bind(i64::from(limit))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(deleted)
            }
        }
    };
}

pub(crate) use retention_store_impl;

/// `$1, $2, …, $n`.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
