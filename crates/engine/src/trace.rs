//! The spans a run leaves for tracing: one `run` span per run, one `attempt` span (kind client)
//! per call to a model inside it. The server's OTLP exporter turns them into a trace under the
//! request that started the run; with no exporter they cost next to nothing.
//!
//! They carry ids, names, statuses and figures, never text (no prompt, output or error
//! message), so nothing personal leaves through a trace. They use their own target,
//! [`TARGET`], so that log output can leave them out: a log line names its request, not the
//! attempt it was written in.
//!
//! A call to a model carries its span as a W3C `traceparent` ([`traced`]), so that a provider
//! which traces joins the trace. The ids are the exporter's: a layer that assigns them hands
//! out a [`ContextLookup`] from `Layer::downcast_raw`, and the engine asks the current
//! dispatcher for it, knowing nothing of the layer. Without such a layer no header is sent.

use std::borrow::Cow;

use shopfloor_core::spec::ModelSpec;
use shopfloor_providers::{ChatRequest, ProviderError, Usage};
use shopfloor_store::RunRecord;
use tracing::field::Empty;
use tracing::span::Id;
use tracing::{Dispatch, Span};

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

/// A trace id and the id of a span in it.
pub type SpanContext = ([u8; 16], [u8; 8]);

/// How a tracing layer that assigns W3C trace ids tells the context of a span: the nearest
/// span, from `id` outwards, that it has ids for. The layer returns a pointer to one from
/// `Layer::downcast_raw(TypeId::of::<ContextLookup>())`.
#[derive(Clone, Copy)]
pub struct ContextLookup(pub fn(&Dispatch, &Id) -> Option<SpanContext>);

/// The `traceparent` header value naming `span`, when a layer gives it trace ids.
pub fn traceparent(span: &Span) -> Option<String> {
    let (trace, parent) = span
        .with_subscriber(|(id, dispatch)| {
            let lookup = dispatch.downcast_ref::<ContextLookup>()?;
            (lookup.0)(dispatch, id)
        })
        .flatten()?;
    Some(format!(
        "00-{}-{}-01",
        hex::encode(trace),
        hex::encode(parent)
    ))
}

/// `request` as a call made now sends it: with the current span (the attempt) as its trace
/// parent. Borrowed unchanged when nothing traces, so untraced calls copy nothing.
///
/// Call it inside the future the attempt loop instruments, where the attempt span is current:
/// `move || async move { provider.complete(&trace::traced(sent)).await }`.
pub fn traced(request: &ChatRequest) -> Cow<'_, ChatRequest> {
    match traceparent(&Span::current()) {
        Some(traceparent) => Cow::Owned(ChatRequest {
            traceparent: Some(traceparent),
            ..request.clone()
        }),
        None => Cow::Borrowed(request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber that is nothing but a [`ContextLookup`] giving every span the same ids.
    struct Fixed(ContextLookup);

    impl tracing::Subscriber for Fixed {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
        unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
            (id == std::any::TypeId::of::<ContextLookup>())
                .then_some(&self.0 as *const ContextLookup as *const ())
        }
    }

    #[test]
    fn a_span_is_named_by_the_layers_ids_and_an_untraced_request_is_not_copied() {
        let request = ChatRequest::default();
        assert!(matches!(traced(&request), Cow::Borrowed(_)));
        let subscriber = Fixed(ContextLookup(|_, _| Some(([1; 16], [2; 8]))));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: TARGET, "attempt");
            assert_eq!(
                traceparent(&span).as_deref(),
                Some("00-01010101010101010101010101010101-0202020202020202-01")
            );
        });
        assert_eq!(traceparent(&Span::none()), None);
    }
}
