//! Who is calling: a bearer API key, looked up by its SHA-256, gives a key id, a role and a
//! team. Each route declares what it asks of the caller (its [`Access`] in
//! [`ROUTES`](crate::ROUTES)); the router checks it with [`guard`] before the handler runs, and
//! the role matrix in `shopfloor_core::access` decides.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shopfloor_core::access::{Permission, Role};
use shopfloor_core::limits::KeyLimits;
use shopfloor_engine::store_types::{ApiKeyRecord, Caller};

use crate::error::ApiError;
use crate::routes::Route;
use crate::AppState;

/// What a route asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed (health checks for load balancers and orchestrators).
    Public,
    /// A key whose role has this permission.
    Needs(Permission),
    /// A key whose role has this permission; or, for a key that may run workflows or call
    /// models, only what that key itself made.
    NeedsOrOwn(Permission),
}

impl Access {
    /// The permission asked for; `None` for a public route.
    pub fn permission(self) -> Option<Permission> {
        match self {
            Access::Public => None,
            Access::Needs(p) | Access::NeedsOrOwn(p) => Some(p),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub key_id: String,
    /// The key's name (a person or a service).
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    /// Granted only because the route lets a key read what it made itself: the handler must
    /// check that it did.
    pub own_only: bool,
    /// The key's rate limits and budget, checked before a model is called.
    pub limits: KeyLimits,
}

impl Principal {
    /// The caller recorded on runs: the end user the client named, else the key's name.
    pub fn caller(&self, user: Option<&str>) -> Caller {
        Caller {
            key_id: self.key_id.clone(),
            user: Some(
                user.filter(|u| !u.trim().is_empty())
                    .unwrap_or(&self.name)
                    .to_string(),
            ),
            team: self.team.clone(),
        }
    }

    /// Whether this caller may see something `owner` (a key id) made.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        !self.own_only || owner == Some(self.key_id.as_str())
    }
}

/// Keys recently looked up, so that a busy server does not ask the store on every request.
/// A revoked key stops working within the cache's time to live.
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, (ApiKeyRecord, Instant)>>,
}

/// Entries kept at most; the cache is cleared when full (keys are few, attackers' guesses many).
const MAX_CACHED_KEYS: usize = 10_000;

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<ApiKeyRecord> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(key, _)| key.clone())
    }

    fn put(&self, hash: String, key: ApiKeyRecord) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(hash, (key, Instant::now()));
    }
}

/// The bearer token of a request: `Authorization: Bearer KEY` (or `x-api-key: KEY`).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().ok()?.trim();
        let (scheme, token) = text.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl AppState {
    /// Authenticate the request and check that its key may use `route`.
    async fn authorize(&self, headers: &HeaderMap, route: &Route) -> Result<Principal, ApiError> {
        let Some(permission) = route.access.permission() else {
            return Err(ApiError::internal(format!(
                "{route:?} is public: nobody is authorized for it"
            )));
        };
        let Some(secret) = bearer(headers) else {
            return Err(ApiError::unauthorized(
                "no API key: send it as `Authorization: Bearer KEY` (create one with `shopfloor keys create`)",
            ));
        };
        let key = self.key_for(secret).await?;
        let role = key.role;
        let mut principal = Principal {
            key_id: key.id,
            name: key.name,
            role,
            team: key.team,
            own_only: false,
            limits: key.limits,
        };
        if role.allows(permission) {
            return Ok(principal);
        }
        let makes_things =
            role.allows(Permission::RunWorkflows) || role.allows(Permission::CallModels);
        if matches!(route.access, Access::NeedsOrOwn(_)) && makes_things {
            principal.own_only = true;
            return Ok(principal);
        }
        Err(ApiError::forbidden(format!(
            "the {role} role may not {} ({} {})",
            permission.describe(),
            route.method,
            route.path
        )))
    }

    /// Whether the request carries a live key whose role may call models (for what a public
    /// route may add for such callers).
    pub(crate) async fn may_call_models(&self, headers: &HeaderMap) -> bool {
        let Some(secret) = bearer(headers) else {
            return false;
        };
        match self.key_for(secret).await {
            Ok(key) => key.role.allows(Permission::CallModels),
            Err(_) => false,
        }
    }

    async fn key_for(&self, secret: &str) -> Result<ApiKeyRecord, ApiError> {
        let hash = shopfloor_engine::hash_key(secret);
        let key = match self.keys.get(&hash) {
            Some(key) => key,
            None => {
                let found = self
                    .engine_call(self.engine.records().key_by_hash(&hash))
                    .await?;
                let Some(key) = found else {
                    return Err(ApiError::unauthorized("unknown API key"));
                };
                self.keys.put(hash, key.clone());
                key
            }
        };
        if key.revoked_at_ms.is_some() {
            return Err(ApiError::unauthorized(format!(
                "API key {}… was revoked",
                key.prefix
            )));
        }
        Ok(key)
    }
}

/// The router's check in front of every route that asks for a permission: authorize from the
/// headers alone, then read the body (see [`crate::body`]), and hand the [`Principal`] to the
/// handler. A caller that is refused never has its body read.
pub(crate) async fn guard(
    State((state, route)): State<(AppState, &'static Route)>,
    request: Request,
    next: Next,
) -> Response {
    let principal = match state.authorize(request.headers(), route).await {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    match crate::body::buffer(&state, request).await {
        Ok(mut request) if crate::idempotency::applies(route) => {
            // A call of a model (or work that will call one) counts against the key's limits:
            // `around` checks them, after a replay has been answered from the store.
            request.extensions_mut().insert(principal.clone());
            crate::idempotency::around(&state, &principal, request, next).await
        }
        Ok(mut request) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// The caller, as [`guard`] authorized it.
impl<S: Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.remove::<Principal>().ok_or_else(|| {
            ApiError::internal(
                "this route is public, so its handler cannot ask who is calling; \
                 declare its permission in ROUTES",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer sf_abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("sf_abc"));
        headers.insert(header::AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "sf_def".parse().unwrap());
        assert_eq!(bearer(&headers), Some("sf_def"));
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
