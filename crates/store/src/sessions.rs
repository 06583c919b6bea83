//! The dashboard's sign-in: one-time login tokens and the sessions they start. Only SHA-256s
//! of tokens are stored; a session is looked up with its API key, so revoking the key ends
//! every session it started.

use async_trait::async_trait;

use crate::keys::ApiKeyRecord;
use crate::Result;

/// A dashboard session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the cookie's value.
    pub session_hash: String,
    pub key_id: String,
    /// The token every form of this session must send back.
    pub csrf_token: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// The sign-in part of the store.
#[async_trait]
pub trait SessionStore {
    /// Keep a one-time login token for `key_id`, valid until `expires_at_ms`.
    async fn create_login_token(
        &self,
        token_hash: &str,
        key_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()>;

    /// Use a login token: the key it signs in, once, while it is valid. A second use, an
    /// expired token or an unknown one is `None`.
    async fn redeem_login_token(&self, token_hash: &str, now_ms: i64) -> Result<Option<String>>;

    async fn create_session(&self, session: &SessionRecord) -> Result<()>;

    /// A live session and its key (revoked or not: the caller decides), or `None` when there
    /// is none or it has expired at `now_ms`.
    async fn session(
        &self,
        session_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(SessionRecord, ApiKeyRecord)>>;

    /// Sign out.
    async fn end_session(&self, session_hash: &str) -> Result<()>;
}

/// `impl SessionStore for $store` over `$db`.
macro_rules! session_store_impl {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::sessions::SessionStore for $store {
            async fn create_login_token(
                &self,
                token_hash: &str,
                key_id: &str,
                now_ms: i64,
                expires_at_ms: i64,
            ) -> $crate::Result<()> {
                sqlx::query::<$db>(
                    "INSERT INTO login_tokens (token_hash, key_id, created_at_ms, expires_at_ms) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(key_id)
                .bind(now_ms)
                .bind(expires_at_ms)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn redeem_login_token(
                &self,
                token_hash: &str,
                now_ms: i64,
            ) -> $crate::Result<Option<String>> {
                use $crate::codec::Columns;
                // One statement: of two concurrent uses, one sees `used_at_ms` set.
                let row = sqlx::query::<$db>(
                    "UPDATE login_tokens SET used_at_ms = $2 WHERE token_hash = $1 \
                     AND used_at_ms IS NULL AND expires_at_ms > $2 RETURNING key_id",
                )
                .bind(token_hash)
                .bind(now_ms)
                .fetch_optional(self.writer())
                .await?;
                row.map(|row| row.text("key_id")).transpose()
            }

            async fn create_session(
                &self,
                session: &$crate::sessions::SessionRecord,
            ) -> $crate::Result<()> {
                sqlx::query::<$db>(
                    "INSERT INTO dashboard_sessions (session_hash, key_id, csrf_token, \
                     created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&session.session_hash)
                .bind(&session.key_id)
                .bind(&session.csrf_token)
                .bind(session.created_at_ms)
                .bind(session.expires_at_ms)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn session(
                &self,
                session_hash: &str,
                now_ms: i64,
            ) -> $crate::Result<
                Option<($crate::sessions::SessionRecord, $crate::keys::ApiKeyRecord)>,
            > {
                use $crate::codec::Columns;
                let sql = format!(
                    "SELECT s.session_hash, s.csrf_token, s.created_at_ms AS session_created_at_ms, \
                     s.expires_at_ms, {} FROM dashboard_sessions s \
                     JOIN api_keys k ON k.id = s.key_id \
                     WHERE s.session_hash = $1 AND s.expires_at_ms > $2",
                    $crate::keys::KEY_COLUMNS
                        .split(", ")
                        .map(|c| format!("k.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let row = sqlx::query::<$db>(&sql)
                    .bind(session_hash)
                    .bind(now_ms)
                    .fetch_optional(self.reader())
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let key = $crate::keys::key_from_row(&row)?;
                let session = $crate::sessions::SessionRecord {
                    session_hash: row.text("session_hash")?,
                    key_id: key.id.clone(),
                    csrf_token: row.text("csrf_token")?,
                    created_at_ms: row.int("session_created_at_ms")?,
                    expires_at_ms: row.int("expires_at_ms")?,
                };
                Ok(Some((session, key)))
            }

            async fn end_session(&self, session_hash: &str) -> $crate::Result<()> {
                sqlx::query::<$db>("DELETE FROM dashboard_sessions WHERE session_hash = $1")
                    .bind(session_hash)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use session_store_impl;
