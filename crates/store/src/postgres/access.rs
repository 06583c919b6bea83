//! API keys, the audit log and the batch queue in PostgreSQL, shared by many replicas. The
//! `Store` impl in the parent delegates here. Audit appends and key creation take a
//! transaction-scoped advisory lock; batch claims use `FOR UPDATE SKIP LOCKED`.

use serde_json::Value;
use sqlx::Postgres;

use super::PostgresStore;
use crate::access::shared_access_queries;
use crate::access::sql::{self, AUDIT_COLUMNS, KEY_COLUMNS};
use crate::codec::{self, to_bigint};
use crate::{
    ApiKeyRecord, AuditEntry, BatchRecord, ClaimedCase, NewAuditEntry, Result, StoreError,
};

/// Serialises key creation (name check, then insert) across replicas.
const KEYS_LOCK_KEY: i64 = 0x5e0f_100a_0002;
/// Serialises audit appends across replicas, so that numbering and chaining stay linear.
const AUDIT_LOCK_KEY: i64 = 0x5e0f_100a_0003;

async fn lock(tx: &mut sqlx::PgConnection, key: i64) -> Result<()> {
    sqlx::query::<Postgres>("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(tx)
        .await?;
    Ok(())
}

pub(super) async fn create_api_key(store: &PostgresStore, key: &ApiKeyRecord) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    lock(&mut tx, KEYS_LOCK_KEY).await?;
    let live = sqlx::query_scalar::<Postgres, String>(sql::LIVE_KEY_NAMED)
        .bind(&key.name)
        .fetch_optional(&mut *tx)
        .await?;
    if live.is_some() {
        return Err(sql::duplicate_key(&key.name));
    }
    sqlx::query::<Postgres>(sql::INSERT_KEY)
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

pub(super) async fn append_audit(
    store: &PostgresStore,
    entry: NewAuditEntry,
) -> Result<AuditEntry> {
    let mut tx = store.pool.begin().await?;
    lock(&mut tx, AUDIT_LOCK_KEY).await?;
    let last = sqlx::query_as::<Postgres, (i64, String)>(sql::LAST_AUDIT)
        .fetch_optional(&mut *tx)
        .await?
        .map(|(seq, hash)| Ok::<_, StoreError>((codec_seq(seq)?, hash)))
        .transpose()?;
    let entry = AuditEntry::chain(entry, last);
    sqlx::query::<Postgres>(sql::INSERT_AUDIT)
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
    store: &PostgresStore,
    batch: &BatchRecord,
    cases: &[(u64, Value)],
) -> Result<()> {
    let mut tx = store.pool.begin().await?;
    super::insert_batch(&mut *tx, batch).await?;
    let indexes = cases
        .iter()
        .map(|(index, _)| to_bigint("batch_cases.case_index", *index))
        .collect::<Result<Vec<_>>>()?;
    let inputs: Vec<String> = cases
        .iter()
        .map(|(_, input)| codec::json_text(input))
        .collect();
    sqlx::query::<Postgres>(
        "INSERT INTO batch_cases (batch_id, case_index, input, lease_owner, lease_until_ms) \
         SELECT $1, i, x, NULL, 0 FROM UNNEST($2::bigint[], $3::text[]) AS t(i, x)",
    )
    .bind(&batch.id)
    .bind(indexes)
    .bind(inputs)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn claim_batch_cases(
    store: &PostgresStore,
    worker: &str,
    limit: u32,
    lease_until_ms: i64,
    now_ms: i64,
) -> Result<Vec<ClaimedCase>> {
    // SKIP LOCKED: replicas claiming at once each take rows the others have not locked,
    // instead of waiting for them or taking the same ones.
    sqlx::query::<Postgres>(
        "WITH picked AS ( \
             SELECT c.batch_id, c.case_index FROM batch_cases c \
             JOIN batches b ON b.id = c.batch_id \
             WHERE c.lease_until_ms < $1 AND b.status = 'running' \
             ORDER BY c.batch_id, c.case_index LIMIT $2 \
             FOR UPDATE OF c SKIP LOCKED) \
         UPDATE batch_cases c SET lease_owner = $3, lease_until_ms = $4 \
         FROM picked, batches b \
         WHERE c.batch_id = picked.batch_id AND c.case_index = picked.case_index \
           AND b.id = c.batch_id \
         RETURNING c.batch_id, b.workflow, c.case_index, c.input, b.model_override",
    )
    .bind(now_ms)
    .bind(i64::from(limit))
    .bind(worker)
    .bind(lease_until_ms)
    .fetch_all(&store.pool)
    .await?
    .iter()
    .map(sql::claimed_from_row)
    .collect()
}

shared_access_queries!(PostgresStore, Postgres, pool_ref, pool_ref);
