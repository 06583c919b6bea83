//! `Idempotency-Key`: the first answer to a request, kept per API key and key, so that a
//! retry with the same key and body is answered from here instead of calling a model again.
//! Only the SHA-256 of a request body is stored; the answer is stored whole (it is what the
//! retry must get back).

use async_trait::async_trait;

use crate::Result;

/// An answer kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    pub status: u16,
    pub content_type: String,
    pub run_id: Option<String>,
    pub model: Option<String>,
    pub body: String,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is this request's now: run it, then keep or release the answer.
    Fresh,
    /// The same request was answered: this is the answer.
    Answered(KeptAnswer),
    /// The same request is still being answered.
    InFlight,
    /// The key was used with another body or route.
    Mismatch,
}

/// A claim: whose key, which key, for what.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyRequest<'a> {
    pub api_key_id: &'a str,
    pub key: &'a str,
    /// `METHOD PATH`.
    pub route: &'a str,
    /// Hex SHA-256 of the body.
    pub body_hash: &'a str,
    pub now_ms: i64,
    /// A key first used before this is forgotten: the request is new again.
    pub expired_before_ms: i64,
    /// A request still in flight since before this is taken to have died with its server.
    pub abandoned_before_ms: i64,
}

/// The idempotency part of the store.
#[async_trait]
pub trait IdempotencyStore {
    /// Claim `request.key` for this request, or say what holds it.
    async fn claim_idempotency(&self, request: &IdempotencyRequest<'_>)
        -> Result<IdempotencyClaim>;

    /// Keep the answer of a claimed key.
    async fn keep_idempotent_answer(
        &self,
        api_key_id: &str,
        key: &str,
        answer: &KeptAnswer,
    ) -> Result<()>;

    /// Let a claimed key go unanswered (the request failed): a retry runs it again.
    async fn release_idempotency(&self, api_key_id: &str, key: &str) -> Result<()>;
}

/// `impl IdempotencyStore for $store` over `$db`.
macro_rules! idempotency_store_impl {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::idempotency::IdempotencyStore for $store {
            async fn claim_idempotency(
                &self,
                request: &$crate::idempotency::IdempotencyRequest<'_>,
            ) -> $crate::Result<$crate::idempotency::IdempotencyClaim> {
                use $crate::codec::Columns;
                use $crate::idempotency::{IdempotencyClaim, KeptAnswer};
                // Taken over at once when the row is past its time: forgotten, or abandoned.
                let inserted = sqlx::query::<$db>(
                    "INSERT INTO idempotency_keys (api_key_id, idem_key, route, body_hash, \
                     created_at_ms) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (api_key_id, idem_key) DO UPDATE SET route = $3, \
                     body_hash = $4, created_at_ms = $5, status = NULL, content_type = NULL, \
                     run_id = NULL, model = NULL, body = NULL \
                     WHERE idempotency_keys.created_at_ms < $6 \
                     OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at_ms < $7)",
                )
                .bind(request.api_key_id)
                .bind(request.key)
                .bind(request.route)
                .bind(request.body_hash)
                .bind(request.now_ms)
                .bind(request.expired_before_ms)
                .bind(request.abandoned_before_ms)
                .execute(self.writer())
                .await?
                .rows_affected();
                if inserted == 1 {
                    return Ok(IdempotencyClaim::Fresh);
                }
                let row = sqlx::query::<$db>(
                    "SELECT route, body_hash, status, content_type, run_id, model, body \
                     FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2",
                )
                .bind(request.api_key_id)
                .bind(request.key)
                .fetch_optional(self.writer())
                .await?;
                let Some(row) = row else {
                    // Released between the two statements: the next retry claims it.
                    return Ok(IdempotencyClaim::InFlight);
                };
                if row.text("route")? != request.route
                    || row.text("body_hash")? != request.body_hash
                {
                    return Ok(IdempotencyClaim::Mismatch);
                }
                Ok(match row.opt_int("status")? {
                    None => IdempotencyClaim::InFlight,
                    Some(status) => IdempotencyClaim::Answered(KeptAnswer {
                        status: status as u16,
                        content_type: row.opt_text("content_type")?.unwrap_or_default(),
                        run_id: row.opt_text("run_id")?,
                        model: row.opt_text("model")?,
                        body: row.opt_text("body")?.unwrap_or_default(),
                    }),
                })
            }

            async fn keep_idempotent_answer(
                &self,
                api_key_id: &str,
                key: &str,
                answer: &$crate::idempotency::KeptAnswer,
            ) -> $crate::Result<()> {
                sqlx::query::<$db>(
                    "UPDATE idempotency_keys SET status = $3, content_type = $4, run_id = $5, \
                     model = $6, body = $7 WHERE api_key_id = $1 AND idem_key = $2",
                )
                .bind(api_key_id)
                .bind(key)
                .bind(i64::from(answer.status))
                .bind(&answer.content_type)
                .bind(&answer.run_id)
                .bind(&answer.model)
                .bind(&answer.body)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn release_idempotency(&self, api_key_id: &str, key: &str) -> $crate::Result<()> {
                sqlx::query::<$db>(
                    "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND idem_key = $2 \
                     AND status IS NULL",
                )
                .bind(api_key_id)
                .bind(key)
                .execute(self.writer())
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use idempotency_store_impl;
