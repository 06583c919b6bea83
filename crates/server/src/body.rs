//! Request bodies, read in one place: only once [`auth::guard`](crate::auth) has accepted the
//! caller from the headers, within [`ServerConfig::body_timeout`](crate::ServerConfig) of the
//! head, and counted against a budget shared by every request, so that slow or numerous large
//! bodies can neither hold connections open nor fill the memory.
//!
//! The budget is taken before the first byte is read — the declared `Content-Length`, or the
//! largest body allowed when the body is chunked — and is held until the request is done with,
//! since the parsed body lives as long as the handler.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::AppState;

/// The bytes left for bodies in flight, counted in KiB (a permit is a KiB).
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
}

/// A request's share of the [`Budget`], in its extensions until the request is dropped.
#[derive(Clone)]
struct Share(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

const KIB: u64 = 1024;

impl Budget {
    pub(crate) fn new(bytes: usize) -> Self {
        let kib = (bytes as u64 / KIB).min(Semaphore::MAX_PERMITS as u64) as usize;
        Self {
            permits: Arc::new(Semaphore::new(kib)),
        }
    }

    /// Take `bytes` of the budget now, or refuse: a request never waits for room.
    fn take(&self, bytes: u64) -> Result<Share, ApiError> {
        let kib = u32::try_from(bytes.div_ceil(KIB)).unwrap_or(u32::MAX);
        Arc::clone(&self.permits)
            .try_acquire_many_owned(kib)
            .map(|permit| Share(Arc::new(permit)))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "the server is reading as many request bodies as it may hold; retry shortly",
                )
                .code("server_busy")
            })
    }
}

/// The body `Content-Length` declares; `None` when there is none. 400 when it is not a number.
fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("Content-Length is not a number of bytes"))
}

/// Read the body of an authenticated request into memory under the deadline and the budget,
/// and hand the request on with it: 413 past the size limit, 408 past the deadline, 503 when
/// the budget is spent.
pub(crate) async fn buffer(state: &AppState, request: Request) -> Result<Request, ApiError> {
    let limit = state.config.max_body_bytes as u64;
    let (mut parts, body) = request.into_parts();
    let expected = match declared_length(&parts.headers)? {
        Some(length) => length,
        None if parts.headers.contains_key(header::TRANSFER_ENCODING) => limit,
        // HTTP/1.1 without either header: no body.
        None => return Ok(Request::from_parts(parts, body)),
    };
    if expected > limit {
        return Err(ApiError::too_large(state.config.max_body_bytes));
    }
    if expected == 0 {
        return Ok(Request::from_parts(parts, body));
    }
    let share = state.bodies.take(expected)?;
    let deadline = state.config.body_timeout;
    let bytes = tokio::time::timeout(deadline, collect(body, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                format!(
                    "the request body did not arrive within {} s",
                    deadline.as_secs_f64()
                ),
            )
            .code("body_timeout")
        })??;
    parts.extensions.insert(share);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The whole body, refused once it grows past `limit` bytes.
async fn collect(body: Body, limit: u64) -> Result<bytes::Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::too_large(limit as usize));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.into())
}
