//! The gateway's model path: a client of `shopfloor serve` names a model from `shopfloor.toml`
//! and sends its own messages. The policy guard (data class, personal data), the per-attempt
//! timeout, retries with backoff and the `[gateway] fallbacks` apply as they do to workflow
//! runs, and every call is recorded as a run of the pseudo-workflow [`GATEWAY_WORKFLOW`].
//!
//! Nothing here waits for the store: runs are queued to the recorder.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shopfloor_core::output::OutputValidator;
use shopfloor_core::pii::{restore, Redactions};
use shopfloor_core::spec::ModelSpec;
use shopfloor_core::spec::OutputContract;
use shopfloor_providers::{
    ChatRequest, ChatResponse, FinishReason, Message, Part, ResponseFormat, Role, ToolCall,
    Unsupported, Usage,
};
use shopfloor_store::{AttemptOutcome, Caller, ErrorKind, RunOrigin, RunRecord, RunStatus};
use tracing::Instrument;

use crate::attempt::{self, Attempts, CallFailure, Ending, Route, Timed};
use crate::pipeline::{Ask, Complete, Ready};
use crate::recorder::Recorder;
use crate::redaction::StoreRedactor;
use crate::runner::new_run;
use crate::trace;
use crate::Engine;

mod embed;
mod stream;
mod workflow_input;

pub use embed::{EmbedAnswer, EmbedOutcome, EmbedRequest};
pub use stream::{GatewayStream, StreamItem};
pub use workflow_input::{last_user_text, workflow_input};

/// The workflow name gateway runs are recorded under.
pub const GATEWAY_WORKFLOW: &str = "gateway";

/// A chat call as a client of the gateway sent it: the request for the model it names, in the
/// engine's one request model, and what is recorded beside it.
#[derive(Debug, Clone, Default)]
pub struct GatewayRequest {
    /// `chat.model` is a model name from `shopfloor.toml` (not the vendor's id). What a client
    /// may ask is taken from it: messages, sampling (`max_tokens`, `temperature`, `top_p`,
    /// `seed`) and extras; an assistant prefix, choices and a `traceparent` are the engine's
    /// own and never taken from a client.
    pub chat: ChatRequest,
    pub caller: Option<Caller>,
    /// Fields recorded on the run and not sent to any model (OpenAI's `metadata`, `store`),
    /// as a JSON object; `None` when the client sent none.
    pub recorded: Option<Value>,
}

/// A model's answer through the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayAnswer {
    pub text: String,
    /// `None` when the provider reported none.
    pub usage: Option<Usage>,
    /// The tools the model called.
    pub tool_calls: Vec<ToolCall>,
    /// Token log probabilities in OpenAI's form, when asked for.
    pub logprobs: Option<Value>,
    pub finish_reason: FinishReason,
    /// The name (in `shopfloor.toml`) of the model that answered: a fallback, maybe.
    pub model: String,
}

/// Why the gateway could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error("unknown model \"{name}\"; models: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    /// No model of the route answered: refused by policy when every one refused, else the
    /// last model's failure.
    #[error(transparent)]
    Failed(CallFailure),
    /// The named model's provider cannot carry a field the client asked for.
    #[error("model \"{model}\" cannot take {}: {}", .unsupported.param, .unsupported.reason)]
    Unsupported {
        model: String,
        unsupported: Unsupported,
    },
    /// The answer broke the request's strict JSON schema, also when asked again. The message
    /// names the schema's places, never the answer.
    #[error("model \"{model}\" answered JSON that does not match the response_format schema, twice: {problem}")]
    InvalidOutput { model: String, problem: String },
}

impl GatewayError {
    /// Record this failure on the call's run: its status and its message.
    pub(crate) fn record_on(&self, run: &mut RunRecord) {
        run.status = match (self, self.kind()) {
            (GatewayError::InvalidOutput { model, .. }, _) => {
                run.model = Some(model.clone());
                RunStatus::Invalid
            }
            (_, ErrorKind::Refused) => RunStatus::Refused,
            _ => RunStatus::Failed,
        };
        run.error = Some(self.to_string());
    }

    /// The kind of failure, for statuses and metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::UnknownModel { .. } => ErrorKind::Unavailable,
            GatewayError::Failed(failure) => failure.kind,
            GatewayError::Unsupported { .. } => ErrorKind::Rejected,
            GatewayError::InvalidOutput { .. } => ErrorKind::Upstream,
        }
    }
}

/// What the caller needs to know about a recorded run (for responses and metrics) without
/// holding the whole record.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    pub id: String,
    pub workflow: String,
    pub status: RunStatus,
    /// The model that produced the final answer, else the last one tried.
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// Attempts that ended in an error (retried or not).
    pub failed_attempts: u32,
    /// How many times the route moved on to a next model.
    pub fallbacks: u32,
    /// Time spent in provider calls and retry waits: the rest of a request is the server's own.
    pub upstream: Duration,
}

impl RunFacts {
    /// The facts of `run`; `upstream` as measured by whoever ran it.
    pub fn of(run: &RunRecord, upstream: Duration) -> Self {
        let mut fallbacks = 0;
        for pair in run.attempts.windows(2) {
            if pair[0].model != pair[1].model {
                fallbacks += 1;
            }
        }
        RunFacts {
            id: run.id.clone(),
            workflow: run.workflow.clone(),
            status: run.status,
            model: run
                .model
                .clone()
                .or_else(|| run.attempts.last().map(|a| a.model.clone())),
            prompt_tokens: run.prompt_tokens,
            completion_tokens: run.completion_tokens,
            cost_usd: run.cost_usd,
            failed_attempts: run
                .attempts
                .iter()
                .filter(|a| a.outcome == AttemptOutcome::Error)
                .count() as u32,
            fallbacks,
            upstream,
        }
    }

    /// Provider time as the attempts recorded it (millisecond resolution), for runs whose
    /// calls were not timed more finely.
    pub fn of_attempts(run: &RunRecord) -> Self {
        let ms: u64 = run.attempts.iter().map(|a| a.latency_ms).sum();
        Self::of(run, Duration::from_millis(ms))
    }
}

/// A finished non-streamed gateway call: the answer or why not, and the recorded run.
#[derive(Debug, Clone)]
pub struct GatewayOutcome {
    pub result: Result<GatewayAnswer, GatewayError>,
    pub run: RunFacts,
}

/// Queues runs for writing, redacted as the store policy says; cheap to clone and `'static`,
/// so that a stream can record itself after the request that started it is gone.
#[derive(Clone)]
pub(crate) struct RecordSink {
    recorder: Recorder,
    redactor: Option<StoreRedactor>,
}

impl RecordSink {
    async fn record(&self, run: RunRecord) {
        let run = match &self.redactor {
            Some(redactor) => redactor.run(run),
            None => run,
        };
        self.recorder.record(run).await;
    }
}

/// One gateway call in progress: the record it builds and what the route has tried.
struct Call {
    run: RunRecord,
    started: Instant,
    upstream: Duration,
    redactions: Redactions,
    route: Route,
    /// The model the client named cannot carry what it asked: nothing is called.
    unsupported: Option<GatewayError>,
}

impl Engine {
    /// The models a gateway client may name: those allowed the gateway's data class.
    pub fn gateway_models(&self) -> Vec<&ModelSpec> {
        let class = self.project.config.gateway.data_class;
        self.project
            .config
            .models
            .values()
            .filter(|m| m.data_classes.contains(&class))
            .collect()
    }

    /// The gateway's models that can be called now ([`Engine::why_not_callable`] says
    /// nothing against them).
    pub fn callable_gateway_models(&self) -> Vec<&ModelSpec> {
        self.gateway_models()
            .into_iter()
            .filter(|m| self.why_not_callable(m).is_none())
            .collect()
    }

    /// Why `model` cannot be called now (its provider does not build: a key variable unset),
    /// or `None` when it can.
    pub fn why_not_callable(&self, model: &ModelSpec) -> Option<String> {
        self.runner
            .models
            .callable(model)
            .err()
            .map(|e| e.to_string())
    }

    /// The models tried for a call to `model`: it, then its `[gateway] fallbacks`.
    fn gateway_route(&self, model: &str) -> Result<Vec<String>, GatewayError> {
        let Some(spec) = self.project.config.models.get(model) else {
            return Err(GatewayError::UnknownModel {
                name: model.to_string(),
                known: self
                    .gateway_models()
                    .iter()
                    .map(|m| m.name.clone())
                    .collect(),
            });
        };
        if spec.kind != shopfloor_core::spec::ModelUse::Chat {
            return Err(GatewayError::Unsupported {
                model: model.to_string(),
                unsupported: Unsupported {
                    param: "model".into(),
                    reason: "it is an embedding model; send its texts to POST /v1/embeddings"
                        .into(),
                },
            });
        }
        let mut route = vec![model.to_string()];
        if let Some(next) = self.project.config.gateway.fallbacks.get(model) {
            route.extend(next.iter().filter(|n| n.as_str() != model).cloned());
        }
        Ok(route)
    }

    pub(crate) fn record_sink(&self) -> RecordSink {
        RecordSink {
            recorder: self.recorder.clone(),
            redactor: self.store_redactor.clone(),
        }
    }

    fn start_call(&self, request: &GatewayRequest) -> Call {
        let chat = &request.chat;
        let mut input = json!({
            "model": chat.model,
            "messages": recorded_messages(&chat.messages),
            "max_tokens": chat.max_tokens,
            "temperature": chat.temperature,
        });
        if let Some(Value::Object(recorded)) = &request.recorded {
            for (field, value) in recorded {
                input[field] = value.clone();
            }
        }
        Call {
            run: new_run(
                RunOrigin::Gateway,
                GATEWAY_WORKFLOW,
                &gateway_version(self.project.config.models.get(&chat.model)),
                input,
                None,
                request.caller.clone(),
            ),
            started: Instant::now(),
            upstream: Duration::ZERO,
            redactions: Redactions::new(),
            route: Route::default(),
            unsupported: None,
        }
    }

    /// Apply the policy to the messages for `name` and build its provider and request; `None`
    /// (with the reason recorded) when this model cannot be called. A model that cannot carry
    /// a field the client asked for is not called: for the model the client `named`, that
    /// ends the call (a 400 naming the field); a fallback is skipped.
    fn prepare<'a>(
        &'a self,
        name: &str,
        named: bool,
        request: &GatewayRequest,
        call: &mut Call,
    ) -> Option<Ready<'a>> {
        let runner = &self.runner;
        let (log, redactions) = (&mut call.run.attempts, &mut call.redactions);
        let chat = &request.chat;
        let sent = ChatRequest {
            messages: chat.messages.clone(),
            max_tokens: chat.max_tokens,
            temperature: chat.temperature,
            top_p: chat.top_p,
            seed: chat.seed,
            extras: chat.extras.clone(),
            ..ChatRequest::default()
        };
        let class = self.project.config.gateway.data_class;
        let cleared = runner
            .spec(name)
            .and_then(|spec| runner.clear(spec, class, sent, redactions, log));
        let cleared = match cleared {
            Ok(cleared) => cleared,
            Err(failure) => {
                call.route.failed(failure);
                return None;
            }
        };
        if call.run.prompt.is_null() {
            call.run.prompt = json!({ "messages": recorded_messages(&cleared.request.messages) });
        }
        let model = match cleared.connect(&runner.models, &mut call.run.attempts) {
            Ok(model) => model,
            Err(failure) => {
                call.route.failed(failure);
                return None;
            }
        };
        if let Some(unsupported) = model.provider.unsupported(&model.request) {
            let error = GatewayError::Unsupported {
                model: model.spec.name.clone(),
                unsupported,
            };
            let failure = CallFailure::new(ErrorKind::Rejected, error.to_string());
            attempt::not_called(&mut call.run.attempts, model.spec, &failure);
            call.route.failed(failure);
            if named {
                call.unsupported = Some(error);
            }
            return None;
        }
        Some(model)
    }

    /// The attempt loop for one model of a gateway route.
    fn attempts<'a>(&self, spec: &'a ModelSpec) -> Attempts<'a> {
        let gateway = &self.project.config.gateway;
        Attempts::new(
            spec,
            Duration::from_millis(gateway.timeout_ms),
            gateway.retries,
            self.runner.retry,
        )
    }

    /// How many input tokens the named model would read for `request` (Anthropic's
    /// `count_tokens`): counted by the model's own tokenizer (the embedded model) or counting
    /// endpoint (Anthropic), after the policy guard (what would leave is what is counted). No
    /// fallback counts for another model, nothing is generated, and no run is recorded.
    pub async fn gateway_count_tokens(&self, request: GatewayRequest) -> Result<u32, GatewayError> {
        self.gateway_route(&request.chat.model)?;
        let mut call = self.start_call(&request);
        let Some(prepared) = self.prepare(&request.chat.model, true, &request, &mut call) else {
            return Err(call
                .unsupported
                .take()
                .unwrap_or_else(|| GatewayError::Failed(call.route.failure())));
        };
        if !prepared.provider.counts_tokens() {
            return Err(GatewayError::Unsupported {
                model: prepared.spec.name.clone(),
                unsupported: Unsupported {
                    param: "model".into(),
                    reason: format!(
                        "{} models have no token counting here (neither their tokenizer nor a counting endpoint); count with an anthropic or local model",
                        prepared.provider.kind()
                    ),
                },
            });
        }
        let timeout = Duration::from_millis(self.project.config.gateway.timeout_ms);
        let counted =
            tokio::time::timeout(timeout, prepared.provider.count_tokens(&prepared.request));
        match counted.await {
            Ok(Ok(tokens)) => Ok(tokens),
            Ok(Err(e)) => Err(GatewayError::Failed(CallFailure::from_provider(
                &prepared.spec.name,
                &e,
            ))),
            Err(_) => Err(GatewayError::Failed(CallFailure::new(
                ErrorKind::Timeout,
                format!("counting tokens took longer than {timeout:?}"),
            ))),
        }
    }

    /// Call a model (and its fallbacks) with the client's messages, record the run, and
    /// return the answer.
    pub async fn gateway_complete(&self, request: GatewayRequest) -> GatewayOutcome {
        self.complete_routed(request)
            .instrument(trace::run_span(GATEWAY_WORKFLOW))
            .await
    }

    async fn complete_routed(&self, request: GatewayRequest) -> GatewayOutcome {
        let route = match self.gateway_route(&request.chat.model) {
            Ok(route) => route,
            Err(e) => return self.unanswered(self.start_call(&request), e).await,
        };
        let mut call = self.start_call(&request);
        let Some((model, answer)) = self
            .first_answer::<Complete>(&route, &request, &mut call)
            .await
        else {
            return self.route_failed(call).await;
        };
        let mut response = answer.value;
        restore_answer(&mut response, model.redacting, &call.redactions);
        let mut timed = (answer.started_at_ms, answer.latency);
        if let Some(schema) = strict_schema(&request) {
            match self
                .conforming(&model, &schema, response, timed, &mut call)
                .await
            {
                Ok((conforming, at)) => (response, timed) = (conforming, at),
                Err(error) => return self.unanswered(call, error).await,
            }
        }
        call.run.attempts.push(attempt::answered(
            call.run.attempts.len(),
            model.spec,
            timed.0,
            timed.1,
            response.usage.unwrap_or_default(),
            &response.text,
            Ending::Valid,
        ));
        let answer = GatewayAnswer {
            text: response.text,
            usage: response.usage,
            tool_calls: response.tool_calls,
            logprobs: response.logprobs,
            finish_reason: response.finish_reason,
            model: model.spec.name.clone(),
        };
        let facts = self.settle(call, Ok(&answer)).await;
        GatewayOutcome {
            result: Ok(answer),
            run: facts,
        }
    }

    /// An answer that meets the request's strict JSON schema: `response` itself, or the
    /// answer to asking the same model once more with what is wrong (both recorded as
    /// attempts). Never a non-conforming answer passed through as if it were one.
    async fn conforming(
        &self,
        model: &Ready<'_>,
        schema: &OutputValidator,
        response: ChatResponse,
        timed: (i64, Duration),
        call: &mut Call,
    ) -> Result<(ChatResponse, (i64, Duration)), GatewayError> {
        let problem = match schema.parse(&response.text) {
            Ok(_) => return Ok((response, timed)),
            Err(problem) => problem,
        };
        call.invalid_answer(model.spec, timed, &response, &problem);
        // Ask again with the answer and what is wrong with it, under the same policy.
        let mut again = model.clone();
        let mut said = response.text.clone();
        let mut told = format!(
            "Your answer does not match the response_format JSON schema: {}. Answer again with only JSON that matches it.",
            problem.for_model()
        );
        if model.redacting {
            said = self.runner.guard().redact_more(&said, &mut call.redactions);
            told = self.runner.guard().redact_more(&told, &mut call.redactions);
        }
        again
            .request
            .messages
            .push(Message::new(Role::Assistant, said));
        again.request.messages.push(Message::new(Role::User, told));
        let mut attempts = self.attempts(model.spec);
        let result = again
            .send::<Complete>(&mut attempts, &mut call.run.attempts)
            .await;
        call.upstream += attempts.upstream();
        let answer = result.map_err(GatewayError::Failed)?;
        let mut second = answer.value;
        restore_answer(&mut second, model.redacting, &call.redactions);
        let timed = (answer.started_at_ms, answer.latency);
        match schema.parse(&second.text) {
            Ok(_) => Ok((second, timed)),
            Err(problem) => {
                call.invalid_answer(model.spec, timed, &second, &problem);
                call.run.raw_output = Some(second.text);
                Err(GatewayError::InvalidOutput {
                    model: model.spec.name.clone(),
                    problem: problem.to_string(),
                })
            }
        }
    }

    /// Try the route's models in turn, each through its attempt loop, until one answers `A`;
    /// the failures are tallied on the call's route. `None` when no model answered.
    async fn first_answer<'a, A: Ask>(
        &'a self,
        route: &[String],
        request: &GatewayRequest,
        call: &mut Call,
    ) -> Option<(Ready<'a>, Timed<A::Answer>)> {
        for (index, name) in route.iter().enumerate() {
            let Some(model) = self.prepare(name, index == 0, request, call) else {
                if call.unsupported.is_some() {
                    return None;
                }
                continue;
            };
            let mut attempts = self.attempts(model.spec);
            let result = model.send::<A>(&mut attempts, &mut call.run.attempts).await;
            call.upstream += attempts.upstream();
            match result {
                Ok(answer) => return Some((model, answer)),
                Err(failure) => call.route.failed(failure),
            }
        }
        None
    }

    /// Every model of the route failed: the call is recorded with the route's failure.
    async fn route_failed(&self, mut call: Call) -> GatewayOutcome {
        let error = match call.unsupported.take() {
            Some(unsupported) => unsupported,
            None => GatewayError::Failed(std::mem::take(&mut call.route).failure()),
        };
        self.unanswered(call, error).await
    }

    /// A call that got no answer is recorded too, a call to a model that does not exist
    /// included: someone tried.
    async fn unanswered(&self, call: Call, error: GatewayError) -> GatewayOutcome {
        let facts = self.settle(call, Err(&error)).await;
        GatewayOutcome {
            result: Err(error),
            run: facts,
        }
    }

    /// Fill in the run's totals and outcome, queue it for recording and return its facts.
    async fn settle(
        &self,
        mut call: Call,
        result: Result<&GatewayAnswer, &GatewayError>,
    ) -> RunFacts {
        let run = &mut call.run;
        match result {
            Ok(answer) => {
                run.status = RunStatus::Ok;
                run.model = Some(answer.model.clone());
                run.raw_output = Some(answer.text.clone());
                run.output = Some(answer_output(&answer.text, &answer.tool_calls));
            }
            Err(error) => error.record_on(run),
        }
        attempt::finish_totals(run, call.started);
        trace::record_run(&tracing::Span::current(), run);
        let facts = RunFacts::of(run, call.upstream);
        self.record(call.run).await;
        facts
    }
}

impl Call {
    /// `spec` answered, at `timed` (start, latency), what broke the request's schema.
    fn invalid_answer(
        &mut self,
        spec: &ModelSpec,
        timed: (i64, Duration),
        response: &ChatResponse,
        problem: &shopfloor_core::output::ContractViolation,
    ) {
        self.run.attempts.push(attempt::answered(
            self.run.attempts.len(),
            spec,
            timed.0,
            timed.1,
            response.usage.unwrap_or_default(),
            &response.text,
            Ending::Invalid(problem),
        ));
    }
}

/// Put the originals back into an answer to a redacted request.
fn restore_answer(response: &mut ChatResponse, redacting: bool, redactions: &Redactions) {
    if redacting {
        response.text = restore(&response.text, redactions);
        for tool_call in &mut response.tool_calls {
            tool_call.arguments = restore(&tool_call.arguments, redactions);
        }
    }
}

/// Whether the request's `response_format` is a JSON schema with `strict: true`: the gateway
/// then checks the answer against it, whatever the provider promised (and a stream is
/// answered whole first).
pub fn has_strict_schema(request: &GatewayRequest) -> bool {
    strict_schema_of(request).is_some()
}

fn strict_schema_of(request: &GatewayRequest) -> Option<&Value> {
    match request.chat.extras.as_deref()?.response_format.as_ref()? {
        ResponseFormat::JsonSchema {
            schema: Some(schema),
            strict: Some(true),
            ..
        } => Some(schema),
        _ => None,
    }
}

/// The validator of the request's strict schema, compiled once per call.
fn strict_schema(request: &GatewayRequest) -> Option<OutputValidator> {
    OutputValidator::new(&OutputContract::Json(strict_schema_of(request)?.clone())).ok()
}

/// A gateway answer as its run records it: the text, or with tool calls an object of both.
pub(crate) fn answer_output(text: &str, tool_calls: &[ToolCall]) -> Value {
    if tool_calls.is_empty() {
        return Value::String(text.to_string());
    }
    json!({ "content": text, "tool_calls": tool_calls })
}

/// What a gateway run's `version` says: which endpoint the named model was, as a short hash
/// of its provider and model id (a gateway call has no prompt or contract to version).
fn gateway_version(spec: Option<&ModelSpec>) -> String {
    use sha2::{Digest, Sha256};
    let Some(spec) = spec else {
        return "unknown-model".to_string();
    };
    let digest = Sha256::digest(format!("{}\0{}", spec.provider.as_str(), spec.model).as_bytes());
    hex::encode(&digest[..6])
}

/// Messages as a run records them: an image sent inline (a data URL, up to megabytes) is
/// kept as its media type and SHA-256 (`data:image/png;sha256,HEX`), which says which image it
/// was without storing it; an image's `https://` URL is kept as it is.
fn recorded_messages(messages: &[Message]) -> Value {
    // The common case, no inline image, is recorded as it is, without a copy.
    if !messages
        .iter()
        .flat_map(Message::images)
        .any(|image| image.data().is_some())
    {
        return json!(messages);
    }
    let mut messages = messages.to_vec();
    for message in &mut messages {
        for part in &mut message.parts {
            if let Part::Image(image) = part {
                if let Some((media_type, data)) = image.data() {
                    let digest = hex::encode(Sha256::digest(data.as_bytes()));
                    image.url = format!("data:{media_type};sha256,{digest}");
                }
            }
        }
    }
    json!(messages)
}
