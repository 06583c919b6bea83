//! Request bodies, read in one place: only once [`auth::guard`](crate::auth) has accepted the
//! caller from the headers, within [`ServerConfig::body_timeout`](crate::ServerConfig) of the
//! head, and counted against a budget shared by every request, so that slow or numerous large
//! bodies can neither hold connections open nor fill the memory.
//!
//! The budget is taken before the first byte is read — the declared `Content-Length`, or the
//! largest body allowed when the body is chunked — and is held until the request is done with,
//! since the parsed body lives as long as the handler.
//!
//! A form sent by someone not signed in (the sign-in form itself) is bytes, not megabytes: it
//! is read under a small cap of its own, [`STRANGER_BODY_BYTES`], never draws on the shared
//! budget, and one address may send at most [`STRANGER_BODIES_PER_ADDRESS`] of them at a
//! time — so that idle connections declaring large bodies cannot spend the budget that
//! signed-in callers need.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

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

/// The largest body a caller who is not signed in may send: the sign-in form, and a sign-out
/// without a session.
pub(crate) const STRANGER_BODY_BYTES: u64 = 16 * 1024;

/// How many bodies of callers who are not signed in one address may have in flight.
pub(crate) const STRANGER_BODIES_PER_ADDRESS: usize = 4;

/// The address a connection comes from, put on each of its requests by the accept loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub IpAddr);

/// The bodies of callers who are not signed in that are being read, per address.
#[derive(Default)]
pub(crate) struct Strangers {
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One address's slot among [`Strangers`], given back when the body is read or refused.
struct StrangerSlot {
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl Strangers {
    fn take(&self, address: IpAddr) -> Result<StrangerSlot, ApiError> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(address).or_insert(0);
        if *count >= STRANGER_BODIES_PER_ADDRESS {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "{address} is already sending {STRANGER_BODIES_PER_ADDRESS} forms without \
                     being signed in; finish those first"
                ),
            )
            .code("too_many_unauthenticated_bodies"));
        }
        *count += 1;
        Ok(StrangerSlot {
            in_flight: Arc::clone(&self.in_flight),
            address,
        })
    }
}

impl Drop for StrangerSlot {
    fn drop(&mut self) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_flight.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.address);
            }
        }
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
    let bytes = read_within(state, body, limit).await?;
    parts.extensions.insert(share);
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Read the body of a caller who is not signed in: at most [`STRANGER_BODY_BYTES`], within
/// the deadline, a few at a time per address, and outside the shared budget.
pub(crate) async fn buffer_stranger(
    state: &AppState,
    request: Request,
) -> Result<Request, ApiError> {
    let limit = STRANGER_BODY_BYTES;
    let (parts, body) = request.into_parts();
    match declared_length(&parts.headers)? {
        Some(0) => return Ok(Request::from_parts(parts, body)),
        Some(length) if length > limit => return Err(ApiError::too_large(limit as usize)),
        Some(_) => {}
        None if parts.headers.contains_key(header::TRANSFER_ENCODING) => {}
        None => return Ok(Request::from_parts(parts, body)),
    }
    // A request that did not come through the accept loop (a test calling the router) counts
    // as one address.
    let address = parts
        .extensions
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0);
    let slot = state.strangers.take(address)?;
    let bytes = read_within(state, body, limit).await;
    drop(slot);
    Ok(Request::from_parts(parts, Body::from(bytes?)))
}

/// The whole body within [`ServerConfig::body_timeout`](crate::ServerConfig): 408 past it.
async fn read_within(state: &AppState, body: Body, limit: u64) -> Result<bytes::Bytes, ApiError> {
    let deadline = state.config.body_timeout;
    tokio::time::timeout(deadline, collect(body, limit))
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
        })?
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
