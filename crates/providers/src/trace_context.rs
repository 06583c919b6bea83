//! The W3C trace context that outgoing model calls carry, so that a provider which traces
//! (another gateway, an inference server) joins the caller's trace.
//!
//! Whoever exports traces (the server's OTLP layer) marks the span being run on this thread
//! with [`enter`] and [`exit`], as `tracing` enters and leaves it around each poll; the HTTP
//! providers add the innermost one as a `traceparent` header. Without an exporter nothing is
//! marked and no header is sent.

use std::cell::RefCell;

/// A trace id and the id of the span the call is made in.
pub type SpanContext = ([u8; 16], [u8; 8]);

thread_local! {
    static ENTERED: RefCell<Vec<Option<SpanContext>>> = const { RefCell::new(Vec::new()) };
}

/// A span was entered on this thread (`None`: one that carries no context).
pub fn enter(context: Option<SpanContext>) {
    ENTERED.with(|entered| entered.borrow_mut().push(context));
}

/// The span entered last on this thread was left.
pub fn exit() {
    ENTERED.with(|entered| {
        entered.borrow_mut().pop();
    });
}

/// The `traceparent` header value for a call made now, if a traced span is entered.
pub(crate) fn traceparent() -> Option<String> {
    let (trace, span) = ENTERED.with(|entered| entered.borrow().last().copied().flatten())?;
    Some(format!(
        "00-{}-{}-01",
        hex::encode(trace),
        hex::encode(span)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_innermost_entered_span_is_the_parent() {
        assert_eq!(traceparent(), None);
        enter(Some(([1; 16], [2; 8])));
        enter(Some(([1; 16], [3; 8])));
        assert_eq!(
            traceparent().as_deref(),
            Some("00-01010101010101010101010101010101-0303030303030303-01")
        );
        exit();
        assert!(traceparent().unwrap().ends_with("-0202020202020202-01"));
        enter(None);
        assert_eq!(traceparent(), None);
        exit();
        exit();
        assert_eq!(traceparent(), None);
    }
}
