//! Trace export over OTLP/HTTP with the JSON encoding, which every OpenTelemetry collector and
//! most tracing backends accept on `POST {endpoint}/v1/traces`.
//!
//! [`OtlpLayer`] is a `tracing` layer: each span shopfloor opens (the server's `request`, the
//! engine's `run` and `attempt`, the batch worker's `batch_case`) becomes an OTLP span when it
//! closes, with its parent, its fields as attributes, and a W3C `traceparent` from the caller as
//! the remote parent of a root span. [`OtlpExporter`] posts them in batches from a task of its
//! own; a full queue drops spans (counted and logged) rather than slowing requests down. It also
//! answers the engine's [`ContextLookup`], so that calls to models carry a `traceparent` naming
//! their `attempt` span ([`shopfloor_engine::trace::traced`]).
//!
//! Spans carry names, ids, statuses and figures, never text: no prompt, output or error message
//! is a field of any span, so nothing personal reaches the trace backend. The run id on a span
//! leads to the stored, redacted record.
//!
//! Conventions of the fields (as other `tracing`-to-OpenTelemetry bridges read them):
//! `otel.kind` (`server`, `client`, `internal`), `otel.status_code` (`error`, `ok`), and
//! `traceparent` (not an attribute: the remote parent).

use std::any::TypeId;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use shopfloor_core::stats::splitmix64;
use shopfloor_engine::trace::{ContextLookup, SpanContext};
use tokio::sync::{mpsc, watch};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans waiting to be posted; past this, new ones are dropped.
const QUEUE: usize = 8192;
/// Spans in one request to the collector.
const BATCH: usize = 512;
/// A partial batch waits at most this long.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// One request to the collector may take this long.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as what to export.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's base URL, such as `http://127.0.0.1:4318`; `/v1/traces` is appended
    /// unless the URL already ends with it.
    pub endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Extra request headers (an API key for a hosted backend).
    pub headers: Vec<(String, String)>,
}

impl OtlpConfig {
    /// `OTEL_EXPORTER_OTLP_HEADERS`-style headers: `key=value,key2=value2`.
    pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
        text.split(',')
            .filter(|pair| !pair.trim().is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    Ok((key.trim().to_string(), value.trim().to_string()))
                }
                _ => Err(format!(
                    "OTLP header {pair:?} is not key=value (write them as key=value,key2=value2)"
                )),
            })
            .collect()
    }
}

/// The spans to export: shopfloor's own (the server's and the engine's [`TARGET`]), not those of
/// the libraries under it. Use it as the layer's filter (`filter_fn(exported)`).
///
/// [`TARGET`]: shopfloor_engine::trace::TARGET
pub fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span()
        && (metadata.target() == shopfloor_engine::trace::TARGET
            || metadata.target().starts_with("shopfloor_server"))
}

/// Build the layer and the exporter that posts what it collects. The exporter must be
/// [`spawn`](OtlpExporter::spawn)ed inside a tokio runtime; until then spans queue up.
pub fn pipeline(config: OtlpConfig) -> Result<(OtlpLayer, OtlpExporter), String> {
    let base = config.endpoint.trim_end_matches('/');
    let url = if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    };
    let url = reqwest::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            format!(
                "OTLP endpoint {:?} is not an http(s) URL; write it like \"http://127.0.0.1:4318\"",
                config.endpoint
            )
        })?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (key, value) in &config.headers {
        let name = reqwest::header::HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("OTLP header name {key:?} is not a valid header name"))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| format!("the value of OTLP header {key:?} is not a valid header value"))?;
        headers.insert(name, value);
    }
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(POST_TIMEOUT)
        .default_headers(headers)
        .build()
        .map_err(|e| format!("cannot set up the OTLP HTTP client: {e}"))?;
    let (sender, receiver) = mpsc::channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let layer = OtlpLayer {
        sender,
        dropped: dropped.clone(),
        lookup: None,
    };
    let exporter = OtlpExporter {
        receiver,
        client,
        url,
        resource: json!({
            "attributes": [
                attribute("service.name", &AttributeValue::Str(config.service_name)),
                attribute("service.version", &AttributeValue::Str(env!("CARGO_PKG_VERSION").into())),
            ]
        }),
        dropped,
    };
    Ok((layer, exporter))
}

/// The `tracing` layer that collects finished spans for the [`OtlpExporter`].
pub struct OtlpLayer {
    sender: mpsc::Sender<FinishedSpan>,
    dropped: Arc<AtomicU64>,
    /// Set when the layer joins its subscriber, whose type the lookup needs.
    lookup: Option<ContextLookup>,
}

/// The ids of span `id`, or of the nearest span around it that this layer exports.
fn span_context<S>(dispatch: &tracing::Dispatch, id: &Id) -> Option<SpanContext>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let subscriber = dispatch.downcast_ref::<S>()?;
    subscriber.span(id)?.scope().find_map(|span| {
        let extensions = span.extensions();
        extensions
            .get::<OpenSpan>()
            .map(|open| (open.trace_id, open.span_id))
    })
}

/// What the layer keeps on an open span.
struct OpenSpan {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    name: &'static str,
    start_ns: u64,
    fields: Fields,
}

/// A span's fields, read through [`Visit`].
#[derive(Default)]
struct Fields {
    attributes: Vec<(&'static str, AttributeValue)>,
    kind: Option<u8>,
    error: Option<bool>,
    remote_parent: Option<([u8; 16], [u8; 8])>,
}

#[derive(Debug, Clone, PartialEq)]
enum AttributeValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

struct FinishedSpan {
    open: OpenSpan,
    end_ns: u64,
}

impl Fields {
    fn set(&mut self, key: &'static str, value: AttributeValue) {
        match (key, &value) {
            ("otel.kind", AttributeValue::Str(kind)) => self.kind = span_kind(kind),
            ("otel.status_code", AttributeValue::Str(code)) => {
                self.error = match code.to_ascii_lowercase().as_str() {
                    "error" => Some(true),
                    "ok" => Some(false),
                    _ => None,
                }
            }
            ("traceparent", AttributeValue::Str(header)) => {
                self.remote_parent = parse_traceparent(header)
            }
            _ => match self.attributes.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => self.attributes.push((key, value)),
            },
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), AttributeValue::Str(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), AttributeValue::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value =
            i64::try_from(value).map_or(AttributeValue::Float(value as f64), AttributeValue::Int);
        self.set(field.name(), value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), AttributeValue::Float(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), AttributeValue::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), AttributeValue::Str(format!("{value:?}")));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let parent = span.parent().and_then(|parent| {
            let extensions = parent.extensions();
            extensions
                .get::<OpenSpan>()
                .map(|open| (open.trace_id, open.span_id))
        });
        let (trace_id, parent_id) = match (parent, fields.remote_parent) {
            (Some((trace, span)), _) | (None, Some((trace, span))) => (trace, Some(span)),
            (None, None) => (trace_id(), None),
        };
        span.extensions_mut().insert(OpenSpan {
            trace_id,
            span_id: next_id().to_be_bytes(),
            parent_id,
            name: attrs.metadata().name(),
            start_ns: now_ns(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(open) = span.extensions_mut().get_mut::<OpenSpan>() {
                values.record(&mut open.fields);
            }
        }
    }

    fn on_layer(&mut self, _subscriber: &mut S) {
        self.lookup = Some(ContextLookup(span_context::<S>));
    }

    /// Hands the engine its [`ContextLookup`] (as `tracing-opentelemetry` hands out its
    /// context getter).
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else if id == TypeId::of::<ContextLookup>() {
            self.lookup
                .as_ref()
                .map(|lookup| lookup as *const ContextLookup as *const ())
        } else {
            None
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        let finished = FinishedSpan {
            open,
            end_ns: now_ns(),
        };
        if self.sender.try_send(finished).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Posts the spans the [`OtlpLayer`] collects.
pub struct OtlpExporter {
    receiver: mpsc::Receiver<FinishedSpan>,
    client: reqwest::Client,
    url: reqwest::Url,
    resource: Value,
    dropped: Arc<AtomicU64>,
}

/// The running exporter; [`shutdown`](OtlpHandle::shutdown) posts what is left.
pub struct OtlpHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpExporter {
    /// Start posting, in a task of the current tokio runtime.
    pub fn spawn(self) -> OtlpHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.export(stopped));
        OtlpHandle { stop, task }
    }

    async fn export(mut self, mut stopped: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                received = self.receiver.recv() => match received {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH {
                            self.post(&mut batch).await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => self.post(&mut batch).await,
                _ = stopped.changed() => break,
            }
        }
        while let Ok(span) = self.receiver.try_recv() {
            batch.push(span);
            if batch.len() >= BATCH {
                self.post(&mut batch).await;
            }
        }
        self.post(&mut batch).await;
    }

    async fn post(&self, batch: &mut Vec<FinishedSpan>) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "OTLP export queue was full; spans were dropped");
        }
        if batch.is_empty() {
            return;
        }
        let spans: Vec<Value> = batch.drain(..).map(|s| span_json(&s)).collect();
        let count = spans.len();
        let body = json!({
            "resourceSpans": [{
                "resource": self.resource,
                "scopeSpans": [{
                    "scope": {"name": "shopfloor", "version": env!("CARGO_PKG_VERSION")},
                    "spans": spans,
                }],
            }],
        });
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    spans = count,
                    "the OTLP collector refused spans"
                )
            }
            Err(e) => tracing::warn!(
                spans = count,
                "cannot post spans to the OTLP collector: {e}"
            ),
        }
    }
}

impl OtlpHandle {
    /// Post the spans still queued and stop, waiting at most `grace`.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("OTLP export did not finish within {grace:?}");
        }
    }
}

fn span_json(span: &FinishedSpan) -> Value {
    let open = &span.open;
    let fields = &open.fields;
    let mut value = json!({
        "traceId": hex::encode(open.trace_id),
        "spanId": hex::encode(open.span_id),
        "name": open.name,
        "kind": fields.kind.unwrap_or(SPAN_KIND_INTERNAL),
        "startTimeUnixNano": open.start_ns.to_string(),
        "endTimeUnixNano": span.end_ns.max(open.start_ns).to_string(),
        "attributes": fields
            .attributes
            .iter()
            .map(|(key, value)| attribute(key, value))
            .collect::<Vec<_>>(),
    });
    if let Some(parent) = open.parent_id {
        value["parentSpanId"] = json!(hex::encode(parent));
    }
    if let Some(error) = fields.error {
        // STATUS_CODE_OK = 1, STATUS_CODE_ERROR = 2.
        value["status"] = json!({"code": if error { 2 } else { 1 }});
    }
    value
}

fn attribute(key: &str, value: &AttributeValue) -> Value {
    let value = match value {
        AttributeValue::Str(s) => json!({"stringValue": s}),
        // OTLP/JSON writes 64-bit integers as strings.
        AttributeValue::Int(n) => json!({"intValue": n.to_string()}),
        AttributeValue::Float(x) => json!({"doubleValue": x}),
        AttributeValue::Bool(b) => json!({"boolValue": b}),
    };
    json!({"key": key, "value": value})
}

const SPAN_KIND_INTERNAL: u8 = 1;

fn span_kind(kind: &str) -> Option<u8> {
    match kind.to_ascii_lowercase().as_str() {
        "internal" => Some(1),
        "server" => Some(2),
        "client" => Some(3),
        "producer" => Some(4),
        "consumer" => Some(5),
        _ => None,
    }
}

/// A W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`): the trace and span it continues.
fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = header.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four parts; later versions may append more.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if flags.len() != 2 || unhex::<1>(flags).is_none() {
        return None;
    }
    let trace = unhex::<16>(trace)?;
    let parent = unhex::<8>(parent)?;
    let nonzero = |bytes: &[u8]| bytes.iter().any(|&b| b != 0);
    (nonzero(&trace) && nonzero(&parent)).then_some((trace, parent))
}

/// `2 * N` lower-case hex digits, as the W3C format says.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Span and trace ids: a process-wide random seed and a counter through splitmix64 (a bijection
/// of the counter), so ids are unique in the process and unpredictable across processes.
fn next_id() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let seed = *SEED.get_or_init(|| {
        let random = uuid::Uuid::now_v7().as_u64_pair().1;
        random ^ now_ns()
    });
    splitmix64(seed, COUNTER.fetch_add(1, Ordering::Relaxed)).max(1)
}

fn trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_id().to_be_bytes());
    id[8..].copy_from_slice(&next_id().to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_and_rejects_what_w3c_rejects() {
        let (trace, parent) =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(parent), "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        // A later version may carry more parts.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn ids_are_unique_and_never_zero() {
        let ids: std::collections::HashSet<u64> = (0..10_000).map(|_| next_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(!ids.contains(&0));
    }

    #[test]
    fn headers_parse_as_key_value_pairs() {
        assert_eq!(
            OtlpConfig::parse_headers("api-key=abc, x-team = ops ,").unwrap(),
            [
                ("api-key".to_string(), "abc".to_string()),
                ("x-team".to_string(), "ops".to_string())
            ]
        );
        assert!(OtlpConfig::parse_headers("novalue").is_err());
    }

    #[test]
    fn fields_set_kind_status_and_attributes() {
        let mut fields = Fields::default();
        fields.set("otel.kind", AttributeValue::Str("client".into()));
        fields.set("otel.status_code", AttributeValue::Str("error".into()));
        fields.set("model", AttributeValue::Str("a".into()));
        fields.set("model", AttributeValue::Str("b".into()));
        fields.set("tokens", AttributeValue::Int(3));
        assert_eq!(fields.kind, Some(3));
        assert_eq!(fields.error, Some(true));
        assert_eq!(
            fields.attributes,
            [
                ("model", AttributeValue::Str("b".into())),
                ("tokens", AttributeValue::Int(3))
            ]
        );
    }
}
