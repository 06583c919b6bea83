//! The OpenAI-compatible endpoints: `POST /v1/chat/completions` (streamed or not) and
//! `GET /v1/models`. `model` names a model of `shopfloor.toml`, or `workflow:NAME` to run a
//! workflow with the last user message as its input.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use shopfloor_core::access::Permission;
use shopfloor_engine::chat::openai as wire;
use shopfloor_engine::chat::{ChatRequest, ToolCall, ToolCallDelta, Usage};
use shopfloor_engine::store_types::{RunRecord, RunStatus};
use shopfloor_engine::{
    has_strict_schema, last_user_text, workflow_input, GatewayAnswer, GatewayOutcome,
    GatewayRequest, GatewayStream, RunFacts, StreamItem,
};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::auth::Principal;
use crate::chat_body::{messages, ChatBody};
use crate::error::ApiError;
use crate::workflows::{output_text, run_failure};
use crate::{json_response, AppState, Json, RUN_ID_HEADER};

/// The prefix that makes `model` name a workflow.
pub(crate) const WORKFLOW_PREFIX: &str = "workflow:";

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(
    State(state): State<AppState>,
    principal: Principal,
    Json(mut body): Json<ChatBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    if let Some((field, why)) = body.refused.take() {
        return Err(ApiError::bad_request(why).param(field));
    }
    if body.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is supported").param("n"));
    }
    let include_usage = body.include_usage;
    let stream = body.stream;
    let legacy = body.legacy_functions;
    let caller = principal.caller(body.user());
    let subject = body.user().map(str::to_string);
    let model = std::mem::take(&mut body.model);
    let workflow = model.strip_prefix(WORKFLOW_PREFIX).map(str::to_string);
    if workflow.is_some() {
        refuse_beyond_plain(&body)?;
    }
    let request = GatewayRequest {
        chat: ChatRequest {
            model: model.clone(),
            messages: messages(body.messages)?,
            max_tokens: body.max_completion_tokens.or(body.max_tokens),
            temperature: body.temperature,
            top_p: body.top_p,
            seed: body.seed,
            extras: body.extras,
            ..ChatRequest::default()
        },
        caller: Some(caller),
        recorded: body.recorded.map(Value::Object),
    };
    if let Some(workflow) = workflow {
        let call = WorkflowCall {
            subject,
            stream,
            include_usage,
            started,
        };
        return workflow_chat(state, &workflow, request, call).await;
    }
    // A strict JSON schema is checked once the whole answer is in (and asked again when it
    // does not match), so such a stream is answered whole, then sent as events.
    if stream && !has_strict_schema(&request) {
        let stream = open_stream(&state, request, started)
            .await
            .map_err(|e| in_callers_terms(e, legacy))?;
        let chunks = Chunks::new(stream.run_id(), model, legacy, include_usage);
        return Ok(serve_stream(state, stream, chunks, started));
    }
    let outcome = complete(&state, request, started).await?;
    match outcome.result {
        Ok(answer) if stream => Ok(replayed(
            Chunks::new(&outcome.run.id, model, legacy, include_usage),
            &outcome.run.id,
            answer,
        )),
        Ok(answer) => Ok(completion(&model, &outcome.run.id, &answer, legacy)),
        Err(e) => {
            let model = outcome.run.model.as_deref();
            Err(in_callers_terms(ApiError::gateway(e, model), legacy).run(outcome.run.id))
        }
    }
}

/// A refusal of `tools` / `tool_choice` names what a client of the legacy API sent
/// (`functions` / `function_call`).
fn in_callers_terms(error: ApiError, legacy: bool) -> ApiError {
    if !legacy {
        return error;
    }
    error.renamed(&[("tools", "functions"), ("tool_choice", "function_call")])
}

/// A workflow takes its input from the last user message: what else a client asks for has
/// no place in its run, so it is refused rather than dropped (`user` names the caller).
fn refuse_beyond_plain(body: &ChatBody) -> Result<(), ApiError> {
    let extra = body
        .extras
        .as_deref()
        .and_then(|e| e.set_fields().into_iter().find(|f| *f != "user"))
        .map(str::to_string)
        .or_else(|| {
            body.recorded
                .as_ref()
                .and_then(|r| r.keys().next().cloned())
        });
    match extra {
        Some(field) => Err(ApiError::bad_request(format!(
            "{field} is not supported for {WORKFLOW_PREFIX}NAME models: a workflow's prompt, contract and route say how it is asked"
        ))
        .param(field)),
        None => Ok(()),
    }
}

/// A `chat.completion` body; `legacy` answers tool calls as the legacy `function_call`.
fn completion(requested: &str, run_id: &str, answer: &GatewayAnswer, legacy: bool) -> Response {
    let mut message = wire::AssistantMessage {
        role: "assistant".into(),
        content: Some(answer.text.clone()),
        ..wire::AssistantMessage::default()
    };
    if !answer.tool_calls.is_empty() {
        if answer.text.is_empty() {
            message.content = None;
        }
        if legacy {
            let call = &answer.tool_calls[0];
            message.function_call = Some(wire::Function {
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
        } else {
            message.tool_calls = answer.tool_calls.iter().map(tool_call).collect();
        }
    }
    let body = wire::Completion {
        id: format!("chatcmpl-{run_id}"),
        object: "chat.completion".into(),
        created: unix_seconds(),
        model: Some(requested.to_string()),
        choices: vec![wire::Choice {
            index: 0,
            message,
            logprobs: answer.logprobs.clone(),
            finish_reason: Some(wire::finish_reason_name(answer.finish_reason, legacy).into()),
        }],
        // `null` when the provider reported none: never made-up zeros.
        usage: answer.usage.map(wire::Usage::from),
        system_fingerprint: None,
    };
    with_run(
        json_response(StatusCode::OK, &body),
        run_id,
        Some(&answer.model),
    )
}

/// `response` with the headers naming its run and the model that answered.
pub(crate) fn with_run(mut response: Response, run_id: &str, model: Option<&str>) -> Response {
    if let Ok(value) = HeaderValue::from_str(run_id) {
        response.headers_mut().insert(RUN_ID_HEADER, value);
    }
    if let Some(value) = model.and_then(|m| HeaderValue::from_str(m).ok()) {
        response.headers_mut().insert(crate::MODEL_HEADER, value);
    }
    response
}

fn tool_call(call: &ToolCall) -> wire::ToolCall {
    wire::ToolCall {
        id: call.id.clone(),
        kind: "function".into(),
        function: wire::Function {
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        },
    }
}

/// A streamed piece of a tool call: its first piece has the id, type and name; `legacy`
/// writes it as the legacy `function_call`.
fn tool_call_delta(piece: ToolCallDelta, legacy: bool) -> wire::Delta {
    let function = wire::FunctionPiece {
        name: piece.name,
        arguments: Some(piece.arguments),
    };
    if legacy {
        return wire::Delta {
            function_call: Some(function),
            ..wire::Delta::default()
        };
    }
    wire::Delta {
        tool_calls: vec![wire::ToolCallPiece {
            index: piece.index,
            kind: piece.id.is_some().then(|| "function".into()),
            id: piece.id,
            function: Some(function),
        }],
        ..wire::Delta::default()
    }
}

pub(crate) fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How a stream's items go on the wire: Chat Completions chunks here, Anthropic's Messages
/// events in `messages.rs`. One pump and one replay serve both.
pub(crate) trait StreamWire: Send + 'static {
    /// The events before the first item.
    fn opening(&mut self) -> Vec<Bytes>;
    /// The events of one item; `answering` is the model that answers (for errors).
    fn item(&mut self, item: StreamItem, answering: &str) -> Vec<Bytes>;
}

/// Server-sent events of `chat.completion.chunk`s.
struct Chunks {
    id: String,
    created: u64,
    model: String,
    /// Tool calls go out as the legacy `function_call`.
    legacy: bool,
    /// A chunk with the usage before `[DONE]` (`stream_options.include_usage`).
    include_usage: bool,
}

impl Chunks {
    fn new(run_id: &str, requested: String, legacy: bool, include_usage: bool) -> Self {
        Chunks {
            id: format!("chatcmpl-{run_id}"),
            created: unix_seconds(),
            model: requested,
            legacy,
            include_usage,
        }
    }

    fn chunk(&self, choices: Vec<wire::ChunkChoice>, usage: Option<Option<Usage>>) -> Bytes {
        sse(&wire::Chunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: Some(self.model.clone()),
            choices,
            usage: usage.map(|u| u.map(wire::Usage::from)),
            error: None,
        })
    }

    fn event(&self, delta: wire::Delta, finish: Option<&str>) -> Bytes {
        let choice = wire::ChunkChoice {
            index: 0,
            delta: Some(delta),
            finish_reason: finish.map(str::to_string),
        };
        self.chunk(vec![choice], None)
    }
}

impl StreamWire for Chunks {
    fn opening(&mut self) -> Vec<Bytes> {
        let delta = wire::Delta {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..wire::Delta::default()
        };
        vec![self.event(delta, None)]
    }

    fn item(&mut self, item: StreamItem, answering: &str) -> Vec<Bytes> {
        match item {
            StreamItem::Text(text) => {
                let delta = wire::Delta {
                    content: Some(text),
                    ..wire::Delta::default()
                };
                vec![self.event(delta, None)]
            }
            StreamItem::ToolCall(piece) => {
                vec![self.event(tool_call_delta(piece, self.legacy), None)]
            }
            StreamItem::Done {
                usage,
                finish_reason: reason,
            } => {
                let reason = wire::finish_reason_name(reason, self.legacy);
                let mut events = vec![self.event(wire::Delta::default(), Some(reason))];
                if self.include_usage {
                    // `null` when the provider reported none.
                    events.push(self.chunk(Vec::new(), Some(usage)));
                }
                events.push(Bytes::from_static(DONE));
                events
            }
            StreamItem::Error(e) => {
                let error = ApiError::gateway(e, Some(answering));
                vec![sse(&json!({"error": {
                    "message": error.message,
                    "type": error.kind,
                    "param": null,
                    "code": error.code,
                }}))]
            }
        }
    }
}

fn sse(value: &impl serde::Serialize) -> Bytes {
    sse_event(None, value)
}

/// One server-sent event: `event: NAME` when named (Anthropic's and the Responses API's
/// events are), then `data:` with the JSON.
pub(crate) fn sse_event(name: Option<&str>, data: &impl serde::Serialize) -> Bytes {
    let mut out = Vec::with_capacity(256);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut out, data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// A whole answer, in a task of its own (a client that goes away never loses the record of
/// its run), counted in the metrics.
pub(crate) async fn complete(
    state: &AppState,
    request: GatewayRequest,
    started: Instant,
) -> Result<GatewayOutcome, ApiError> {
    let engine = state.engine.clone();
    let metrics_state = state.clone();
    state
        .detached(async move {
            let outcome = engine.gateway_complete(request).await;
            metrics_state.metrics.run(&outcome.run, started.elapsed());
            outcome
        })
        .await
}

/// Open a streamed answer: the route is tried until a model starts answering (errors before
/// then get a proper status, with the run that recorded them).
pub(crate) async fn open_stream(
    state: &AppState,
    request: GatewayRequest,
    started: Instant,
) -> Result<GatewayStream, ApiError> {
    let engine = state.engine.clone();
    let metrics_state = state.clone();
    let opened = state
        .detached(async move {
            let opened = engine.gateway_stream(request).await;
            if let Err(outcome) = &opened {
                metrics_state.metrics.run(&outcome.run, started.elapsed());
            }
            opened
        })
        .await?;
    opened.map_err(|outcome| {
        let model = outcome.run.model.as_deref();
        outcome
            .result
            .err()
            .map(|e| ApiError::gateway(e, model))
            .unwrap_or_else(|| ApiError::internal("the stream ended before it began"))
            .run(outcome.run.id)
    })
}

/// Answer with an open stream in `wire`'s events. The stream is driven by a task of its own,
/// so that the run is recorded whether or not the client stays.
pub(crate) fn serve_stream<W: StreamWire>(
    state: AppState,
    stream: GatewayStream,
    wire: W,
    started: Instant,
) -> Response {
    let run_id = stream.run_id().to_string();
    let answering = stream.model_name().to_string();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let task_state = state.clone();
    state
        .tasks
        .spawn(pump(task_state, stream, wire, tx, started).instrument(tracing::Span::current()));
    with_run(sse_response(rx), &run_id, Some(&answering))
}

/// Send `events` in order; `false` once the client has gone away.
async fn send_all(tx: &mpsc::Sender<Bytes>, events: Vec<Bytes>) -> bool {
    for event in events {
        if tx.send(event).await.is_err() {
            return false;
        }
    }
    true
}

/// Move a stream's pieces to the client; stop (and record the cut) when it goes away.
async fn pump<W: StreamWire>(
    state: AppState,
    mut stream: GatewayStream,
    mut wire: W,
    tx: mpsc::Sender<Bytes>,
    started: Instant,
) {
    let mut client_here = send_all(&tx, wire.opening()).await;
    while client_here {
        let Some(item) = stream.next().await else {
            break;
        };
        let events = wire.item(item, stream.model_name());
        client_here = send_all(&tx, events).await;
    }
    if !client_here {
        tracing::warn!(
            run_id = stream.run_id(),
            workflow = "gateway",
            model = stream.model_name(),
            "the client went away mid-stream"
        );
    }
    let facts = stream.finish().await;
    state.metrics.run(&facts, started.elapsed());
}

fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// How a `workflow:NAME` call asked to be answered.
struct WorkflowCall {
    /// The end user the request named: the subject of the workflow's experiment.
    subject: Option<String>,
    stream: bool,
    include_usage: bool,
    started: Instant,
}

/// `model = "workflow:NAME"`: run the workflow with the last user message as its input and
/// answer with its output as text.
async fn workflow_chat(
    state: AppState,
    workflow: &str,
    request: GatewayRequest,
    call: WorkflowCall,
) -> Result<Response, ApiError> {
    let WorkflowCall {
        subject,
        stream,
        include_usage,
        started,
    } = call;
    tracing::Span::current().record("workflow", workflow);
    let loaded = state.engine.project.workflow(workflow).map_err(|_| {
        ApiError::not_found(format!(
            "unknown model \"{WORKFLOW_PREFIX}{workflow}\": no workflow named \"{workflow}\""
        ))
        .param("model")
        .code("model_not_found")
    })?;
    if request.chat.messages.iter().any(|m| !m.parts.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "workflow {workflow} takes its input as text (its input schema); images cannot be given to a workflow"
        ))
        .param("messages"));
    }
    let text = last_user_text(&request.chat.messages).ok_or_else(|| {
        ApiError::bad_request("no user message to use as the workflow's input").param("messages")
    })?;
    let input = workflow_input(&loaded.spec.input_schema, text)
        .map_err(|e| ApiError::bad_request(e).param("messages"))?;
    let engine = state.engine.clone();
    let metrics_state = state.clone();
    let name = workflow.to_string();
    let caller = request.caller.clone();
    let run = state
        .detached(async move {
            let run = engine
                .run_workflow(&name, input, None, caller, subject.as_deref())
                .await;
            if let Ok(run) = &run {
                metrics_state
                    .metrics
                    .run(&RunFacts::of_attempts(run), started.elapsed());
            }
            run
        })
        .await??;
    let requested = format!("{WORKFLOW_PREFIX}{workflow}");
    match run.status {
        RunStatus::Ok => {}
        RunStatus::Held => return Ok(held_completion(&requested, &run)),
        _ => return Err(run_failure(&run)),
    }
    let answer = GatewayAnswer {
        text: run.output.as_ref().map(output_text).unwrap_or_default(),
        usage: Some(Usage {
            prompt_tokens: run.prompt_tokens as u32,
            completion_tokens: run.completion_tokens as u32,
        }),
        tool_calls: Vec::new(),
        logprobs: None,
        finish_reason: shopfloor_engine::chat::FinishReason::Stop,
        model: run.model.clone().unwrap_or_default(),
    };
    if !stream {
        return Ok(completion(&requested, &run.id, &answer, false));
    }
    Ok(replayed(
        Chunks::new(&run.id, requested, false, include_usage),
        &run.id,
        answer,
    ))
}

/// An answer that is already whole, sent as the events of a stream: a workflow's output, or
/// an answer checked against a strict JSON schema.
pub(crate) fn replayed<W: StreamWire>(
    mut wire: W,
    run_id: &str,
    answer: GatewayAnswer,
) -> Response {
    let mut items = Vec::new();
    if !answer.text.is_empty() || answer.tool_calls.is_empty() {
        items.push(StreamItem::Text(answer.text));
    }
    for (index, call) in answer.tool_calls.into_iter().enumerate() {
        items.push(StreamItem::ToolCall(ToolCallDelta {
            index: index as u32,
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments,
        }));
    }
    items.push(StreamItem::Done {
        usage: answer.usage,
        finish_reason: answer.finish_reason,
    });
    let mut events = wire.opening();
    for item in items {
        events.extend(wire.item(item, &answer.model));
    }
    let (tx, rx) = mpsc::channel(events.len());
    for event in events {
        let _ = tx.try_send(event);
    }
    with_run(sse_response(rx), run_id, Some(&answer.model))
}

/// A held run through the gateway: accepted, but its output waits for a reviewer, so the
/// client gets no content — only the run to look up later.
fn held_completion(requested: &str, run: &RunRecord) -> Response {
    let body = json!({
        "id": format!("chatcmpl-{}", run.id),
        "object": "chat.completion",
        "created": unix_seconds(),
        "model": requested,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": null },
            "finish_reason": "content_filter",
        }],
        "usage": wire::Usage::from(Usage {
            prompt_tokens: run.prompt_tokens as u32,
            completion_tokens: run.completion_tokens as u32,
        }),
        "shopfloor": { "run_id": run.id, "status": "held", "pending_review": true },
    });
    with_run(json_response(StatusCode::ACCEPTED, &body), &run.id, None)
}

fn model_object(m: &shopfloor_core::spec::ModelSpec) -> Value {
    json!({"id": m.name, "object": "model", "created": 0, "owned_by": m.provider.as_str()})
}

/// `GET /v1/models/{id}`: one model the gateway can call, or `workflow:NAME` for a key that
/// may run workflows; 404 in OpenAI's form otherwise, saying why.
pub(crate) async fn model(
    State(state): State<AppState>,
    Path(id): Path<String>,
    principal: Principal,
) -> Result<Response, ApiError> {
    if let Some(name) = id.strip_prefix(WORKFLOW_PREFIX) {
        if principal.role.allows(Permission::RunWorkflows)
            && state.engine.project.workflows.contains_key(name)
        {
            let body = json!({"id": id, "object": "model", "created": 0, "owned_by": "shopfloor"});
            return Ok(json_response(StatusCode::OK, &body));
        }
    } else if let Some(m) = state
        .engine
        .gateway_models()
        .into_iter()
        .find(|m| m.name == id)
    {
        return match state.engine.why_not_callable(m) {
            None => Ok(json_response(StatusCode::OK, &model_object(m))),
            Some(why) => Err(ApiError::not_found(format!(
                "model \"{id}\" cannot be called: {why}"
            ))
            .code("model_not_found")),
        };
    }
    Err(ApiError::not_found(format!(
        "no model \"{id}\"; GET /v1/models lists the models this key may call"
    ))
    .code("model_not_found"))
}

/// `GET /v1/models`: the models this key may call (their key is set), and its workflows as
/// `workflow:NAME` when it may run them.
pub(crate) async fn models(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let mut data: Vec<Value> = state
        .engine
        .callable_gateway_models()
        .into_iter()
        .map(model_object)
        .collect();
    if principal.role.allows(Permission::RunWorkflows) {
        data.extend(state.engine.project.workflows.keys().map(|name| {
            json!({"id": format!("{WORKFLOW_PREFIX}{name}"), "object": "model", "created": 0, "owned_by": "shopfloor"})
        }));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data}),
    ))
}
