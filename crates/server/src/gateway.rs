//! The OpenAI-compatible endpoints: `POST /v1/chat/completions` (streamed or not) and
//! `GET /v1/models`. `model` names a model of `shopfloor.toml`, or `workflow:NAME` to run a
//! workflow with the last user message as its input.

use std::convert::Infallible;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use shopfloor_core::access::Permission;
use shopfloor_engine::{
    last_user_text, workflow_input, GatewayAnswer, GatewayRequest, GatewayStream, RunFacts,
    StreamItem,
};
use shopfloor_providers::{FinishReason, Message, Role, Usage};
use shopfloor_store::{RunRecord, RunStatus};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::workflows::{output_text, run_failure};
use crate::{json_response, AppState, Json, RUN_ID_HEADER};

/// The prefix that makes `model` name a workflow.
const WORKFLOW_PREFIX: &str = "workflow:";

/// The request body, as OpenAI's SDKs send it. Fields this gateway does not act on are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatBody {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    user: Option<String>,
    n: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// The messages as the engine takes them; 400 for what this gateway cannot pass on.
fn messages(wire: Vec<WireMessage>) -> Result<Vec<Message>, ApiError> {
    if wire.is_empty() {
        return Err(ApiError::bad_request("messages is empty").param("messages"));
    }
    wire.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}].role \"{other}\" is not supported; use system, developer, user or assistant"
                    ))
                    .param("messages"))
                }
            };
            let content = match m.content {
                Some(Content::Text(text)) => text,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(ApiError::bad_request(format!(
                                    "messages[{i}] has a content part of type \"{kind}\"; only text parts are supported"
                                ))
                                .param("messages"))
                            }
                        }
                    }
                    text
                }
                None => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}] has no content"
                    ))
                    .param("messages"))
                }
            };
            Ok(Message::new(role, content))
        })
        .collect()
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<ChatBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    if body.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is supported").param("n"));
    }
    if body.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(
            ApiError::bad_request("tools are not supported by this gateway").param("tools"),
        );
    }
    let include_usage = body
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let stream = body.stream;
    let caller = principal.caller(body.user.as_deref());
    let model = body.model.clone();
    let request = GatewayRequest {
        model: body.model,
        messages: messages(body.messages)?,
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
        temperature: body.temperature,
        top_p: body.top_p,
        seed: body.seed,
        caller: Some(caller),
    };
    if let Some(workflow) = model.strip_prefix(WORKFLOW_PREFIX) {
        return workflow_chat(state, workflow, request, stream, include_usage, started).await;
    }
    if stream {
        return stream_chat(state, request, include_usage, started).await;
    }
    let engine = state.engine.clone();
    let metrics_state = state.clone();
    let outcome = state
        .detached(async move {
            let outcome = engine.gateway_complete(request).await;
            metrics_state.metrics.run(&outcome.run, started.elapsed());
            outcome
        })
        .await?;
    match outcome.result {
        Ok(answer) => Ok(completion(&model, &outcome.run.id, &answer)),
        Err(e) => {
            let model = outcome.run.model.as_deref();
            Err(ApiError::gateway(e, model).run(outcome.run.id))
        }
    }
}

/// A `chat.completion` body.
fn completion(requested: &str, run_id: &str, answer: &GatewayAnswer) -> Response {
    let body = json!({
        "id": format!("chatcmpl-{run_id}"),
        "object": "chat.completion",
        "created": unix_seconds(),
        "model": requested,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": answer.text },
            "finish_reason": finish_reason(answer.finish_reason),
        }],
        "usage": usage(answer.usage),
        "system_fingerprint": Value::Null,
    });
    with_run(
        json_response(StatusCode::OK, &body),
        run_id,
        Some(&answer.model),
    )
}

fn with_run(mut response: Response, run_id: &str, model: Option<&str>) -> Response {
    if let Ok(value) = HeaderValue::from_str(run_id) {
        response.headers_mut().insert(RUN_ID_HEADER, value);
    }
    if let Some(value) = model.and_then(|m| HeaderValue::from_str(m).ok()) {
        response.headers_mut().insert("x-shopfloor-model", value);
    }
    response
}

fn usage(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Server-sent events of `chat.completion.chunk`s.
struct Chunks {
    id: String,
    created: u64,
    model: String,
}

impl Chunks {
    fn event(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        sse(&chunk)
    }

    fn usage(&self, usage: Usage) -> Bytes {
        sse(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self::usage(usage),
        }))
    }
}

fn sse(value: &Value) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// A streamed answer: the route is tried until a model starts answering (errors before then
/// get a proper status); the stream is then driven by a task of its own, so that the run is
/// recorded whether or not the client stays.
async fn stream_chat(
    state: AppState,
    request: GatewayRequest,
    include_usage: bool,
    started: Instant,
) -> Result<Response, ApiError> {
    let requested = request.model.clone();
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
    let stream = match opened {
        Ok(stream) => stream,
        Err(outcome) => {
            let model = outcome.run.model.as_deref();
            let error = outcome
                .result
                .err()
                .map(|e| ApiError::gateway(e, model))
                .unwrap_or_else(|| ApiError::internal("the stream ended before it began"));
            return Err(error.run(outcome.run.id));
        }
    };
    let run_id = stream.run_id().to_string();
    let answering = stream.model_name().to_string();
    let chunks = Chunks {
        id: format!("chatcmpl-{run_id}"),
        created: unix_seconds(),
        model: requested,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let task_state = state.clone();
    state.tasks.spawn(
        pump(task_state, stream, chunks, tx, include_usage, started)
            .instrument(tracing::Span::current()),
    );
    Ok(with_run(sse_response(rx), &run_id, Some(&answering)))
}

/// Move a stream's pieces to the client; stop (and record the cut) when it goes away.
async fn pump(
    state: AppState,
    mut stream: GatewayStream,
    chunks: Chunks,
    tx: mpsc::Sender<Bytes>,
    include_usage: bool,
    started: Instant,
) {
    let mut client_here = tx
        .send(chunks.event(json!({"role": "assistant", "content": ""}), None))
        .await
        .is_ok();
    while client_here {
        let Some(item) = stream.next().await else {
            break;
        };
        let sent = match item {
            StreamItem::Text(text) => tx.send(chunks.event(json!({"content": text}), None)).await,
            StreamItem::Done {
                usage,
                finish_reason: reason,
            } => {
                let mut ok = tx
                    .send(chunks.event(json!({}), Some(finish_reason(reason))))
                    .await;
                if ok.is_ok() && include_usage {
                    ok = tx.send(chunks.usage(usage)).await;
                }
                if ok.is_ok() {
                    ok = tx.send(Bytes::from_static(DONE)).await;
                }
                ok
            }
            StreamItem::Error(e) => {
                let error = ApiError::gateway(e, Some(stream.model_name()));
                tx.send(sse(&json!({"error": {
                    "message": error.message,
                    "type": error.kind,
                    "param": null,
                    "code": error.code,
                }})))
                .await
            }
        };
        client_here = sent.is_ok();
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

/// `model = "workflow:NAME"`: run the workflow with the last user message as its input and
/// answer with its output as text.
async fn workflow_chat(
    state: AppState,
    workflow: &str,
    request: GatewayRequest,
    stream: bool,
    include_usage: bool,
    started: Instant,
) -> Result<Response, ApiError> {
    let loaded = state.engine.project.workflow(workflow).map_err(|_| {
        ApiError::not_found(format!(
            "unknown model \"{WORKFLOW_PREFIX}{workflow}\": no workflow named \"{workflow}\""
        ))
        .param("model")
        .code("model_not_found")
    })?;
    let text = last_user_text(&request.messages).ok_or_else(|| {
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
            let run = engine.run_workflow(&name, input, None, caller).await;
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
        usage: Usage {
            prompt_tokens: run.prompt_tokens as u32,
            completion_tokens: run.completion_tokens as u32,
        },
        finish_reason: FinishReason::Stop,
        model: run.model.clone().unwrap_or_default(),
    };
    if !stream {
        return Ok(completion(&requested, &run.id, &answer));
    }
    let chunks = Chunks {
        id: format!("chatcmpl-{}", run.id),
        created: unix_seconds(),
        model: requested,
    };
    let mut events = vec![
        chunks.event(json!({"role": "assistant", "content": ""}), None),
        chunks.event(json!({"content": answer.text}), None),
        chunks.event(json!({}), Some("stop")),
    ];
    if include_usage {
        events.push(chunks.usage(answer.usage));
    }
    events.push(Bytes::from_static(DONE));
    let (tx, rx) = mpsc::channel(events.len());
    for event in events {
        let _ = tx.try_send(event);
    }
    Ok(with_run(sse_response(rx), &run.id, Some(&answer.model)))
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
        "usage": usage(Usage {
            prompt_tokens: run.prompt_tokens as u32,
            completion_tokens: run.completion_tokens as u32,
        }),
        "shopfloor": { "run_id": run.id, "status": "held", "pending_review": true },
    });
    with_run(json_response(StatusCode::ACCEPTED, &body), &run.id, None)
}

/// `GET /v1/models`: the models this key may call, and its workflows as `workflow:NAME` when
/// it may run them.
pub(crate) async fn models(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let mut data: Vec<Value> = state
        .engine
        .gateway_models()
        .into_iter()
        .map(|m| json!({"id": m.name, "object": "model", "created": 0, "owned_by": m.provider.as_str()}))
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
