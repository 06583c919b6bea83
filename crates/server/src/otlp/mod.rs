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

mod export;
mod ids;
mod layer;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

pub use export::{OtlpExporter, OtlpHandle};
use layer::AttributeValue;
pub use layer::OtlpLayer;

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
                export::attribute("service.name", &AttributeValue::Str(config.service_name)),
                export::attribute("service.version", &AttributeValue::Str(env!("CARGO_PKG_VERSION").into())),
            ]
        }),
        dropped,
    };
    Ok((layer, exporter))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
