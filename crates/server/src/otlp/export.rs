//! The exporter: finished spans posted to the collector as OTLP/HTTP JSON, in batches, from a
//! task of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::layer::{AttributeValue, FinishedSpan};
use super::{BATCH, FLUSH_EVERY};

/// Posts the spans the [`OtlpLayer`] collects.
pub struct OtlpExporter {
    pub(super) receiver: mpsc::Receiver<FinishedSpan>,
    pub(super) client: reqwest::Client,
    pub(super) url: reqwest::Url,
    pub(super) resource: Value,
    pub(super) dropped: Arc<AtomicU64>,
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

/// One OTLP/JSON attribute.
pub(super) fn attribute(key: &str, value: &AttributeValue) -> Value {
    let value = match value {
        AttributeValue::Str(s) => json!({"stringValue": s}),
        // OTLP/JSON writes 64-bit integers as strings.
        AttributeValue::Int(n) => json!({"intValue": n.to_string()}),
        AttributeValue::Float(x) => json!({"doubleValue": x}),
        AttributeValue::Bool(b) => json!({"boolValue": b}),
    };
    json!({"key": key, "value": value})
}

/// OTLP's SPAN_KIND_INTERNAL: the kind of a span that names none.
pub(super) const SPAN_KIND_INTERNAL: u8 = 1;
