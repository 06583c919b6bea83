//! Signing in to the dashboard: a one-time link made from the command line (`shopfloor
//! dashboard link`, as Jupyter prints one), or an API key pasted into the login form. Either
//! starts a session that belongs to an API key: its role is the key's, and revoking the key
//! ends it. Only SHA-256s of links and sessions are stored.

use rand::RngCore;
use shopfloor_core::access::Role;
use shopfloor_store::{ApiKeyRecord, SessionRecord};

use crate::audit_detail::{self, AuditDetail};
use crate::governance::hash_key;
use crate::{now_ms, Engine, EngineError};

/// A one-time sign-in link is valid this long.
pub const LOGIN_LINK_MINUTES: i64 = 10;
/// A dashboard session lasts this long.
pub const SESSION_HOURS: i64 = 12;

/// A one-time sign-in token, for `/login?token=…`.
#[derive(Debug, Clone)]
pub struct LoginLink {
    /// Shown once, never stored.
    pub token: String,
    /// The key the session will act as.
    pub key: ApiKeyRecord,
    /// Whether the key was made for this link (else a live key of that name was reused).
    pub created_key: bool,
    pub expires_at_ms: i64,
}

/// A session just started.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie's value; shown once, never stored.
    pub secret: String,
    pub record: SessionRecord,
    pub key: ApiKeyRecord,
}

/// 32 random bytes as hex, after `prefix`.
fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

impl Engine {
    /// A one-time sign-in token for the live key named `name`, made with `role` if there is
    /// none. A live key of that name with another role is refused rather than changed.
    pub async fn login_link(
        &self,
        name: &str,
        role: Role,
        actor: &str,
    ) -> Result<LoginLink, EngineError> {
        let live = self
            .store
            .list_api_keys()
            .await?
            .into_iter()
            .find(|k| k.name == name && k.revoked_at_ms.is_none());
        let (key, created_key) = match live {
            Some(key) if key.role == role => (key, false),
            Some(key) => {
                return Err(EngineError::InvalidInput(format!(
                    "the live API key named \"{name}\" has the {} role, not {role}; pick another --name, or revoke it first (`shopfloor keys revoke {name}`)",
                    key.role
                )))
            }
            None => (self.create_key(name, role, None, actor).await?.record, true),
        };
        let token = random_token("sfl_");
        let now = now_ms();
        let expires_at_ms = now + LOGIN_LINK_MINUTES * 60_000;
        self.store
            .create_login_token(&hash_key(&token), &key.id, now, expires_at_ms)
            .await?;
        let detail = AuditDetail::LoginLink(audit_detail::LoginLink {
            key_id: key.id.clone(),
            role: key.role,
            expires_at_ms,
        });
        self.audit(actor, &key.name, detail).await?;
        Ok(LoginLink {
            token,
            key,
            created_key,
            expires_at_ms,
        })
    }

    /// Start a session with a one-time token; `None` when it is unknown, used or expired, or
    /// its key was revoked.
    pub async fn sign_in_with_token(&self, token: &str) -> Result<Option<NewSession>, EngineError> {
        let Some(key_id) = self
            .store
            .redeem_login_token(&hash_key(token.trim()), now_ms())
            .await?
        else {
            return Ok(None);
        };
        let key = self
            .store
            .list_api_keys()
            .await?
            .into_iter()
            .find(|k| k.id == key_id && k.revoked_at_ms.is_none());
        match key {
            Some(key) => self.start_session(key).await.map(Some),
            None => Ok(None),
        }
    }

    /// Start a session with an API key; `None` when the key is unknown or revoked.
    pub async fn sign_in_with_key(&self, secret: &str) -> Result<Option<NewSession>, EngineError> {
        match self.store.api_key_by_hash(&hash_key(secret.trim())).await? {
            Some(key) if key.revoked_at_ms.is_none() => self.start_session(key).await.map(Some),
            _ => Ok(None),
        }
    }

    async fn start_session(&self, key: ApiKeyRecord) -> Result<NewSession, EngineError> {
        let secret = random_token("");
        let now = now_ms();
        let record = SessionRecord {
            session_hash: hash_key(&secret),
            key_id: key.id.clone(),
            csrf_token: random_token(""),
            created_at_ms: now,
            expires_at_ms: now + SESSION_HOURS * 3_600_000,
        };
        self.store.create_session(&record).await?;
        Ok(NewSession {
            secret,
            record,
            key,
        })
    }

    /// The live session a cookie holds, with its key; `None` when there is none, it expired
    /// or its key was revoked.
    pub async fn session(
        &self,
        secret: &str,
    ) -> Result<Option<(SessionRecord, ApiKeyRecord)>, EngineError> {
        Ok(self
            .store
            .session(&hash_key(secret), now_ms())
            .await?
            .filter(|(_, key)| key.revoked_at_ms.is_none()))
    }

    /// End the session a cookie holds.
    pub async fn sign_out(&self, secret: &str) -> Result<(), EngineError> {
        Ok(self.store.end_session(&hash_key(secret)).await?)
    }
}
