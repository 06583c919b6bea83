//! The spans a run leaves for tracing: one `run` span per run, one `attempt` span (kind client)
//! per call to a model inside it. The server's OTLP exporter turns them into a trace under the
//! request that started the run; with no exporter they cost next to nothing.
//!
//! They carry ids, names, statuses and figures, never text (no prompt, output or error
//! message), so nothing personal leaves through a trace. They use their own target,
//! [`TARGET`], so that log output can leave them out: a log line names its request, not the
//! attempt it was written in.

use shopfloor_core::spec::ModelSpec;
use shopfloor_providers::{ProviderError, Usage};
use shopfloor_store::RunRecord;
use tracing::field::Empty;
use tracing::Span;

/// The target of every span here.
pub const TARGET: &str = "shopfloor_trace";

/// A run of `workflow` (the gateway's runs are named `gateway`).
pub(crate) fn run_span(workflow: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "run",
        workflow,
        run_id = Empty,
        version = Empty,
        status = Empty,
        model = Empty,
        prompt_tokens = Empty,
        completion_tokens = Empty,
        cost_usd = Empty,
        otel.status_code = Empty,
    )
}

/// The facts of a finished (or started) run on its span.
pub(crate) fn record_run(span: &Span, run: &RunRecord) {
    span.record("run_id", run.id.as_str());
    span.record("version", run.version.as_str());
    span.record("status", run.status.as_str());
    if let Some(model) = &run.model {
        span.record("model", model.as_str());
    }
    span.record("prompt_tokens", run.prompt_tokens);
    span.record("completion_tokens", run.completion_tokens);
    span.record("cost_usd", run.cost_usd);
    let failed = matches!(
        run.status,
        shopfloor_store::RunStatus::Failed | shopfloor_store::RunStatus::Refused
    );
    span.record("otel.status_code", if failed { "error" } else { "ok" });
}

/// Attempt `n` (0-based) at `spec`, a child of the current span.
pub(crate) fn attempt_span(spec: &ModelSpec, n: usize) -> Span {
    tracing::info_span!(
        target: TARGET,
        "attempt",
        otel.kind = "client",
        model = spec.name.as_str(),
        provider = spec.provider.as_str(),
        attempt = n as u64 + 1,
        outcome = Empty,
        http_status = Empty,
        prompt_tokens = Empty,
        completion_tokens = Empty,
        otel.status_code = Empty,
    )
}

/// How an attempt ended, on its span: its usage when the answer is whole (a stream's is not
/// known yet when its attempt ends), or its error.
pub(crate) fn record_attempt(span: &Span, result: Result<Option<Usage>, &ProviderError>) {
    match result {
        Ok(usage) => {
            span.record("outcome", "ok");
            if let Some(usage) = usage {
                span.record("prompt_tokens", u64::from(usage.prompt_tokens));
                span.record("completion_tokens", u64::from(usage.completion_tokens));
            }
            span.record("otel.status_code", "ok");
        }
        Err(error) => {
            span.record("outcome", error_kind(error));
            if let ProviderError::Status { status, .. } = error {
                span.record("http_status", u64::from(*status));
            }
            span.record("otel.status_code", "error");
        }
    }
}

/// A provider error's kind: a name, never its message (which may quote the request).
fn error_kind(error: &ProviderError) -> &'static str {
    match error {
        ProviderError::Status { .. } => "http_error",
        ProviderError::Timeout(_) => "timeout",
        ProviderError::Connection { .. } => "connection",
        ProviderError::Malformed { .. } => "malformed",
        ProviderError::Config(_) => "config",
        ProviderError::NotRecorded { .. } => "not_recorded",
    }
}
