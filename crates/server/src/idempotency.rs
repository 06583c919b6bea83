//! `Idempotency-Key` on the POSTs that call a model or queue work (the gateway's four APIs and
//! the workflow runs and batches): a retry with the same key and body is answered with the
//! first answer, from the store, and calls no model again — across replicas, since the store
//! holds the keys. The same key with another body (or path) is 422; while the first request is
//! still being answered, a retry is 409 with `Retry-After`. Keys belong to the API key that
//! sent them and are forgotten after a day. Only successful answers are kept: a failed
//! request releases its key, so its retry runs again. A streamed answer cannot be replayed: a
//! retry is told so, with the run that answered. Clients send the key as a header
//! (`extra_headers={"Idempotency-Key": …}` in the official SDKs).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use shopfloor_engine::store_types::{IdempotencyClaim, IdempotencyRequest, KeptAnswer};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::Route;
use crate::{AppState, MODEL_HEADER, RUN_ID_HEADER};

const HEADER: &str = "idempotency-key";
/// Set on an answer that comes from the store.
const REPLAYED: &str = "idempotent-replayed";
/// A key is forgotten a day after its first use.
const FORGOTTEN_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// A request still unanswered after this is taken to have died with its server.
const ABANDONED_AFTER_MS: i64 = 10 * 60 * 1000;

/// Whether `route` honours `Idempotency-Key`.
pub(crate) fn applies(route: &Route) -> bool {
    route.method == Method::POST
        && matches!(
            route.path,
            "/v1/chat/completions"
                | "/v1/responses"
                | "/v1/messages"
                | "/v1/embeddings"
                | "/v1/workflows/{name}/runs"
                | "/v1/workflows/{name}/batches"
        )
}

/// Check the key's rate limits and budget before a model is called; the refusal (429 with
/// `Retry-After`) when one is reached.
async fn admit(state: &AppState, principal: &Principal) -> Result<(), Response> {
    let admitted = state
        .engine
        .admit(&principal.key_id, &principal.name, &principal.limits);
    state
        .engine_call(admitted)
        .await
        .map_err(IntoResponse::into_response)
}

/// Answer `request` (already authorized, its body in memory) once per key, after the key's
/// limits admit it.
pub(crate) async fn around(
    state: &AppState,
    principal: &Principal,
    request: Request,
    next: Next,
) -> Response {
    let Some(value) = request.headers().get(HEADER) else {
        if let Err(refused) = admit(state, principal).await {
            return refused;
        }
        return next.run(request).await;
    };
    let key = match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            key.to_string()
        }
        _ => {
            return ApiError::bad_request(
                "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces",
            )
            .param("Idempotency-Key")
            .into_response()
        }
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return ApiError::bad_request(format!("the body could not be read: {e}"))
                .into_response()
        }
    };
    let route = format!("{} {}", parts.method, parts.uri.path());
    let body_hash = hex::encode(Sha256::digest(&bytes));
    let now = shopfloor_engine::now_ms();
    let claim = IdempotencyRequest {
        api_key_id: &principal.key_id,
        key: &key,
        route: &route,
        body_hash: &body_hash,
        now_ms: now,
        expired_before_ms: now - FORGOTTEN_AFTER_MS,
        abandoned_before_ms: now - ABANDONED_AFTER_MS,
    };
    match state.engine_call(state.engine.records().claim_idempotency(&claim)).await {
        Ok(IdempotencyClaim::Fresh) => {
            // Only a request that will call a model counts against the key's limits: a replay
            // or a retry of one still running does not.
            if let Err(refused) = admit(state, principal).await {
                release(state, principal, &key).await;
                return refused;
            }
        }
        Ok(IdempotencyClaim::Answered(answer)) => return replay(answer),
        Ok(IdempotencyClaim::InFlight) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("a request with Idempotency-Key {key} is still being answered; retry it in a moment"),
            )
            .code("idempotency_in_flight")
            .retry_after(1)
            .into_response();
        }
        Ok(IdempotencyClaim::Mismatch) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                format!(
                    "Idempotency-Key {key} was used with another request (another body or path); a new request needs a new key"
                ),
            )
            .param("Idempotency-Key")
            .code("idempotency_key_reused")
            .into_response()
        }
        Err(error) => return error.into_response(),
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    keep(state, principal, &key, response).await
}

/// Let `key` go unanswered, so that a retry runs the request again.
async fn release(state: &AppState, principal: &Principal, key: &str) {
    if let Err(e) = state
        .engine_call(
            state
                .engine
                .records()
                .release_idempotency(&principal.key_id, key),
        )
        .await
    {
        tracing::warn!("an idempotency key could not be released: {}", e.message);
    }
}

/// Keep a successful answer for the key's retries; release the key of any other.
async fn keep(state: &AppState, principal: &Principal, key: &str, response: Response) -> Response {
    if !response.status().is_success() {
        release(state, principal, key).await;
        return response;
    }
    let text = |headers: &HeaderMap, name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = text(response.headers(), "content-type").unwrap_or_default();
    let run_id = text(response.headers(), RUN_ID_HEADER);
    let model = text(response.headers(), MODEL_HEADER);
    let (answer, response) = if content_type.starts_with("text/event-stream") {
        let told = ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!(
                "the first request with this Idempotency-Key was answered as a stream, which is not kept for replay; its run is {}",
                run_id.as_deref().unwrap_or("unknown")
            ),
        )
        .code("idempotent_stream");
        let answer = KeptAnswer {
            status: told.status.as_u16(),
            content_type: "application/json".into(),
            run_id,
            model,
            body: String::from_utf8_lossy(&told.body()).into_owned(),
        };
        (answer, response)
    } else {
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => bytes,
            Err(e) => {
                return ApiError::internal(format!("the answer could not be read: {e}"))
                    .into_response()
            }
        };
        let answer = KeptAnswer {
            status: status.as_u16(),
            content_type,
            run_id,
            model,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        (answer, Response::from_parts(parts, Body::from(bytes)))
    };
    if let Err(e) = state
        .engine_call(
            state
                .engine
                .records()
                .keep_idempotent_answer(&principal.key_id, key, &answer),
        )
        .await
    {
        // The client has its answer; a retry then waits for the key to be abandoned.
        tracing::warn!("an idempotent answer could not be kept: {}", e.message);
    }
    response
}

/// The kept answer, marked as replayed.
fn replay(answer: KeptAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: Option<&str>| {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    };
    set("content-type", Some(&answer.content_type));
    set(RUN_ID_HEADER, answer.run_id.as_deref());
    set(MODEL_HEADER, answer.model.as_deref());
    set(REPLAYED, Some("true"));
    response
}
