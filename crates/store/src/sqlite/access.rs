//! API keys, the audit log and the batch queue in SQLite. The `Store` impl in the parent
//! delegates here. One writer connection and `BEGIN IMMEDIATE` serialise every write, so
//! appends and claims need no further locking.

use serde_json::Value;
use sqlx::Sqlite;

use super::SqliteStore;
use crate::access::shared_access_queries;
use crate::access::sql::{self, AUDIT_COLUMNS, KEY_COLUMNS};
use crate::codec::{self, to_bigint};
use crate::{
    ApiKeyRecord, AuditEntry, BatchRecord, ClaimedCase, NewAuditEntry, Result, StoreError,
};

pub(super) async fn create_api_key(store: &SqliteStore, key: &ApiKeyRecord) -> Result<()> {
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let live = sqlx::query_scalar::<Sqlite, String>(sql::LIVE_KEY_NAMED)
        .bind(&key.name)
        .fetch_optional(&mut *tx)
        .await?;
    if live.is_some() {
        return Err(sql::duplicate_key(&key.name));
    }
    sqlx::query::<Sqlite>(sql::INSERT_KEY)
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.role)
        .bind(&key.team)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(key.created_at_ms)
        .bind(key.revoked_at_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn append_audit(store: &SqliteStore, entry: NewAuditEntry) -> Result<AuditEntry> {
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let last = sqlx::query_as::<Sqlite, (i64, String)>(sql::LAST_AUDIT)
        .fetch_optional(&mut *tx)
        .await?
        .map(|(seq, hash)| Ok::<_, StoreError>((codec_seq(seq)?, hash)))
        .transpose()?;
    let entry = AuditEntry::chain(entry, last);
    sqlx::query::<Sqlite>(sql::INSERT_AUDIT)
        .bind(to_bigint("audit_log.seq", entry.seq)?)
        .bind(entry.at_ms)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.subject)
        .bind(codec::json_text(&entry.detail))
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(entry)
}

fn codec_seq(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| StoreError::Corrupt {
        table: "audit_log",
        column: "seq",
        message: format!("{seq} is negative"),
    })
}

pub(super) async fn enqueue_batch(
    store: &SqliteStore,
    batch: &BatchRecord,
    cases: &[(u64, Value)],
) -> Result<()> {
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    super::insert_batch(&mut *tx, batch).await?;
    for (index, input) in cases {
        sqlx::query::<Sqlite>(sql::INSERT_CASE)
            .bind(&batch.id)
            .bind(to_bigint("batch_cases.case_index", *index)?)
            .bind(codec::json_text(input))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn claim_batch_cases(
    store: &SqliteStore,
    worker: &str,
    limit: u32,
    lease_until_ms: i64,
    now_ms: i64,
) -> Result<Vec<ClaimedCase>> {
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let claimed = sqlx::query::<Sqlite>(
        "SELECT c.batch_id, b.workflow, c.case_index, c.input, b.model_override \
         FROM batch_cases c JOIN batches b ON b.id = c.batch_id \
         WHERE c.lease_until_ms < $1 AND b.status = 'running' \
         ORDER BY c.batch_id, c.case_index LIMIT $2",
    )
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(sql::claimed_from_row)
    .collect::<Result<Vec<_>>>()?;
    for case in &claimed {
        sqlx::query::<Sqlite>(
            "UPDATE batch_cases SET lease_owner = $1, lease_until_ms = $2 \
             WHERE batch_id = $3 AND case_index = $4",
        )
        .bind(worker)
        .bind(lease_until_ms)
        .bind(&case.batch_id)
        .bind(to_bigint("batch_cases.case_index", case.case_index)?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(claimed)
}

shared_access_queries!(SqliteStore, Sqlite, read_pool, write_pool);
