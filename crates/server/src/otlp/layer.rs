//! The `tracing` layer: each exported span, when it closes, with its ids, parent, fields as
//! attributes, kind and status; and the engine's [`ContextLookup`] of a span's ids.

use std::any::TypeId;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shopfloor_engine::trace::{ContextLookup, SpanContext};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::ids::{next_id, now_ns, parse_traceparent, trace_id};

/// The `tracing` layer that collects finished spans for the [`OtlpExporter`].
pub struct OtlpLayer {
    pub(super) sender: mpsc::Sender<FinishedSpan>,
    pub(super) dropped: Arc<AtomicU64>,
    /// Set when the layer joins its subscriber, whose type the lookup needs.
    pub(super) lookup: Option<ContextLookup>,
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
pub(super) struct OpenSpan {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent_id: Option<[u8; 8]>,
    pub(super) name: &'static str,
    pub(super) start_ns: u64,
    pub(super) fields: Fields,
}

/// A span's fields, read through [`Visit`].
#[derive(Default)]
pub(super) struct Fields {
    pub(super) attributes: Vec<(&'static str, AttributeValue)>,
    pub(super) kind: Option<u8>,
    pub(super) error: Option<bool>,
    remote_parent: Option<([u8; 16], [u8; 8])>,
}

/// An attribute's value, as OTLP types it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AttributeValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// A span that closed, on its way to the exporter.
pub(super) struct FinishedSpan {
    pub(super) open: OpenSpan,
    pub(super) end_ns: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

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
