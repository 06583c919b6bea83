//! Streamed gateway calls: the route is tried (retries, fallbacks) until a model sends its first
//! event; from then on the client gets that model's stream, placeholders of redacted personal
//! data are restored as they arrive, and the run is recorded when the stream ends — or when it is
//! dropped because its client went away.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt};
use shopfloor_core::pii::restore;
use shopfloor_core::spec::ModelSpec;
use shopfloor_providers::{
    ChatRequest, FinishReason, Provider, ProviderError, StreamEvent, ToolCall, ToolCallDelta, Usage,
};
use shopfloor_store::{ErrorKind, RunRecord, RunStatus};
use tracing::Instrument;

use super::{
    answer_output, Call, GatewayError, GatewayOutcome, GatewayRequest, RecordSink, RunFacts,
    GATEWAY_WORKFLOW,
};
use crate::attempt::{self, Answered, CallFailure, Ending};
use crate::pipeline::Ask;
use crate::trace;
use crate::Engine;

impl Engine {
    /// Start a streamed call: the route is tried (with retries and fallbacks) until a model
    /// sends its first event; from then on the client gets that model's stream. `Err` when no
    /// model started one (the run is recorded then).
    pub async fn gateway_stream(
        &self,
        request: GatewayRequest,
    ) -> Result<GatewayStream, GatewayOutcome> {
        // The run's span covers the route, then (held by the stream) the answer.
        self.open_routed(request)
            .instrument(trace::run_span(GATEWAY_WORKFLOW))
            .await
    }

    async fn open_routed(&self, request: GatewayRequest) -> Result<GatewayStream, GatewayOutcome> {
        let route = match self.gateway_route(&request.chat.model) {
            Ok(route) => route,
            Err(e) => return Err(self.unanswered(self.start_call(&request), e).await),
        };
        let mut call = self.start_call(&request);
        let Some((model, opened)) = self
            .first_answer::<StreamStart>(&route, &request, &mut call)
            .await
        else {
            return Err(self.route_failed(call).await);
        };
        let Opened(first, rest) = opened.value;
        Ok(GatewayStream {
            // The run's span lives as long as its stream.
            span: tracing::Span::current(),
            sink: self.record_sink(),
            call: Some(call),
            first: Some(first),
            rest,
            timeout: Duration::from_millis(self.project.config.gateway.timeout_ms),
            spec: model.spec.clone(),
            attempt_started_at: opened.started_at_ms,
            attempt_clock: Instant::now() - opened.latency,
            text: String::new(),
            pending: model.redacting.then(String::new),
            usage: None,
            pieces: 0,
            tool_calls: Vec::new(),
            done: false,
            attempt_recorded: false,
        })
    }
}

/// A provider stream whose first event has arrived, and the rest of it: until a model has sent
/// something, a failure can still be retried or fall back.
struct Opened(
    StreamEvent,
    BoxStream<'static, Result<StreamEvent, ProviderError>>,
);

impl Answered for Opened {
    fn usage(&self) -> Option<Usage> {
        None
    }
}

/// The start of a stream: its first event.
struct StreamStart;

impl Ask for StreamStart {
    type Answer = Opened;

    fn ask<'a>(
        provider: &'a dyn Provider,
        request: &'a ChatRequest,
    ) -> impl Future<Output = Result<Opened, ProviderError>> + Send + 'a {
        open(provider, request)
    }
}

/// Open a provider stream and wait for its first event (the attempt loop times both).
async fn open(provider: &dyn Provider, request: &ChatRequest) -> Result<Opened, ProviderError> {
    let mut stream = provider.stream(request).await?;
    match stream.next().await {
        Some(Ok(first)) => Ok(Opened(first, stream)),
        Some(Err(e)) => Err(e),
        None => Err(ProviderError::Malformed {
            provider: provider.kind().to_string(),
            message: "the stream ended before its first event".into(),
        }),
    }
}

/// One piece of a streamed gateway answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Text(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    Done {
        /// `None` when the provider reported none.
        usage: Option<Usage>,
        finish_reason: FinishReason,
    },
    /// The stream broke after it started; nothing more follows.
    Error(GatewayError),
}

/// A streamed answer in progress. Call [`GatewayStream::next`] until it returns `None`, then
/// [`GatewayStream::finish`] to record the run; a stream dropped before `finish` (its client
/// went away) still records what happened.
pub struct GatewayStream {
    span: tracing::Span,
    sink: RecordSink,
    /// `None` once recorded.
    call: Option<Call>,
    first: Option<StreamEvent>,
    rest: BoxStream<'static, Result<StreamEvent, ProviderError>>,
    timeout: Duration,
    /// The model answering.
    spec: ModelSpec,
    attempt_started_at: i64,
    attempt_clock: Instant,
    /// The answer so far, restored, for the record.
    text: String,
    /// While redacting: text held back because it may end in half a placeholder.
    pending: Option<String>,
    usage: Option<Usage>,
    /// Pieces of the answer received (text and tool-call deltas): the completion tokens of a
    /// stream cut off before the provider said its usage, one token a piece as the providers
    /// stream them.
    pieces: u32,
    /// The tool calls so far, restored, for the record.
    tool_calls: Vec<ToolCall>,
    done: bool,
    attempt_recorded: bool,
}

/// Longest placeholder text held back while waiting for its closing bracket.
const MAX_PLACEHOLDER: usize = 48;

impl GatewayStream {
    /// The name (in `shopfloor.toml`) of the model that is answering.
    pub fn model_name(&self) -> &str {
        &self.spec.name
    }

    /// The id the run will be recorded under.
    pub fn run_id(&self) -> &str {
        self.call.as_ref().map_or("", |c| c.run.id.as_str())
    }

    /// The next piece of the answer; `None` after `Done` or an error.
    pub async fn next(&mut self) -> Option<StreamItem> {
        if self.done {
            return None;
        }
        loop {
            let event = match self.first.take() {
                Some(first) => Ok(first),
                None => {
                    let clock = Instant::now();
                    let next = tokio::time::timeout(self.timeout, self.rest.next()).await;
                    if let Some(call) = self.call.as_mut() {
                        call.upstream += clock.elapsed();
                    }
                    match next {
                        Ok(Some(event)) => event,
                        Ok(None) => Err(ProviderError::Malformed {
                            provider: self.spec.provider.as_str().to_string(),
                            message: "the stream ended without its final event".into(),
                        }),
                        Err(_) => Err(ProviderError::Timeout(self.timeout)),
                    }
                }
            };
            match event {
                Ok(StreamEvent::Delta(piece)) => {
                    self.pieces = self.pieces.saturating_add(1);
                    if let Some(text) = self.release(&piece, false) {
                        return Some(StreamItem::Text(text));
                    }
                }
                Ok(StreamEvent::ToolCall(mut piece)) => {
                    self.pieces = self.pieces.saturating_add(1);
                    if let (Some(_), Some(call)) = (&self.pending, self.call.as_ref()) {
                        piece.arguments = restore(&piece.arguments, &call.redactions);
                    }
                    self.add_tool_call(&piece);
                    return Some(StreamItem::ToolCall(piece));
                }
                Ok(StreamEvent::Done {
                    usage,
                    finish_reason,
                }) => {
                    self.usage = usage;
                    let rest = self.release("", true);
                    self.done = true;
                    self.end_attempt(None);
                    if let Some(text) = rest {
                        // The held-back tail goes out before the end; `Done` follows next call.
                        self.done = false;
                        self.first = Some(StreamEvent::Done {
                            usage,
                            finish_reason,
                        });
                        return Some(StreamItem::Text(text));
                    }
                    return Some(StreamItem::Done {
                        usage,
                        finish_reason,
                    });
                }
                Err(e) => {
                    self.done = true;
                    let failure = CallFailure::from_provider(&self.spec.name, &e);
                    self.end_attempt(Some(&failure));
                    return Some(StreamItem::Error(GatewayError::Failed(failure)));
                }
            }
        }
    }

    /// Restore placeholders in `piece` (when redacting) and return the text that may go to
    /// the client now.
    fn release(&mut self, piece: &str, end: bool) -> Option<String> {
        let out = match (&mut self.pending, self.call.as_ref()) {
            (Some(pending), Some(call)) => {
                pending.push_str(piece);
                let cut = if end {
                    pending.len()
                } else {
                    safe_prefix(pending)
                };
                let ready: String = pending.drain(..cut).collect();
                restore(&ready, &call.redactions)
            }
            _ => piece.to_string(),
        };
        self.text.push_str(&out);
        (!out.is_empty()).then_some(out)
    }

    /// Add a piece of a tool call to the record of the answer.
    fn add_tool_call(&mut self, piece: &ToolCallDelta) {
        let index = piece.index as usize;
        if self.tool_calls.len() <= index {
            self.tool_calls.resize_with(index + 1, || ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let call = &mut self.tool_calls[index];
        if let Some(id) = &piece.id {
            call.id.clone_from(id);
        }
        if let Some(name) = &piece.name {
            call.name.push_str(name);
        }
        call.arguments.push_str(&piece.arguments);
    }

    /// Record the streamed attempt once: `broken` when it broke off.
    fn end_attempt(&mut self, broken: Option<&CallFailure>) {
        if self.attempt_recorded {
            return;
        }
        let Some(call) = self.call.as_mut() else {
            return;
        };
        self.attempt_recorded = true;
        call.run.attempts.push(attempt::answered(
            call.run.attempts.len(),
            &self.spec,
            self.attempt_started_at,
            self.attempt_clock.elapsed(),
            self.usage.unwrap_or(Usage {
                prompt_tokens: 0,
                completion_tokens: self.pieces,
            }),
            &self.text,
            match broken {
                None => Ending::Valid,
                Some(failure) => Ending::BrokenOff(failure),
            },
        ));
        let run = &mut call.run;
        run.model = Some(self.spec.name.clone());
        run.raw_output = Some(self.text.clone());
        match broken {
            None => {
                run.status = RunStatus::Ok;
                run.output = Some(answer_output(&self.text, &self.tool_calls));
            }
            Some(failure) => {
                run.status = RunStatus::Failed;
                run.error = Some(failure.message.clone());
            }
        }
    }

    /// Queue the run for recording and return its facts. Call after `next` returned `None`,
    /// or earlier when the client went away (the run then records that it was cut off).
    pub async fn finish(mut self) -> RunFacts {
        let (run, facts) = self.close();
        self.sink.record(run).await;
        facts
    }

    fn close(&mut self) -> (RunRecord, RunFacts) {
        if !self.done {
            self.done = true;
            let cut = CallFailure::new(
                ErrorKind::Cancelled,
                format!(
                    "the client went away after {} characters of the answer; the stream was cut off",
                    self.text.chars().count()
                ),
            );
            self.end_attempt(Some(&cut));
        }
        let mut call = self.call.take().expect("a gateway stream is closed once");
        attempt::finish_totals(&mut call.run, call.started);
        trace::record_run(&self.span, &call.run);
        let facts = RunFacts::of(&call.run, call.upstream);
        (call.run, facts)
    }
}

impl Drop for GatewayStream {
    fn drop(&mut self) {
        if self.call.is_none() {
            return;
        }
        let (run, _) = self.close();
        let sink = self.sink.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { sink.record(run).await });
            }
            Err(_) => {
                tracing::error!(run = %run.id, "a gateway stream was dropped outside the runtime; its run was not recorded")
            }
        }
    }
}

/// How much of `pending` can be restored and sent: all of it unless it ends inside what may
/// be a placeholder (`[EMAIL_1]`) still being streamed.
fn safe_prefix(pending: &str) -> usize {
    match pending.rfind('[') {
        Some(open) if !pending[open..].contains(']') && pending.len() - open < MAX_PLACEHOLDER => {
            open
        }
        _ => pending.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_split_across_pieces_are_held_back() {
        assert_eq!(safe_prefix("hello [EMA"), 6);
        assert_eq!(safe_prefix("hello [EMAIL_1] there"), 21);
        assert_eq!(safe_prefix("no brackets"), 11);
        let long = format!("[{}", "x".repeat(MAX_PLACEHOLDER));
        assert_eq!(safe_prefix(&long), long.len());
    }
}
