//! Who runs a batch: a lease on the batch row (`runner`, `runner_until_ms`) that a CLI run
//! takes before its first case and renews while it runs, so a second `run --resume` of the
//! same batch is refused, naming the holder, instead of paying for every case twice.

use async_trait::async_trait;

use crate::Result;

/// The batch-lease part of the store.
#[async_trait]
pub trait BatchLeaseStore {
    /// Take or renew the lease of batch `id` for `holder` until `until_ms`: granted when nobody
    /// holds it at `now_ms`, when `holder` already does, or when `replacing` (a holder known
    /// to be gone) does. `None` when granted, else who holds it and until when.
    async fn lease_batch(
        &self,
        id: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
        replacing: Option<&str>,
    ) -> Result<Option<(String, i64)>>;

    /// Give the lease up, if `holder` has it.
    async fn release_batch(&self, id: &str, holder: &str) -> Result<()>;
}

/// `impl BatchLeaseStore for $store` over `$db`.
macro_rules! batch_lease_store_impl {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::batch_lease::BatchLeaseStore for $store {
            async fn lease_batch(
                &self,
                id: &str,
                holder: &str,
                now_ms: i64,
                until_ms: i64,
                replacing: Option<&str>,
            ) -> $crate::Result<Option<(String, i64)>> {
                use $crate::codec::Columns;
                let granted = sqlx::query::<$db>(
                    "UPDATE batches SET runner = $2, runner_until_ms = $3 WHERE id = $1 \
                     AND (runner IS NULL OR runner_until_ms <= $4 OR runner = $2 OR runner = $5)",
                )
                .bind(id)
                .bind(holder)
                .bind(until_ms)
                .bind(now_ms)
                .bind(replacing.unwrap_or(""))
                .execute(self.writer())
                .await?
                .rows_affected();
                if granted > 0 {
                    return Ok(None);
                }
                let row = sqlx::query::<$db>(
                    "SELECT runner, runner_until_ms FROM batches WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                match row {
                    Some(row) => Ok(Some((
                        row.opt_text("runner")?.unwrap_or_default(),
                        row.opt_int("runner_until_ms")?.unwrap_or(0),
                    ))),
                    None => Err($crate::StoreError::NotFound {
                        kind: "batch",
                        id: id.to_string(),
                    }),
                }
            }

            async fn release_batch(&self, id: &str, holder: &str) -> $crate::Result<()> {
                sqlx::query::<$db>(
                    "UPDATE batches SET runner = NULL, runner_until_ms = NULL \
                     WHERE id = $1 AND runner = $2",
                )
                .bind(id)
                .bind(holder)
                .execute(self.writer())
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use batch_lease_store_impl;
