//! Anthropic's Messages API at the edge: `POST /v1/messages`, streamed or not, so that the
//! anthropic SDKs (and tools built on them) can use the gateway by changing their base URL.
//! The body becomes the same [`GatewayRequest`] as a Chat Completions call, so every model
//! kind (OpenAI's included), the policy guard, retries, fallbacks and recording apply alike;
//! only the wire format differs. Errors go out in Anthropic's form
//! (`{"type":"error","error":{"type","message"}}`), and the key is accepted as `x-api-key`.
//!
//! Every field of the request is carried, applied or refused by name: `system`,
//! `stop_sequences`, `temperature`, `top_p`, `metadata.user_id` (the caller), client `tools`
//! and `tool_choice` (with `disable_parallel_tool_use`), `tool_use` / `tool_result` blocks,
//! `image` blocks of user turns (base64 or URL sources, carried to models that take images).
//! Refused: document blocks, extended thinking, `top_k`, server tools, and
//! anything Anthropic's API does not define. `cache_control` marks are accepted and not
//! carried (they tell Anthropic what to cache; the answer does not depend on them). A
//! `tool_result` with `is_error` reaches the model as its text after `Error: `, since
//! OpenAI-style models have no such flag.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shopfloor_engine::chat::{
    ChatExtras, ChatRequest, FinishReason, Image, Message, Part, Role, Tool, ToolCall, ToolChoice,
    Usage,
};
use shopfloor_engine::{GatewayAnswer, GatewayRequest, StreamItem};

use crate::auth::Principal;
use crate::chat_body::in_range;
use crate::error::ApiError;
use crate::gateway::{
    complete, open_stream, serve_stream, sse_event, with_run, StreamWire, WORKFLOW_PREFIX,
};
use crate::{json_response, AppState, Json};

/// The body of `POST /v1/messages`, as Anthropic's API defines it. A field it does not
/// define is refused by name, as Anthropic's API does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessagesBody {
    model: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    messages: Vec<InMessage>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    top_k: Option<Value>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    thinking: Option<Value>,
    #[serde(default)]
    service_tier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InMessage {
    role: String,
    content: Value,
}

/// `POST /v1/messages`.
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<MessagesBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let stream = body.stream.unwrap_or(false);
    let (request, user) = gateway_request(body, false)?;
    let request = GatewayRequest {
        caller: Some(principal.caller(user.as_deref())),
        ..request
    };
    let requested = request.chat.model.clone();
    if stream {
        let stream = open_stream(&state, request, started)
            .await
            .map_err(in_anthropic_terms)?;
        let events = Events::new(stream.run_id(), requested);
        return Ok(serve_stream(state, stream, events, started));
    }
    let outcome = complete(&state, request, started).await?;
    match outcome.result {
        Ok(answer) => Ok(with_run(
            json_response(
                StatusCode::OK,
                &message_body(&outcome.run.id, &requested, &answer),
            ),
            &outcome.run.id,
            Some(&answer.model),
        )),
        Err(e) => {
            let model = outcome.run.model.as_deref();
            Err(in_anthropic_terms(ApiError::gateway(e, model)).run(outcome.run.id))
        }
    }
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}` for a Messages body (`max_tokens`
/// not needed), counted by the named model after the policy guard; nothing is generated.
pub(crate) async fn count_tokens(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<MessagesBody>,
) -> Result<Response, ApiError> {
    let (mut request, user) = gateway_request(body, true)?;
    request.caller = Some(principal.caller(user.as_deref()));
    let model = request.chat.model.clone();
    let engine = state.engine.clone();
    let counted = state
        .detached(async move { engine.gateway_count_tokens(request).await })
        .await?;
    match counted {
        Ok(tokens) => Ok(json_response(
            StatusCode::OK,
            &json!({ "input_tokens": tokens }),
        )),
        Err(e) => Err(in_anthropic_terms(ApiError::gateway(e, Some(&model)))),
    }
}

/// The gateway's request for a Messages body, and the end user `metadata.user_id` names;
/// `counting` for `count_tokens`, which takes no `max_tokens`.
fn gateway_request(
    body: MessagesBody,
    counting: bool,
) -> Result<(GatewayRequest, Option<String>), ApiError> {
    let refuse = |field: &'static str, why: String| {
        Err(ApiError::bad_request(format!("{field}: {why}")).param(field))
    };
    if body.model.starts_with(WORKFLOW_PREFIX) {
        return refuse(
            "model",
            "workflows are run through /v1/workflows/NAME/runs or /v1/chat/completions, not /v1/messages".into(),
        );
    }
    let Some(max_tokens) = body.max_tokens.or(counting.then_some(1)) else {
        return refuse("max_tokens", "Field required".into());
    };
    if max_tokens == 0 {
        return refuse("max_tokens", "must be at least 1".into());
    }
    let mut sampling = [None, None];
    for (i, (field, value)) in [("temperature", body.temperature), ("top_p", body.top_p)]
        .into_iter()
        .enumerate()
    {
        if let Some(value) = value {
            match in_range(field, value, 0.0, 1.0) {
                Ok(value) => sampling[i] = Some(value),
                Err(_) => return refuse(field, format!("{value} is not between 0 and 1")),
            }
        }
    }
    let [temperature, top_p] = sampling;
    if body.top_k.as_ref().is_some_and(|v| !v.is_null()) {
        return refuse(
            "top_k",
            "top_k is not carried by this gateway; its models take temperature and top_p".into(),
        );
    }
    if let Some(thinking) = &body.thinking {
        if thinking.get("type").and_then(Value::as_str) != Some("disabled") {
            return refuse(
                "thinking",
                "extended thinking is not supported by this gateway; leave it out or disable it"
                    .into(),
            );
        }
    }
    if let Some(tier) = body.service_tier.as_deref().filter(|t| *t != "auto") {
        return refuse(
            "service_tier",
            format!("\"{tier}\" is not supported; this gateway routes by its own configuration"),
        );
    }
    let mut extras = ChatExtras::default();
    let mut recorded = Map::new();
    let mut user = None;
    if let Some(metadata) = body.metadata {
        for (key, value) in &metadata {
            match (key.as_str(), value) {
                ("user_id", Value::String(id)) => user = Some(id.clone()),
                ("user_id", Value::Null) => {}
                ("user_id", _) => return refuse("metadata", "user_id must be a string".into()),
                (other, _) => {
                    return refuse(
                        "metadata",
                        format!("\"{other}\" is not a field of metadata; only user_id is"),
                    )
                }
            }
        }
        recorded.insert("metadata".into(), Value::Object(metadata));
    }
    extras.user = user.clone();
    extras.stop = body.stop_sequences.unwrap_or_default();
    if let Some(tools) = body.tools {
        extras.tools = tools
            .into_iter()
            .enumerate()
            .map(|(i, tool)| {
                in_tool(tool).map_err(|why| {
                    ApiError::bad_request(format!("tools.{i}: {why}")).param("tools")
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(choice) = body.tool_choice.filter(|c| !c.is_null()) {
        let (choice, parallel) = match in_tool_choice(&choice) {
            Ok(choice) => choice,
            Err(why) => return refuse("tool_choice", why),
        };
        extras.tool_choice = Some(choice);
        extras.parallel_tool_calls = parallel;
    }
    let mut messages = Vec::new();
    if let Some(system) = body.system.filter(|s| !s.is_null()) {
        let text = match text_of(&system) {
            Ok(text) => text,
            Err(why) => return refuse("system", why),
        };
        messages.push(Message::new(Role::System, text));
    }
    if body.messages.is_empty() {
        return refuse("messages", "at least one message is required".into());
    }
    for (i, message) in body.messages.into_iter().enumerate() {
        in_message(message, &mut messages)
            .map_err(|why| ApiError::bad_request(format!("messages.{i}{why}")).param("messages"))?;
    }
    let extras = (extras != ChatExtras::default()).then(|| Box::new(extras));
    let request = GatewayRequest {
        chat: ChatRequest {
            model: body.model,
            messages,
            max_tokens: Some(max_tokens),
            temperature,
            top_p,
            extras,
            ..ChatRequest::default()
        },
        caller: None,
        recorded: (!recorded.is_empty()).then_some(Value::Object(recorded)),
    };
    Ok((request, user))
}

/// A client tool (`name`, `description`, `input_schema`); server tools are refused.
fn in_tool(mut tool: Map<String, Value>) -> Result<Tool, String> {
    if let Some(kind) = tool.get("type").and_then(Value::as_str) {
        if kind != "custom" {
            return Err(format!(
                "tools of type \"{kind}\" run on Anthropic's servers and are not supported; only client tools (name, input_schema) are"
            ));
        }
    }
    let Some(Value::String(name)) = tool.remove("name") else {
        return Err("name: Field required".into());
    };
    let description = match tool.remove("description") {
        Some(Value::String(d)) => Some(d),
        None | Some(Value::Null) => None,
        Some(_) => return Err("description must be a string".into()),
    };
    let Some(schema @ Value::Object(_)) = tool.remove("input_schema") else {
        return Err("input_schema: Field required (a JSON schema object)".into());
    };
    for key in tool.keys() {
        if !matches!(key.as_str(), "type" | "cache_control") {
            return Err(format!("{key}: Extra inputs are not permitted"));
        }
    }
    Ok(Tool {
        name,
        description,
        parameters: Some(schema),
        strict: None,
    })
}

/// `{"type": "auto" | "any" | "tool" | "none", "name"?, "disable_parallel_tool_use"?}`, and
/// whether parallel calls are allowed (when said).
fn in_tool_choice(choice: &Value) -> Result<(ToolChoice, Option<bool>), String> {
    let parallel = match choice.get("disable_parallel_tool_use") {
        Some(Value::Bool(disable)) => Some(!disable),
        None | Some(Value::Null) => None,
        Some(_) => return Err("disable_parallel_tool_use must be true or false".into()),
    };
    let choice = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_string()),
            None => return Err("a tool choice of type \"tool\" needs the tool's name".into()),
        },
        Some(other) => return Err(format!("\"{other}\" is not one of auto, any, tool, none")),
        None => return Err("type: Field required".into()),
    };
    Ok((choice, parallel))
}

/// The text of a `system` prompt or a `tool_result`'s content: a string, or text blocks
/// (joined by a line break).
fn text_of(content: &Value) -> Result<String, String> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                match (block_type(block), block.get("text").and_then(Value::as_str)) {
                    ("text", Some(text)) => texts.push(text),
                    ("text", None) => return Err(format!("{j}.text: Field required")),
                    (kind, _) => return Err(unsupported_block(j, kind)),
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err("expected a string or a list of text blocks".into()),
    }
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

fn unsupported_block(j: usize, kind: &str) -> String {
    match kind {
        "" => format!("{j}.type: Field required"),
        "image" => format!("{j}: image blocks go in user turns"),
        "document" => {
            format!("{j}: document blocks are not supported by this gateway; send text and images")
        }
        "thinking" | "redacted_thinking" => format!(
            "{j}: {kind} blocks are not supported: this gateway does not run extended thinking"
        ),
        other => format!("{j}: blocks of type \"{other}\" are not supported here"),
    }
}

/// One Messages turn as the engine's messages: a user turn's `tool_result` blocks become tool
/// messages (in order), its text a user message; an assistant turn's text and `tool_use`
/// blocks one assistant message.
fn in_message(message: InMessage, out: &mut Vec<Message>) -> Result<(), String> {
    let role = match message.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(format!(
                ".role: \"{other}\" is not one of user, assistant (the system prompt is the system field)"
            ))
        }
    };
    let blocks = match message.content {
        Value::String(text) => {
            out.push(Message::new(role, text));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(".content: expected a string or a list of content blocks".into()),
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = |why: String| format!(".content.{why}");
        match (block_type(block), role) {
            ("text", _) => match block.get("text").and_then(Value::as_str) {
                Some(text) => parts.push(Part::Text(text.to_string())),
                None => return Err(at(format!("{j}.text: Field required"))),
            },
            ("image", Role::User) => {
                let image = in_image(block).map_err(|why| at(format!("{j}.source{why}")))?;
                parts.push(Part::Image(image));
            }
            ("tool_use", Role::Assistant) => {
                let field = |name: &str| block.get(name).and_then(Value::as_str);
                let (Some(id), Some(name)) = (field("id"), field("name")) else {
                    return Err(at(format!("{j}: a tool_use block needs its id and name")));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(ToolCall {
                    id: id.to_string(),
                    name: name.to_string(),
                    arguments: input.to_string(),
                });
            }
            ("tool_result", Role::User) => {
                let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                    return Err(at(format!("{j}.tool_use_id: Field required")));
                };
                let text = match block.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(content) => {
                        text_of(content).map_err(|why| at(format!("{j}.content.{why}")))?
                    }
                };
                let text = if block.get("is_error") == Some(&Value::Bool(true)) {
                    format!("Error: {text}")
                } else {
                    text
                };
                let mut result = Message::new(Role::Tool, text);
                result.tool_call_id = Some(id.to_string());
                out.push(result);
            }
            ("tool_use", _) => return Err(at(format!("{j}: only assistant turns use tools"))),
            ("tool_result", _) => return Err(at(format!("{j}: tool results come in user turns"))),
            (kind, _) => return Err(at(unsupported_block(j, kind))),
        }
    }
    if parts.iter().any(|p| matches!(p, Part::Image(_))) {
        out.push(Message::with_parts(role, parts));
    } else if !parts.is_empty() || !calls.is_empty() {
        // Text blocks only (an image would have made a message of parts above).
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(text) => Some(text.as_str()),
                Part::Image(_) => None,
            })
            .collect();
        let mut turn = Message::new(role, texts.join("\n"));
        turn.tool_calls = calls;
        out.push(turn);
    } else if blocks.is_empty() {
        return Err(".content: at least one content block is required".into());
    }
    Ok(())
}

/// An image block's source: `{"type": "base64", "media_type", "data"}` (kept as a data URL)
/// or `{"type": "url", "url"}`.
fn in_image(block: &Value) -> Result<Image, String> {
    let source = block.get("source").ok_or(": Field required")?;
    let field = |name: &str| {
        source
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!(".{name}: Field required"))
    };
    let url = match field("type")? {
        "base64" => format!("data:{};base64,{}", field("media_type")?, field("data")?),
        "url" => field("url")?.to_string(),
        other => {
            return Err(format!(
                ".type: \"{other}\" is not one of base64, url (files are not supported)"
            ))
        }
    };
    crate::chat_body::image(url, None)
}

/// The engine's names of request fields, in the Messages API's terms, for refusals.
fn in_anthropic_terms(error: ApiError) -> ApiError {
    error.renamed(&[
        ("stop", "stop_sequences"),
        ("user", "metadata.user_id"),
        (
            "parallel_tool_calls",
            "tool_choice.disable_parallel_tool_use",
        ),
    ])
}

/// A `message` object for a whole answer.
fn message_body(run_id: &str, requested: &str, answer: &GatewayAnswer) -> Value {
    let mut content = Vec::new();
    if !answer.text.is_empty() {
        content.push(json!({"type": "text", "text": answer.text}));
    }
    for call in &answer.tool_calls {
        content.push(json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": tool_input(&call.arguments),
        }));
    }
    json!({
        "id": message_id(run_id),
        "type": "message",
        "role": "assistant",
        "model": requested,
        "content": content,
        "stop_reason": stop_reason(answer.finish_reason),
        "stop_sequence": Value::Null,
        "usage": usage(answer.usage),
    })
}

fn message_id(run_id: &str) -> String {
    format!("msg_{run_id}")
}

/// A tool call's arguments as the `input` object; text that is not JSON is kept as a string
/// rather than lost.
fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

fn stop_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Usage as Anthropic writes it; `null` counts when the provider reported none.
fn usage(usage: Option<Usage>) -> Value {
    match usage {
        Some(u) => json!({"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens}),
        None => json!({"input_tokens": null, "output_tokens": null}),
    }
}

/// What is open in a stream: a text block, or a tool call's `tool_use` block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Text,
    Tool(u32),
}

/// A stream as Anthropic's server-sent events: `message_start`, then per content block
/// `content_block_start`, its deltas and `content_block_stop`, then `message_delta` (the stop
/// reason and usage) and `message_stop`.
struct Events {
    id: String,
    model: String,
    /// The open block and its index.
    open: Option<(Open, u32)>,
    next_index: u32,
}

impl Events {
    fn new(run_id: &str, requested: String) -> Self {
        Events {
            id: message_id(run_id),
            model: requested,
            open: None,
            next_index: 0,
        }
    }

    fn close(&mut self, events: &mut Vec<Bytes>) {
        if let Some((_, index)) = self.open.take() {
            events.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// Open a block (closing the one open) and say so.
    fn start(&mut self, kind: Open, block: Value, events: &mut Vec<Bytes>) -> u32 {
        self.close(events);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((kind, index));
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn delta(index: u32, delta: Value) -> Bytes {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }
}

impl StreamWire for Events {
    fn opening(&mut self) -> Vec<Bytes> {
        let message = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": Value::Null,
            "stop_sequence": Value::Null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        vec![
            event(
                "message_start",
                &json!({"type": "message_start", "message": message}),
            ),
            event("ping", &json!({"type": "ping"})),
        ]
    }

    fn item(&mut self, item: StreamItem, answering: &str) -> Vec<Bytes> {
        let mut events = Vec::new();
        match item {
            StreamItem::Text(text) => {
                let index = match self.open {
                    Some((Open::Text, index)) => index,
                    _ => self.start(Open::Text, json!({"type": "text", "text": ""}), &mut events),
                };
                if !text.is_empty() {
                    events.push(Self::delta(
                        index,
                        json!({"type": "text_delta", "text": text}),
                    ));
                }
            }
            StreamItem::ToolCall(piece) => {
                let index = match self.open {
                    Some((Open::Tool(call), index)) if call == piece.index && piece.id.is_none() => {
                        index
                    }
                    _ => self.start(
                        Open::Tool(piece.index),
                        json!({
                            "type": "tool_use",
                            "id": piece.id.clone().unwrap_or_else(|| format!("toolu_{}", piece.index)),
                            "name": piece.name.clone().unwrap_or_default(),
                            "input": {},
                        }),
                        &mut events,
                    ),
                };
                if !piece.arguments.is_empty() {
                    events.push(Self::delta(
                        index,
                        json!({"type": "input_json_delta", "partial_json": piece.arguments}),
                    ));
                }
            }
            StreamItem::Done {
                usage: used,
                finish_reason,
            } => {
                self.close(&mut events);
                events.push(event(
                    "message_delta",
                    &json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason(finish_reason), "stop_sequence": null},
                        "usage": usage(used),
                    }),
                ));
                events.push(event("message_stop", &json!({"type": "message_stop"})));
            }
            StreamItem::Error(e) => {
                let error = ApiError::gateway(e, Some(answering));
                events.push(event("error", &error_body(&error)));
            }
        }
        events
    }
}

fn event(name: &str, data: &Value) -> Bytes {
    sse_event(Some(name), data)
}

/// Anthropic's error `type` for a status.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 409 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

fn error_body(error: &ApiError) -> Value {
    let mut body = json!({
        "type": "error",
        "error": {"type": error_type(error.status), "message": error.message},
    });
    if let Some(run_id) = &error.run_id {
        body["run_id"] = json!(run_id);
    }
    body
}

/// Every error of the Messages routes in Anthropic's form (the key check's and the body
/// reader's included): the anthropic SDKs read `error.type` and `error.message`.
pub(crate) async fn in_anthropic_form(mut response: Response) -> Response {
    let Some(error) = response.extensions_mut().remove::<ApiError>() else {
        return response;
    };
    let status = response.status();
    let mut out = Response::new(Body::from(
        serde_json::to_vec(&error_body(&error)).unwrap_or_default(),
    ));
    *out.status_mut() = status;
    let headers = std::mem::take(response.headers_mut());
    *out.headers_mut() = headers;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out.headers_mut().remove(header::CONTENT_LENGTH);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> MessagesBody {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn tool_turns_become_the_engines_messages() {
        let (request, user) = gateway_request(body(json!({
            "model": "fast", "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
            "metadata": {"user_id": "u-7"},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such city", "is_error": true},
                    {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}}]},
            ],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"],
        })), false)
        .unwrap();
        assert_eq!(user.as_deref(), Some("u-7"));
        let roles: Vec<Role> = request.chat.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool,
                Role::User
            ]
        );
        assert_eq!(request.chat.messages[0].content, "Be brief.\nUse tools.");
        assert_eq!(request.chat.messages[2].content, "Let me look.");
        assert_eq!(
            request.chat.messages[2].tool_calls[0].arguments,
            r#"{"city":"Paris"}"#
        );
        assert_eq!(
            request.chat.messages[3].tool_call_id.as_deref(),
            Some("toolu_1")
        );
        assert_eq!(request.chat.messages[4].content, "Error: no such city");
        assert_eq!(request.chat.messages[5].content, "And tomorrow?");
        let extras = request.chat.extras.unwrap();
        assert_eq!(extras.tool_choice, Some(ToolChoice::Required));
        assert_eq!(extras.parallel_tool_calls, Some(false));
        assert_eq!(extras.stop, ["END"]);
        assert_eq!(extras.user.as_deref(), Some("u-7"));
        assert_eq!(request.chat.max_tokens, Some(100));
    }

    #[test]
    fn what_cannot_be_carried_is_refused_by_name() {
        let refused = |extra: Value| {
            let mut value = json!({"model": "fast", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]});
            value
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            gateway_request(body(value), false).unwrap_err()
        };
        let e = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA=="}}]}]}));
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert!(
            e.message.contains("messages.0.content.0: document blocks"),
            "{}",
            e.message
        );
        let e = refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "text/plain", "data": "AA=="}}]}]}));
        assert!(
            e.message.contains("messages.0.content.0.source.url is a data URL of type \"text/plain\", not an image"),
            "{}",
            e.message
        );
        let e = refused(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}));
        assert_eq!(e.param.as_deref(), Some("thinking"));
        let e = refused(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
        assert!(
            e.message.contains("tools.0: tools of type"),
            "{}",
            e.message
        );
        let e = refused(json!({"temperature": 1.5}));
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = refused(json!({"metadata": {"tenant": "x"}}));
        assert_eq!(e.param.as_deref(), Some("metadata"));
        let e = refused(json!({"messages": [{"role": "system", "content": "x"}]}));
        assert!(e.message.contains("messages.0.role"), "{}", e.message);
        let no_limit = gateway_request(
            body(json!({"model": "fast",
            "messages": [{"role": "user", "content": "hi"}]})),
            false,
        )
        .unwrap_err();
        assert_eq!(no_limit.message, "max_tokens: Field required");
        let unknown = serde_json::from_value::<MessagesBody>(json!({"model": "fast",
            "max_tokens": 1, "messages": [], "container": "c"}))
        .unwrap_err();
        assert!(unknown.to_string().contains("`container`"), "{unknown}");
    }

    #[test]
    fn a_stream_opens_and_closes_one_block_at_a_time() {
        let mut events = Events::new("r1", "fast".into());
        let mut out: Vec<Bytes> = events.opening();
        let items = [
            StreamItem::Text("It ".into()),
            StreamItem::Text("is".into()),
            StreamItem::ToolCall(shopfloor_engine::chat::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("get_weather".into()),
                arguments: String::new(),
            }),
            StreamItem::ToolCall(shopfloor_engine::chat::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "{\"city\":\"Paris\"}".into(),
            }),
            StreamItem::Done {
                usage: Some(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 3,
                }),
                finish_reason: FinishReason::ToolCalls,
            },
        ];
        for item in items {
            out.extend(events.item(item, "fast"));
        }
        let names: Vec<String> = out
            .iter()
            .map(|b| {
                let text = std::str::from_utf8(b).unwrap();
                text.lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("event: ")
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let delta = std::str::from_utf8(&out[9]).unwrap();
        assert!(delta.contains("\"stop_reason\":\"tool_use\""), "{delta}");
        assert!(delta.contains("\"output_tokens\":3"), "{delta}");
        let tool = std::str::from_utf8(&out[6]).unwrap();
        assert!(
            tool.contains("\"index\":1") && tool.contains("\"id\":\"call_1\""),
            "{tool}"
        );
    }
}
