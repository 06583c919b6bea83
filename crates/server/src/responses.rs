//! OpenAI's Responses API at the edge: `POST /v1/responses` (streamed or not) and
//! `GET /v1/responses/{id}`, the default of the newest OpenAI clients (the Vercel AI SDK's
//! `openai("…")`, the Agents SDK, pydantic-ai's `OpenAIResponsesModel`). The body becomes the
//! same [`GatewayRequest`] as a Chat Completions call, so every model kind, the policy guard,
//! retries, fallbacks, strict-schema checks and recording apply alike; only the wire differs.
//!
//! A response is its gateway run: `resp_RUN_ID`. `GET` reads it back from the store, and
//! `previous_response_id` continues from the run's recorded messages and answer (as the store
//! policy kept them: placeholders where it redacts), with the earlier `instructions` left
//! behind as OpenAI does. `store: false` is honoured as "not kept for retrieval": the call is
//! still recorded as a run (that is the gateway's audit), but `GET` and `previous_response_id`
//! answer 404 / 400 for it.
//!
//! Carried: `input` (text, or message / `function_call` / `function_call_output` items;
//! `input_image` parts of user messages by `https://` or data URL),
//! `instructions`, function `tools`, `tool_choice`, `parallel_tool_calls`, `text.format`,
//! `max_output_tokens`, `temperature`, `top_p`, `user` / `safety_identifier`; recorded:
//! `metadata`, `store`. Refused by name: file and audio inputs, images by `file_id`, reasoning items and
//! settings, built-in tools, `background`, `include`, `truncation: auto`, `top_logprobs`,
//! `max_tool_calls`, and anything the API does not define. `prompt_cache_key` is accepted and
//! not carried (a cache hint).

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shopfloor_core::access::Permission;
use shopfloor_engine::chat::{
    ChatExtras, ChatRequest, FinishReason, Message, Part, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice, Usage,
};
use shopfloor_engine::store_types::{RunRecord, RunStatus};
use shopfloor_engine::{has_strict_schema, Audience, GatewayRequest, StreamItem, GATEWAY_WORKFLOW};

use crate::auth::Principal;
use crate::chat_body::in_range;
use crate::error::ApiError;
use crate::gateway::{
    complete, open_stream, replayed, serve_stream, sse_event, unix_seconds, with_run, StreamWire,
    WORKFLOW_PREFIX,
};
use crate::{json_response, AppState, Json};

/// The body of `POST /v1/responses`. A field the API does not define is refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponsesBody {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
    /// `include_obfuscation`: padding against length side channels; none is added either way.
    #[serde(default)]
    #[allow(dead_code)]
    stream_options: Option<Value>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    safety_identifier: Option<String>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    truncation: Option<String>,
    #[serde(default)]
    service_tier: Option<String>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<Value>,
    #[serde(default)]
    max_tool_calls: Option<Value>,
    /// A cache hint: accepted, not carried.
    #[serde(default)]
    #[allow(dead_code)]
    prompt_cache_key: Option<String>,
}

/// `POST /v1/responses`.
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<ResponsesBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let stream = body.stream.unwrap_or(false);
    let history = match body.previous_response_id.as_deref() {
        Some(id) => previous_messages(&state, &principal, id).await?,
        None => Vec::new(),
    };
    let settings = settings(&body);
    let (mut request, user) = gateway_request(body, history)?;
    request.caller = Some(principal.caller(user.as_deref()));
    let requested = request.chat.model.clone();
    if stream && !has_strict_schema(&request) {
        let stream = open_stream(&state, request, started).await?;
        let events = Events::new(stream.run_id(), &requested, settings);
        return Ok(serve_stream(state, stream, events, started));
    }
    let outcome = complete(&state, request, started).await?;
    let run_id = outcome.run.id.clone();
    match outcome.result {
        Ok(answer) if stream => Ok(replayed(
            Events::new(&run_id, &requested, settings),
            &run_id,
            answer,
        )),
        Ok(answer) => {
            let items = output_items(&run_id, &answer.text, &answer.tool_calls);
            let body = finished(
                skeleton(&run_id, &requested, settings),
                items,
                answer.usage,
                answer.finish_reason,
            );
            Ok(with_run(
                json_response(StatusCode::OK, &body),
                &run_id,
                Some(&answer.model),
            ))
        }
        Err(e) => {
            let model = outcome.run.model.as_deref();
            Err(ApiError::gateway(e, model).run(run_id))
        }
    }
}

/// `GET /v1/responses/{id}`: a response as its run recorded it.
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let not_found =
        || ApiError::not_found(format!("no response with id {id}")).param("response_id");
    let run = kept_response(&state, &principal, &id)
        .await?
        .ok_or_else(not_found)?;
    let input = &run.input;
    let mut settings = Map::new();
    for (field, from) in [
        ("max_output_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("metadata", "metadata"),
        ("previous_response_id", "previous_response_id"),
    ] {
        settings.insert(
            field.into(),
            input.get(from).cloned().unwrap_or(Value::Null),
        );
    }
    let model = input["model"].as_str().unwrap_or_default().to_string();
    let mut body = skeleton(&run.id, &model, settings);
    body["created_at"] = json!(run.created_at_ms / 1000);
    let usage = Some(Usage {
        prompt_tokens: run.prompt_tokens as u32,
        completion_tokens: run.completion_tokens as u32,
    });
    let body = match (run.status, &run.output) {
        (RunStatus::Ok, Some(output)) => {
            let (text, calls) = recorded_answer(output);
            let finish = if calls.is_empty() {
                FinishReason::Stop
            } else {
                FinishReason::ToolCalls
            };
            finished(body, output_items(&run.id, &text, &calls), usage, finish)
        }
        (status, _) => {
            body["status"] = json!("failed");
            body["error"] = json!({
                "code": status.as_str(),
                "message": run.error.clone().unwrap_or_else(|| format!("the call ended {}", status.as_str())),
            });
            body["usage"] = usage_value(usage);
            body
        }
    };
    Ok(with_run(
        json_response(StatusCode::OK, &body),
        &run.id,
        run.model.as_deref(),
    ))
}

/// The gateway run behind response `id`, when it exists, this caller may see it and it was
/// kept for retrieval (not `store: false`).
async fn kept_response(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Option<RunRecord>, ApiError> {
    let Some(run_id) = id.strip_prefix("resp_") else {
        return Ok(None);
    };
    let view = state
        .engine_call(state.engine.run_view(run_id, Audience::of(principal.role)))
        .await?;
    // A key that may read runs sees every response; any other only its own (also when it
    // continues one, where the route itself asks only for calling models).
    let may_read_all = principal.role.allows(Permission::ReadRuns) && !principal.own_only;
    Ok(view
        .map(|v| v.run)
        .filter(|run| {
            may_read_all
                || run.caller.as_ref().map(|c| c.key_id.as_str()) == Some(principal.key_id.as_str())
        })
        .filter(|run| run.workflow == GATEWAY_WORKFLOW && run.input["store"] != json!(false)))
}

/// The conversation so far for `previous_response_id`: the earlier run's messages (its
/// instructions left out, as OpenAI does) and its answer.
async fn previous_messages(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Vec<Message>, ApiError> {
    let refuse = |why: String| {
        ApiError::bad_request(format!("previous_response_id: {why}")).param("previous_response_id")
    };
    let run = kept_response(state, principal, id).await?.ok_or_else(|| {
        refuse(format!(
            "no response with id {id} was kept (unknown, another key's, or made with store: false)"
        ))
    })?;
    let (RunStatus::Ok, Some(output)) = (run.status, &run.output) else {
        return Err(refuse(format!(
            "response {id} did not complete ({}), so there is no answer to continue from",
            run.status.as_str()
        )));
    };
    let mut messages: Vec<Message> = serde_json::from_value(run.input["messages"].clone())
        .map_err(|e| {
            refuse(format!(
                "the messages of response {id} cannot be read back: {e}"
            ))
        })?;
    messages.retain(|m| m.role != Role::System);
    if messages
        .iter()
        .flat_map(Message::images)
        .any(|i| i.url.starts_with("data:") && i.data().is_none())
    {
        return Err(refuse(format!(
            "response {id} was given an image inline, which is recorded by its SHA-256 only; send the conversation again as input"
        )));
    }
    let (text, calls) = recorded_answer(output);
    let mut answer = Message::new(Role::Assistant, text);
    answer.tool_calls = calls;
    messages.push(answer);
    Ok(messages)
}

/// A gateway run's recorded output: text, or `{content, tool_calls}`.
fn recorded_answer(output: &Value) -> (String, Vec<ToolCall>) {
    match output {
        Value::String(text) => (text.clone(), Vec::new()),
        other => (
            other["content"].as_str().unwrap_or_default().to_string(),
            serde_json::from_value(other["tool_calls"].clone()).unwrap_or_default(),
        ),
    }
}

/// The request's settings, as a response object repeats them.
fn settings(body: &ResponsesBody) -> Map<String, Value> {
    let mut settings = Map::new();
    let mut set = |field: &str, value: Value| {
        settings.insert(field.to_string(), value);
    };
    set("instructions", json!(body.instructions));
    set("max_output_tokens", json!(body.max_output_tokens));
    set(
        "parallel_tool_calls",
        json!(body.parallel_tool_calls.unwrap_or(true)),
    );
    set("previous_response_id", json!(body.previous_response_id));
    set("store", json!(body.store.unwrap_or(true)));
    set("temperature", json!(body.temperature));
    set("top_p", json!(body.top_p));
    set(
        "tool_choice",
        body.tool_choice.clone().unwrap_or_else(|| json!("auto")),
    );
    set("tools", json!(body.tools.clone().unwrap_or_default()));
    set("metadata", json!(body.metadata.clone().unwrap_or_default()));
    set("user", json!(body.user));
    if let Some(text) = body.text.clone().filter(|t| !t.is_null()) {
        set("text", text);
    }
    settings
}

/// A response object in progress: its id, the request's settings, no output yet.
fn skeleton(run_id: &str, requested: &str, settings: Map<String, Value>) -> Value {
    let mut response = json!({
        "id": response_id(run_id),
        "object": "response",
        "created_at": unix_seconds(),
        "status": "in_progress",
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "model": requested,
        "output": [],
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "service_tier": "default",
        "store": true,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "usage": null,
        "user": null,
        "metadata": {},
    });
    for (field, value) in settings {
        response[field] = value;
    }
    response
}

/// The response once the answer is whole.
fn finished(
    mut response: Value,
    output: Vec<Value>,
    usage: Option<Usage>,
    finish: FinishReason,
) -> Value {
    let incomplete = match finish {
        FinishReason::Length => Some("max_output_tokens"),
        FinishReason::ContentFilter => Some("content_filter"),
        _ => None,
    };
    response["status"] = json!(if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    });
    response["incomplete_details"] = match incomplete {
        Some(reason) => json!({ "reason": reason }),
        None => Value::Null,
    };
    response["output"] = Value::Array(output);
    response["usage"] = usage_value(usage);
    response
}

fn response_id(run_id: &str) -> String {
    format!("resp_{run_id}")
}

/// An output item's id: the run and the item's place in the output.
fn item_id(kind: &str, run_id: &str, index: usize) -> String {
    format!("{kind}_{run_id}_{index}")
}

/// Usage as the Responses API writes it; `null` when the provider reported none.
fn usage_value(usage: Option<Usage>) -> Value {
    match usage {
        Some(u) => json!({
            "input_tokens": u.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": u.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        }),
        None => Value::Null,
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn call_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

/// The output items of a whole answer: its text as a message, then one item per tool call.
fn output_items(run_id: &str, text: &str, calls: &[ToolCall]) -> Vec<Value> {
    let mut items = Vec::new();
    if !text.is_empty() || calls.is_empty() {
        let id = item_id("msg", run_id, 0);
        items.push(message_item(&id, "completed", vec![text_part(text)]));
    }
    for call in calls {
        let id = item_id("fc", run_id, items.len());
        items.push(call_item(
            &id,
            "completed",
            &call.id,
            &call.name,
            &call.arguments,
        ));
    }
    items
}

/// The gateway's request for a Responses body (after `history`, the conversation of
/// `previous_response_id`), and the end user it names.
fn gateway_request(
    body: ResponsesBody,
    history: Vec<Message>,
) -> Result<(GatewayRequest, Option<String>), ApiError> {
    let refuse = |field: &'static str, why: String| Err(ApiError::bad_request(why).param(field));
    if body.model.starts_with(WORKFLOW_PREFIX) {
        return refuse(
            "model",
            "workflows are run through /v1/workflows/NAME/runs or /v1/chat/completions, not /v1/responses".into(),
        );
    }
    let mut sampling = [None, None];
    for (i, (field, value, high)) in [
        ("temperature", body.temperature, 2.0),
        ("top_p", body.top_p, 1.0),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(value) = value {
            match in_range(field, value, 0.0, high) {
                Ok(value) => sampling[i] = Some(value),
                Err(why) => return refuse(field, why),
            }
        }
    }
    let [temperature, top_p] = sampling;
    if body.background == Some(true) {
        return refuse(
            "background",
            "background responses are not supported; use stream, or the batch API of workflows"
                .into(),
        );
    }
    if let Some(include) = body.include.as_ref().and_then(|i| i.first()) {
        return refuse(
            "include",
            format!("\"{include}\" cannot be included: this gateway adds no extra output data"),
        );
    }
    if let Some(reasoning) = &body.reasoning {
        let set = reasoning
            .as_object()
            .is_some_and(|r| r.values().any(|v| !v.is_null()));
        if set {
            return refuse(
                "reasoning",
                "reasoning settings are not supported by this gateway's models".into(),
            );
        }
    }
    if let Some(mode) = body.truncation.as_deref().filter(|t| *t != "disabled") {
        return refuse(
            "truncation",
            format!("truncation \"{mode}\" is not supported; the input is sent whole (disabled)"),
        );
    }
    if let Some(tier) = body
        .service_tier
        .as_deref()
        .filter(|t| !matches!(*t, "auto" | "default"))
    {
        return refuse(
            "service_tier",
            format!("\"{tier}\" is not supported; this gateway routes by its own configuration"),
        );
    }
    for (field, value) in [
        ("top_logprobs", &body.top_logprobs),
        ("max_tool_calls", &body.max_tool_calls),
    ] {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return refuse(field, format!("{field} is not supported by this gateway"));
        }
    }
    let mut extras = ChatExtras::default();
    let mut recorded = Map::new();
    if let Some(metadata) = body.metadata {
        if let Some((key, _)) = metadata.iter().find(|(_, v)| !v.is_string()) {
            return refuse(
                "metadata",
                format!("the value of \"{key}\" is not a string"),
            );
        }
        recorded.insert("metadata".into(), Value::Object(metadata));
    }
    if let Some(store) = body.store {
        recorded.insert("store".into(), Value::Bool(store));
    }
    if let Some(previous) = &body.previous_response_id {
        recorded.insert("previous_response_id".into(), json!(previous));
    }
    let user = body.user.or(body.safety_identifier);
    extras.user = user.clone();
    if let Some(tools) = body.tools {
        extras.tools = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                in_tool(tool).map_err(|why| {
                    ApiError::bad_request(format!("tools[{i}]: {why}")).param("tools")
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(choice) = body.tool_choice.filter(|c| !c.is_null()) {
        extras.tool_choice = Some(in_tool_choice(&choice).map_err(|why| {
            ApiError::bad_request(format!("tool_choice: {why}")).param("tool_choice")
        })?);
    }
    extras.parallel_tool_calls = body.parallel_tool_calls;
    if let Some(format) = body
        .text
        .as_ref()
        .and_then(|t| t.get("format"))
        .filter(|f| !f.is_null())
    {
        extras.response_format = Some(in_format(format).map_err(|why| {
            ApiError::bad_request(format!("text.format: {why}")).param("text.format")
        })?);
    }
    let mut messages = Vec::new();
    if let Some(instructions) = body.instructions.filter(|i| !i.is_empty()) {
        messages.push(Message::new(Role::System, instructions));
    }
    messages.extend(history);
    match body.input {
        Some(Value::String(text)) => messages.push(Message::new(Role::User, text)),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                in_item(item, &mut messages).map_err(|why| {
                    ApiError::bad_request(format!("input[{i}]{why}")).param("input")
                })?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return refuse("input", "input is a string or a list of items".into()),
    }
    if !messages.iter().any(|m| m.role != Role::System) {
        return refuse("input", "input is empty: there is nothing to answer".into());
    }
    let extras = (extras != ChatExtras::default()).then(|| Box::new(extras));
    let request = GatewayRequest {
        chat: ChatRequest {
            model: body.model,
            messages,
            max_tokens: body.max_output_tokens,
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

/// A function tool (`{"type": "function", "name", "description", "parameters", "strict"}`);
/// the built-in tools (web search, file search, computer use, …) are refused.
fn in_tool(tool: &Value) -> Result<Tool, String> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(kind) => {
            return Err(format!(
                "tools of type \"{kind}\" are not supported; only function tools are"
            ))
        }
        None => return Err("type: a tool needs its type".into()),
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or("name: a function tool needs its name")?;
    Ok(Tool {
        name: name.to_string(),
        description: tool
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        parameters: tool.get("parameters").filter(|p| !p.is_null()).cloned(),
        strict: tool.get("strict").and_then(Value::as_bool),
    })
}

/// `"auto" | "none" | "required"` or `{"type": "function", "name"}`.
fn in_tool_choice(choice: &Value) -> Result<ToolChoice, String> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(format!("\"{other}\" is not one of auto, none, required")),
        },
        Value::Object(object) => match (
            object.get("type").and_then(Value::as_str),
            object.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => Ok(ToolChoice::Named(name.to_string())),
            (Some("function"), None) => Err("a function tool choice needs the name".into()),
            (Some(kind), _) => Err(format!(
                "a tool choice of type \"{kind}\" is not supported; only function"
            )),
            (None, _) => Err("a tool choice object needs its type".into()),
        },
        _ => Err("expected a string or an object".into()),
    }
}

/// `text.format`: `text`, `json_object`, or `json_schema` (`name`, `schema`, `strict`).
fn in_format(format: &Value) -> Result<ResponseFormat, String> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => Ok(ResponseFormat::JsonSchema {
            name: format
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a json_schema format needs its name")?
                .to_string(),
            description: format
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            schema: format.get("schema").filter(|s| !s.is_null()).cloned(),
            strict: format.get("strict").and_then(Value::as_bool),
        }),
        Some(other) => Err(format!(
            "\"{other}\" is not one of text, json_object, json_schema"
        )),
        None => Err("a format needs its type".into()),
    }
}

/// One input item as the engine's messages: a message (text parts), a `function_call` (added
/// to the assistant turn before it, or one of its own), or a `function_call_output`.
fn in_item(item: &Value, out: &mut Vec<Message>) -> Result<(), String> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        Some("message") | None if item.get("role").is_some() => in_message(item, out),
        Some("message") => Err(".role: a message needs its role".into()),
        Some("function_call") => {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!(".{name}: a function_call item needs it"))
            };
            let call = ToolCall {
                id: field("call_id")?.to_string(),
                name: field("name")?.to_string(),
                arguments: field("arguments")?.to_string(),
            };
            match out.last_mut() {
                Some(turn) if turn.role == Role::Assistant => turn.tool_calls.push(call),
                _ => {
                    let mut turn = Message::new(Role::Assistant, "");
                    turn.tool_calls.push(call);
                    out.push(turn);
                }
            }
            Ok(())
        }
        Some("function_call_output") => {
            let call_id = item
                .get("call_id")
                .and_then(Value::as_str)
                .ok_or(".call_id: a function_call_output item needs it")?;
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => parts_text(parts).map_err(|why| format!(".output{why}"))?,
                _ => return Err(".output: a string or a list of text parts".into()),
            };
            let mut result = Message::new(Role::Tool, output);
            result.tool_call_id = Some(call_id.to_string());
            out.push(result);
            Ok(())
        }
        Some(other) => Err(format!(
            ": items of type \"{other}\" are not supported; send messages, function_call and function_call_output items"
        )),
        None => Err(": an item needs its type (or a role, for a message)".into()),
    }
}

fn in_message(item: &Value, out: &mut Vec<Message>) -> Result<(), String> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system" | "developer") => Role::System,
        Some(other) => {
            return Err(format!(
                ".role: \"{other}\" is not one of user, assistant, system, developer"
            ))
        }
        None => return Err(".role: a message needs its role".into()),
    };
    let message = match item.get("content") {
        Some(Value::String(text)) => Message::new(role, text.clone()),
        Some(Value::Array(parts)) => Message::with_parts(
            role,
            in_parts(parts, role == Role::User).map_err(|why| format!(".content{why}"))?,
        ),
        _ => return Err(".content: a string or a list of content parts".into()),
    };
    out.push(message);
    Ok(())
}

/// The text of content parts (`input_text`, `output_text`, `refusal`); other kinds are refused.
fn parts_text(parts: &[Value]) -> Result<String, String> {
    Ok(Message::with_parts(Role::Tool, in_parts(parts, false)?).content)
}

/// Content parts: text (`input_text`, `output_text`, `refusal`) and, where `images` allows,
/// `input_image` by URL; other kinds are refused.
fn in_parts(parts: &[Value], images: bool) -> Result<Vec<Part>, String> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        let piece = match kind {
            "input_text" | "output_text" | "text" => part.get("text"),
            "refusal" => part.get("refusal"),
            "input_image" if images => {
                let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                    return Err(format!(
                        "[{j}]: an input_image part needs its image_url (an https:// or data: URL); file_id is not supported"
                    ));
                };
                let detail = part
                    .get("detail")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let image = crate::chat_body::image(url.to_string(), detail)
                    .map_err(|why| format!("[{j}]{why}"))?;
                out.push(Part::Image(image));
                continue;
            }
            "input_image" => return Err(format!("[{j}]: input_image parts go in user messages")),
            "input_file" | "input_audio" => {
                return Err(format!(
                    "[{j}]: {kind} parts are not supported by this gateway; send text and images"
                ))
            }
            "" => return Err(format!("[{j}].type: a content part needs its type")),
            other => {
                return Err(format!(
                    "[{j}]: parts of type \"{other}\" are not supported"
                ))
            }
        };
        match piece.and_then(Value::as_str) {
            Some(piece) => out.push(Part::Text(piece.to_string())),
            None => return Err(format!("[{j}]: a {kind} part needs its text")),
        }
    }
    Ok(out)
}

/// What is open in a stream: a message's text, or a function call.
#[derive(Debug)]
enum Open {
    Text(String),
    Call {
        /// The engine's index of the call within the answer.
        call: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// A stream as the Responses API's typed events: `response.created`, `response.in_progress`,
/// then per output item `response.output_item.added`, its deltas, their `….done` and
/// `response.output_item.done`, then `response.completed` (or `response.incomplete`) with the
/// whole response. Every event carries its `sequence_number`.
struct Events {
    response: Value,
    run_id: String,
    sequence: u64,
    /// The items already done.
    output: Vec<Value>,
    open: Option<Open>,
}

impl Events {
    fn new(run_id: &str, requested: &str, settings: Map<String, Value>) -> Self {
        Events {
            response: skeleton(run_id, requested, settings),
            run_id: run_id.to_string(),
            sequence: 0,
            output: Vec::new(),
            open: None,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> Bytes {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        sse_event(Some(kind), &data)
    }

    /// The open item's place in the output and its id.
    fn place(&self, kind: &str) -> (usize, String) {
        let index = self.output.len();
        (index, item_id(kind, &self.run_id, index))
    }

    fn close(&mut self, events: &mut Vec<Bytes>) {
        match self.open.take() {
            None => {}
            Some(Open::Text(text)) => {
                let (index, id) = self.place("msg");
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                events.push(self.event("response.output_text.done", done));
                let mut part = at;
                part["part"] = text_part(&text);
                events.push(self.event("response.content_part.done", part));
                let item = message_item(&id, "completed", vec![text_part(&text)]);
                let done = json!({"output_index": index, "item": item});
                events.push(self.event("response.output_item.done", done));
                self.output.push(item);
            }
            Some(Open::Call {
                call_id,
                name,
                arguments,
                ..
            }) => {
                let (index, id) = self.place("fc");
                let done = json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments});
                events.push(self.event("response.function_call_arguments.done", done));
                let item = call_item(&id, "completed", &call_id, &name, &arguments);
                let done = json!({"output_index": index, "item": item});
                events.push(self.event("response.output_item.done", done));
                self.output.push(item);
            }
        }
    }
}

impl StreamWire for Events {
    fn opening(&mut self) -> Vec<Bytes> {
        let response = self.response.clone();
        vec![
            self.event("response.created", json!({ "response": response })),
            self.event("response.in_progress", json!({ "response": response })),
        ]
    }

    fn item(&mut self, item: StreamItem, answering: &str) -> Vec<Bytes> {
        let mut events = Vec::new();
        match item {
            StreamItem::Text(text) => {
                if !matches!(self.open, Some(Open::Text(_))) {
                    self.close(&mut events);
                    let (index, id) = self.place("msg");
                    let added = json!({"output_index": index, "item": message_item(&id, "in_progress", vec![])});
                    events.push(self.event("response.output_item.added", added));
                    let part = json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part("")});
                    events.push(self.event("response.content_part.added", part));
                    self.open = Some(Open::Text(String::new()));
                }
                if !text.is_empty() {
                    let (index, id) = self.place("msg");
                    let delta = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []});
                    events.push(self.event("response.output_text.delta", delta));
                    if let Some(Open::Text(all)) = &mut self.open {
                        all.push_str(&text);
                    }
                }
            }
            StreamItem::ToolCall(piece) => {
                let same = matches!(&self.open, Some(Open::Call { call, .. }) if *call == piece.index && piece.id.is_none());
                if !same {
                    self.close(&mut events);
                    let (index, id) = self.place("fc");
                    let call_id = piece
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("call_{}_{}", self.run_id, piece.index));
                    let name = piece.name.clone().unwrap_or_default();
                    let added = json!({"output_index": index, "item": call_item(&id, "in_progress", &call_id, &name, "")});
                    events.push(self.event("response.output_item.added", added));
                    self.open = Some(Open::Call {
                        call: piece.index,
                        call_id,
                        name,
                        arguments: String::new(),
                    });
                }
                if !piece.arguments.is_empty() {
                    let (index, id) = self.place("fc");
                    let delta =
                        json!({"item_id": id, "output_index": index, "delta": piece.arguments});
                    events.push(self.event("response.function_call_arguments.delta", delta));
                    if let Some(Open::Call { arguments, .. }) = &mut self.open {
                        arguments.push_str(&piece.arguments);
                    }
                }
            }
            StreamItem::Done {
                usage,
                finish_reason,
            } => {
                self.close(&mut events);
                let output = std::mem::take(&mut self.output);
                let response = finished(self.response.clone(), output, usage, finish_reason);
                let kind = if response["status"] == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                events.push(self.event(kind, json!({ "response": response })));
            }
            StreamItem::Error(e) => {
                self.close(&mut events);
                let error = ApiError::gateway(e, Some(answering));
                let mut response = self.response.clone();
                response["status"] = json!("failed");
                response["output"] = Value::Array(self.output.clone());
                response["error"] = json!({
                    "code": error.code.unwrap_or(error.kind),
                    "message": error.message,
                });
                events.push(self.event("response.failed", json!({ "response": response })));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> ResponsesBody {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn items_become_the_engines_messages() {
        let (request, user) = gateway_request(
            body(json!({
                "model": "fast",
                "instructions": "Be brief.",
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "Weather in "}, {"type": "input_text", "text": "Paris?"}]},
                    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                    {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{\"city\":\"Lyon\"}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]},
                ],
                "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": true}],
                "tool_choice": {"type": "function", "name": "get_weather"},
                "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
                "max_output_tokens": 50,
                "metadata": {"ticket": "T-1"},
                "store": false,
                "safety_identifier": "u-9",
            })),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(user.as_deref(), Some("u-9"));
        let roles: Vec<Role> = request.chat.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Assistant
            ]
        );
        assert_eq!(request.chat.messages[1].content, "Weather in Paris?");
        assert_eq!(
            request.chat.messages[2].tool_calls.len(),
            2,
            "consecutive calls are one turn"
        );
        assert_eq!(
            request.chat.messages[3].tool_call_id.as_deref(),
            Some("call_1")
        );
        assert_eq!(request.chat.max_tokens, Some(50));
        assert!(has_strict_schema(&request));
        let extras = request.chat.extras.unwrap();
        assert_eq!(
            extras.tool_choice,
            Some(ToolChoice::Named("get_weather".into()))
        );
        assert_eq!(extras.tools[0].strict, Some(true));
        assert_eq!(
            request.recorded,
            Some(json!({"metadata": {"ticket": "T-1"}, "store": false}))
        );
    }

    #[test]
    fn what_cannot_be_carried_is_refused_by_name() {
        let refused = |extra: Value| {
            let mut value = json!({"model": "fast", "input": "hi"});
            value
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            gateway_request(body(value), Vec::new()).unwrap_err()
        };
        let e = refused(json!({"input": [{"role": "user", "content": [
            {"type": "input_file", "file_id": "file-1"}]}]}));
        assert_eq!(e.param.as_deref(), Some("input"));
        assert!(
            e.message.contains("input[0].content[0]: input_file"),
            "{}",
            e.message
        );
        let e = refused(json!({"input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "http://example.com/a.png"}]}]}));
        assert!(
            e.message.contains(
                "input[0].content[0].url \"http://example.com/a.png\" is neither an https:// URL"
            ),
            "{}",
            e.message
        );
        assert_eq!(
            refused(json!({"tools": [{"type": "web_search"}]}))
                .param
                .as_deref(),
            Some("tools")
        );
        assert_eq!(
            refused(json!({"reasoning": {"effort": "high"}}))
                .param
                .as_deref(),
            Some("reasoning")
        );
        assert_eq!(
            refused(json!({"background": true})).param.as_deref(),
            Some("background")
        );
        assert_eq!(
            refused(json!({"include": ["reasoning.encrypted_content"]}))
                .param
                .as_deref(),
            Some("include")
        );
        assert_eq!(
            refused(json!({"truncation": "auto"})).param.as_deref(),
            Some("truncation")
        );
        assert_eq!(
            refused(json!({"temperature": 2.5})).param.as_deref(),
            Some("temperature")
        );
        assert_eq!(
            refused(json!({"input": [{"type": "reasoning", "summary": []}]}))
                .param
                .as_deref(),
            Some("input")
        );
        // What the SDKs send as "not given" is no refusal.
        let fine = json!({"model": "fast", "input": "hi", "reasoning": {"effort": null},
            "include": [], "truncation": "disabled", "tool_choice": null, "text": {"format": {"type": "text"}}});
        assert!(gateway_request(body(fine), Vec::new()).is_ok());
        let unknown =
            serde_json::from_value::<ResponsesBody>(json!({"model": "fast", "conversation": "c"}))
                .unwrap_err();
        assert!(unknown.to_string().contains("`conversation`"), "{unknown}");
    }

    #[test]
    fn a_stream_is_the_typed_event_sequence_with_the_whole_response_last() {
        let mut events = Events::new("r1", "fast", Map::new());
        let mut out: Vec<Bytes> = events.opening();
        for item in [
            StreamItem::Text("It is".into()),
            StreamItem::Text(" sunny.".into()),
            StreamItem::ToolCall(shopfloor_engine::chat::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("get_weather".into()),
                arguments: "{\"city\":".into(),
            }),
            StreamItem::ToolCall(shopfloor_engine::chat::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "\"Paris\"}".into(),
            }),
            StreamItem::Done {
                usage: Some(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 3,
                }),
                finish_reason: FinishReason::ToolCalls,
            },
        ] {
            out.extend(events.item(item, "fast"));
        }
        let data: Vec<Value> = out
            .iter()
            .map(|b| {
                let text = std::str::from_utf8(b).unwrap();
                serde_json::from_str(text.lines().nth(1).unwrap().trim_start_matches("data: "))
                    .unwrap()
            })
            .collect();
        let kinds: Vec<&str> = data.iter().map(|d| d["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let sequence: Vec<u64> = data
            .iter()
            .map(|d| d["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(sequence, (0..15).collect::<Vec<u64>>());
        assert_eq!(data[6]["text"], "It is sunny.");
        assert_eq!(data[12]["arguments"], "{\"city\":\"Paris\"}");
        let done = &data[14]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "It is sunny.");
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["output"][1]["id"], data[9]["item"]["id"]);
        assert_eq!(done["usage"]["total_tokens"], 8);
    }
}
