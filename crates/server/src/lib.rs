//! `shopfloor serve`: the production runtime. An OpenAI-compatible gateway
//! (`/v1/chat/completions`, `/v1/models`), the workflow API (runs, batches), health and
//! Prometheus metrics, over the same engine as the CLI.
//!
//! The app is a value: [`Server::build`] takes an opened [`Engine`] and a bound listener
//! (port 0 in tests) and [`Server::run`] serves until a shutdown future resolves, then finishes
//! the requests in flight, lets the batch worker finish its cases and drains the recorder.

mod auth;
mod body;
mod chat_body;
mod dashboard;
mod embeddings;
mod error;
mod experiments;
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod idempotency;
mod jobs;
mod messages;
mod metrics;
pub mod openapi;
pub mod otlp;
mod outcomes;
mod responses;
mod reviews;
mod routes;
mod tasks;
mod worker;
mod workflows;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use shopfloor_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower_service::Service;
use tracing::Instrument;

pub use auth::{Access, Principal};
pub use error::ApiError;
pub use metrics::Metrics;
pub use routes::{Route, ROUTES};
pub use worker::WorkerConfig;

use auth::KeyCache;
use tasks::Tasks;

/// The response header that names the run a request recorded.
pub const RUN_ID_HEADER: &str = "x-shopfloor-run-id";
/// The header naming the model that answered (a fallback, maybe).
pub const MODEL_HEADER: &str = "x-shopfloor-model";
/// The request id header: taken from the client when it sends a sane one, else made up.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// A request's body must arrive within this long after its head (408 otherwise).
    pub body_timeout: Duration,
    /// Bodies being read and requests holding theirs count against this many bytes in all;
    /// past it a request is refused with 503 before its body is read.
    pub body_budget_bytes: usize,
    /// How long a looked-up API key is trusted before it is looked up again (a revoked key
    /// stops working within this time).
    pub key_cache_ttl: Duration,
    /// Every call to the store on the request path is cut off after this long (503).
    pub store_timeout: Duration,
    /// A client has this long to send a request's head.
    pub header_read_timeout: Duration,
    /// On shutdown, requests in flight get this long to finish.
    pub shutdown_grace: Duration,
    /// The batch worker; `None` runs no worker (this replica then only queues batches).
    pub worker: Option<WorkerConfig>,
    /// How often this replica runs its background jobs' short passes: the review SLAs,
    /// webhook delivery, experiment guardrails and the weekly review (retention runs once a
    /// minute and drift checks every `[monitoring] every`, each as a job of its own). `None`
    /// runs no job (another replica, or `shopfloor review sweep`, must).
    pub jobs_every: Option<Duration>,
    /// Serve the dashboard's pages at `/`; without it, only the APIs answer (an API-only
    /// replica behind a load balancer).
    pub dashboard: bool,
    /// The session cookie carries `Secure`: people reach the server over HTTPS (`[server]
    /// public_url`), through a proxy that ends TLS.
    pub secure_cookies: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            body_budget_bytes: 256 * 1024 * 1024,
            key_cache_ttl: Duration::from_secs(5),
            store_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(60),
            worker: Some(WorkerConfig::default()),
            jobs_every: Some(Duration::from_secs(2)),
            dashboard: true,
            secure_cookies: false,
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

pub struct Shared {
    pub engine: Arc<Engine>,
    pub metrics: Metrics,
    pub config: ServerConfig,
    keys: KeyCache,
    /// Work that must outlive the request that started it (a run whose client went away).
    tasks: Tasks,
    /// Set when shutting down: `/readyz` answers 503 so that load balancers stop sending.
    draining: AtomicBool,
    /// Wakes this replica's batch worker when a batch is queued here.
    batch_queued: Notify,
    /// What is left of [`ServerConfig::body_budget_bytes`], in KiB.
    bodies: body::Budget,
    /// The bodies of callers not signed in being read, per address.
    strangers: body::Strangers,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

impl AppState {
    pub fn new(engine: Arc<Engine>, config: ServerConfig) -> Self {
        Self {
            inner: Arc::new(Shared {
                engine,
                metrics: Metrics::new(),
                keys: KeyCache::new(config.key_cache_ttl),
                bodies: body::Budget::new(config.body_budget_bytes),
                strangers: body::Strangers::default(),
                config,
                tasks: Tasks::default(),
                draining: AtomicBool::new(false),
                batch_queued: Notify::new(),
            }),
        }
    }
    /// An engine call that reaches the store, cut off after the store timeout (503, like a
    /// store error).
    pub(crate) async fn engine_call<T>(
        &self,
        call: impl Future<Output = Result<T, shopfloor_engine::EngineError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.config.store_timeout, call).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(_) => Err(ApiError::unavailable(format!(
                "the store did not answer within {:?}",
                self.config.store_timeout
            ))),
        }
    }

    /// Run `work` in a task of its own, in the request's span, so that it finishes (and
    /// records its run) even when the client goes away; wait for it.
    pub(crate) async fn detached<F>(&self, work: F) -> Result<F::Output, ApiError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks
            .spawn(work.instrument(tracing::Span::current()))
            .await
            .map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))
    }
}

/// The router: every route of [`ROUTES`] behind its access check, and in front of every
/// response, the unmatched included, the request observer; then the body limit.
pub fn app(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let mut router = Router::new();
    for route in &ROUTES {
        router = router.route(route.path, route.method_router(&state));
    }
    if state.config.dashboard {
        router = router.merge(dashboard::routes(&state));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `layer`, not `route_layer`: the fallbacks are observed too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A request body parsed as JSON, with OpenAI-format errors (400, 413).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = request.headers().get(header::CONTENT_TYPE) {
            if !is_json(value) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_request_error",
                    format!(
                        "the request body is sent as {}; this endpoint takes application/json",
                        value.to_str().unwrap_or("an unreadable Content-Type")
                    ),
                )
                .code("unsupported_media_type"));
            }
        }
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(state.config.max_body_bytes)
                } else {
                    ApiError::bad_request(rejection.body_text())
                }
            })?;
        serde_json::from_slice(&bytes).map(Json).map_err(|e| {
            let message = e.to_string();
            let error = ApiError::bad_request(format!(
                "the request body is not what this endpoint takes: {message}"
            ));
            // A field this endpoint does not take is named in `param`, as OpenAI does.
            match message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
            {
                Some((field, _)) => error.param(field.to_string()),
                None => error,
            }
        })
    }
}

/// `application/json`, or a `+json` type such as `application/merge-patch+json`, with any
/// parameters (`; charset=utf-8`).
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// A query string parsed into `T`, with OpenAI-format errors (400 naming what is wrong).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("invalid query string: {}", rejection.body_text()))
            })
    }
}

/// A JSON response with a status, serialised in one piece.
pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Per request: a request id (in the response header and on every log line), the access log
/// line, and the HTTP metrics.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.metrics.request_started();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| {
            routes::by_path(m.as_str())
                .map(|r| r.path)
                .or_else(|| dashboard::by_path(m.as_str()))
        })
        .unwrap_or("unmatched");
    let method = request.method().clone();
    // Every line logged for a workflow's request names the workflow (the gateway records it
    // too, for `model = "workflow:NAME"`).
    let workflow = route
        .starts_with("/v1/workflows/{name}")
        .then(|| request.uri().path().split('/').nth(3))
        .flatten()
        .filter(|name| name.len() <= 128)
        .map(str::to_string);
    // A caller's W3C trace context makes this request part of its trace.
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_string);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        otel.kind = "server",
        http.route = route,
        http.request.method = %method,
        http.response.status_code = tracing::field::Empty,
        traceparent = traceparent.as_deref(),
        workflow = workflow.as_deref(),
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let took = started.elapsed();
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    state.metrics.request(route, status, took);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let run_id = header(RUN_ID_HEADER);
    let model = header(MODEL_HEADER);
    // The W3C trace id: the second field of `traceparent`.
    let trace_id = traceparent
        .as_deref()
        .and_then(|t| t.split('-').nth(1))
        .filter(|id| id.len() == 32);
    let micros = took.as_micros() as u64;
    span.in_scope(|| {
        macro_rules! served {
            ($level:ident) => {
                tracing::$level!(
                    method = %method,
                    route,
                    status,
                    micros,
                    run_id,
                    model,
                    trace_id,
                    "served"
                )
            };
        }
        // A failure of ours is an error; one of a model's provider a warning; a client's
        // mistake is the client's, and routine.
        match status {
            500 => served!(error),
            501.. => served!(warn),
            _ => served!(info),
        }
    });
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see GET /v1/models, POST /v1/chat/completions, POST /v1/workflows/NAME/runs")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "this endpoint does not take that method",
    )
}

pub(crate) async fn healthz() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// Ready when the store answers (it was migrated when it was opened) and not shutting down.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "shutting down"}),
        );
    }
    match state
        .engine_call(state.engine.records().store_ready())
        .await
    {
        Ok(backend) => json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ready", "store": backend}),
        ),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "store unavailable", "error": e.message}),
        ),
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics_text(State(state): State<AppState>) -> Response {
    let now = shopfloor_engine::now_ms();
    let queue = state
        .engine_call(state.engine.records().queue_counts(now))
        .await;
    match queue {
        Ok((counts, events)) => state.metrics.review_queue(&counts, &events, now),
        Err(e) => tracing::warn!("metrics: cannot read the review queue: {}", e.message),
    }
    match state
        .engine_call(state.engine.records().keys_with_usage())
        .await
    {
        Ok(keys) => state.metrics.keys(&keys),
        Err(e) => tracing::warn!("metrics: cannot read the keys' usage: {}", e.message),
    }
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

/// A server bound to its listener, ready to run.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Wrap an opened engine and a bound listener.
    pub fn build(engine: Engine, listener: TcpListener, config: ServerConfig) -> Self {
        Self {
            listener,
            state: AppState::new(Arc::new(engine), config),
        }
    }

    /// The address it listens on (the port chosen when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (metrics, engine), e.g. for tests.
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until `shutdown` resolves; then stop accepting, let requests in flight finish
    /// (up to the grace period), stop the batch worker after its cases, and write every
    /// recorded run before returning.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Server { listener, state } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = state
            .config
            .worker
            .clone()
            .map(|config| tokio::spawn(worker::run(state.clone(), config, stop_rx.clone())));
        let jobs = state
            .config
            .jobs_every
            .map(|every| jobs::spawn_all(&state, every, &stop_rx))
            .unwrap_or_default();
        let router = app(state.clone());
        let connections = Tasks::default();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Small responses must not wait for the client's delayed ACK.
                        let _ = stream.set_nodelay(true);
                        let router = router.clone();
                        let stop = stop_rx.clone();
                        let timeout = state.config.header_read_timeout;
                        connections.spawn(serve_connection(stream, peer, router, stop, timeout));
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        drop(listener);
        state.draining.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
        let grace = state.config.shutdown_grace;
        if tokio::time::timeout(grace, connections.idle())
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after {grace:?}; closing them");
        }
        if let Some(worker) = worker {
            if let Err(e) = worker.await {
                tracing::error!("the batch worker failed: {e}");
            }
        }
        for job in jobs {
            if let Err(e) = job.await {
                tracing::error!("a background job failed: {e}");
            }
        }
        // Runs whose clients went away finish and record themselves.
        if tokio::time::timeout(grace, state.tasks.idle())
            .await
            .is_err()
        {
            tracing::warn!("detached runs still going after {grace:?}");
        }
        drop(router);
        let engine = state.engine.clone();
        drop(state);
        match Arc::try_unwrap(engine) {
            Ok(engine) => engine.close().await,
            Err(engine) => {
                tracing::warn!("the engine is still shared at shutdown; writing recorded runs");
                engine.flush().await;
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// One HTTP/1.1 connection, keep-alive, closed gracefully (after its request in flight) when
/// `stop` turns true.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
    header_read_timeout: Duration,
) {
    let peer = body::Peer(peer.ip());
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer);
        router.clone().call(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        }
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}
