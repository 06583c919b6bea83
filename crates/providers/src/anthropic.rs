//! Anthropic Messages API.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::registry::ProviderConfig;
use crate::sse::EventParser;
use crate::{
    http, Capabilities, ChatExtras, ChatRequest, ChatResponse, FinishReason, Image, Message, Part,
    Provider, ProviderError, ResponseFormat, Role, StreamEvent, ToolCall, ToolCallDelta,
    ToolChoice, Unsupported, Usage,
};
use serde_json::{json, Value};

mod stream;
use stream::EventsParser;

/// The tool a `response_format` is asked through: the model is made to call it, and its
/// input is the answer.
const ANSWER_TOOL: &str = "json_answer";

/// The official endpoint, used when no base URL is configured.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";
/// The API version this module speaks.
pub const API_VERSION: &str = "2023-06-01";
/// The API requires `max_tokens`; this is sent when the request has none.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// A Messages API endpoint. Cheap to share; one connection pool per instance.
#[derive(Debug)]
pub struct Anthropic {
    endpoint: http::Endpoint,
    /// `{base_url}/messages/count_tokens`.
    count: http::Endpoint,
}

impl Anthropic {
    /// An endpoint at `base_url` (default [`DEFAULT_BASE_URL`]); the key goes in `x-api-key`.
    /// `name` identifies it in errors (the model's config name).
    pub fn new(
        name: impl Into<String>,
        base_url: Option<String>,
        api_key: Option<String>,
    ) -> Result<Anthropic, ProviderError> {
        let key = http::KeyHeader {
            name: "x-api-key",
            prefix: "",
        };
        let base_url = with_version(base_url.as_deref().unwrap_or(DEFAULT_BASE_URL));
        let base_url = base_url.as_str();
        let headers = &[("anthropic-version", API_VERSION)];
        let endpoint =
            http::Endpoint::new(name.into(), base_url, "messages", api_key, key, headers)?;
        Ok(Anthropic {
            count: endpoint.with_path(base_url, "messages/count_tokens")?,
            endpoint,
        })
    }
}

/// The API's base with its version: a bare host (`https://api.anthropic.com`, how Anthropic's
/// SDKs write it) gets `/v1`; a base with a path (`…/v1`, a proxy's prefix) is kept as given.
fn with_version(base_url: &str) -> String {
    let trimmed = base_url.trim_end_matches('/');
    match reqwest::Url::parse(trimmed) {
        Ok(url) if url.path() == "/" || url.path().is_empty() => format!("{trimmed}/v1"),
        _ => trimmed.to_string(),
    }
}

/// Registry constructor for `provider = "anthropic"` (base_url optional).
pub(crate) fn from_config(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    let api_key = config.vendor_api_key("Anthropic", "ANTHROPIC_API_KEY")?;
    Ok(Arc::new(Anthropic::new(
        &config.name,
        config.base_url.clone(),
        api_key,
    )?))
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Blocks(Vec<Value>),
}

/// The OpenAI-style fields this API has no counterpart for.
const NOT_CARRIED: &[&str] = &[
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
];

/// The first field of `request` this API cannot carry.
fn unsupported(request: &ChatRequest) -> Option<Unsupported> {
    if request.seed.is_some() {
        return Some(Unsupported::field("seed", "anthropic"));
    }
    let images = request.messages.iter().flat_map(Message::images);
    if let Some((media_type, _)) = images
        .filter_map(Image::data)
        .find(|(media_type, _)| !IMAGE_TYPES.contains(media_type))
    {
        return Some(Unsupported {
            param: "messages".into(),
            reason: format!(
                "anthropic models take images of type {}, not {media_type}",
                IMAGE_TYPES.join(", ")
            ),
        });
    }
    let extras = request.extras.as_deref()?;
    let set = extras.set_fields();
    if let Some(field) = set
        .iter()
        .find(|f| NOT_CARRIED.contains(f) || extras.passthrough.contains_key(**f))
    {
        return Some(Unsupported::field(field, "anthropic"));
    }
    if matches!(
        extras.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) && (!extras.tools.is_empty() || extras.tool_choice.is_some())
    {
        return Some(Unsupported {
            param: "response_format".into(),
            reason: "response_format together with tools is not supported for anthropic models: the format is asked for as a forced tool call".into(),
        });
    }
    None
}

/// The messages after the system turns: tool results are `tool_result` blocks of a user
/// turn (consecutive results share one), tool calls `tool_use` blocks of the assistant's.
fn wire_messages(messages: &[Message]) -> Vec<WireMessage<'_>> {
    let mut out: Vec<WireMessage<'_>> = Vec::with_capacity(messages.len());
    for message in messages {
        match message.role {
            Role::System => {}
            Role::User if !message.parts.is_empty() => out.push(WireMessage {
                role: "user",
                content: WireContent::Blocks(message.parts.iter().map(wire_part).collect()),
            }),
            Role::User => out.push(WireMessage {
                role: "user",
                content: WireContent::Text(&message.content),
            }),
            Role::Assistant if message.tool_calls.is_empty() => out.push(WireMessage {
                role: "assistant",
                content: WireContent::Text(&message.content),
            }),
            Role::Assistant => {
                let mut blocks = Vec::with_capacity(1 + message.tool_calls.len());
                if !message.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": message.content}));
                }
                blocks.extend(message.tool_calls.iter().map(|call| {
                    // The API takes the input as an object; arguments a model wrote that do
                    // not parse are sent as the one string they are.
                    let input = serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({ "arguments": call.arguments }));
                    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input})
                }));
                out.push(WireMessage {
                    role: "assistant",
                    content: WireContent::Blocks(blocks),
                });
            }
            Role::Tool => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id.as_deref().unwrap_or_default(),
                    "content": message.content,
                });
                match out.last_mut() {
                    Some(WireMessage {
                        role: "user",
                        content: WireContent::Blocks(blocks),
                    }) if blocks.iter().all(|b| b["type"] == "tool_result") => blocks.push(block),
                    _ => out.push(WireMessage {
                        role: "user",
                        content: WireContent::Blocks(vec![block]),
                    }),
                }
            }
        }
    }
    out
}

/// A text or image part as a content block: a data URL as a base64 source, any other URL as
/// a URL source.
fn wire_part(part: &Part) -> Value {
    match part {
        Part::Text(text) => json!({"type": "text", "text": text}),
        Part::Image(image) => match image.data() {
            Some((media_type, data)) => json!({"type": "image", "source": {
                "type": "base64", "media_type": media_type, "data": data}}),
            None => json!({"type": "image", "source": {"type": "url", "url": image.url}}),
        },
    }
}

/// The image types this API takes.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Tools, tool choice and a requested format in this API's form; the name of the forced
/// answer tool when a format is asked for.
fn wire_tools(extras: &ChatExtras) -> (Vec<Value>, Option<Value>, Option<&'static str>) {
    let mut tools: Vec<Value> = extras
        .tools
        .iter()
        .map(|tool| {
            let mut wire = json!({
                "name": tool.name,
                "input_schema": tool.parameters.clone().unwrap_or_else(|| json!({"type": "object"})),
            });
            if let Some(description) = &tool.description {
                wire["description"] = json!(description);
            }
            wire
        })
        .collect();
    let mut choice = extras.tool_choice.as_ref().map(|choice| match choice {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::Named(name) => json!({"type": "tool", "name": name}),
    });
    let mut answer_tool = None;
    let schema = match &extras.response_format {
        Some(ResponseFormat::JsonObject) => Some(json!({"type": "object"})),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            Some(schema.clone().unwrap_or_else(|| json!({"type": "object"})))
        }
        Some(ResponseFormat::Text) | None => None,
    };
    if let Some(schema) = schema {
        tools.push(json!({
            "name": ANSWER_TOOL,
            "description": "Give the answer as this tool's input.",
            "input_schema": schema,
        }));
        choice = Some(json!({"type": "tool", "name": ANSWER_TOOL}));
        answer_tool = Some(ANSWER_TOOL);
    }
    if extras.parallel_tool_calls == Some(false) {
        let choice = choice.get_or_insert_with(|| json!({"type": "auto"}));
        choice["disable_parallel_tool_use"] = json!(true);
    }
    (tools, choice, answer_tool)
}

/// How a request goes on the wire, and what that means for the answer's first characters.
struct Prepared<'a> {
    wire: WireRequest<'a>,
    /// The forced tool whose input is the answer, when a format was asked for.
    answer_tool: Option<&'static str>,
    /// The API rejects a prefill that ends in whitespace, so that whitespace is cut off the
    /// prefix; the model then usually starts its answer with it, and it is cut from there too,
    /// so the text still reads as what follows the whole prefix.
    trim_answer_start: bool,
}

/// The wire form: system messages join into the top-level `system` field; the assistant prefix
/// becomes a final assistant turn. `choices` has no counterpart in this API (and `seed` is
/// refused by [`Provider::unsupported`] where a gateway client asks for it).
fn prepare(request: &ChatRequest, stream: bool) -> Prepared<'_> {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|message| message.role == Role::System)
        .map(|message| message.content.as_str())
        .collect();
    let mut messages = wire_messages(&request.messages);
    let mut trim_answer_start = false;
    if let Some(prefix) = request.assistant_prefix.as_deref() {
        let kept = prefix.trim_end();
        trim_answer_start = kept.len() < prefix.len();
        if !kept.is_empty() {
            messages.push(WireMessage {
                role: "assistant",
                content: WireContent::Text(kept),
            });
        }
    }
    let extras = request.extras.as_deref();
    let (tools, tool_choice, answer_tool) = extras.map(wire_tools).unwrap_or_default();
    let wire = WireRequest {
        model: &request.model,
        max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        temperature: request.temperature,
        top_p: request.top_p,
        stream,
        stop_sequences: extras
            .filter(|e| !e.stop.is_empty())
            .map(|e| e.stop.as_slice()),
        metadata: extras
            .and_then(|e| e.user.as_deref())
            .map(|user| json!({ "user_id": user })),
        tools,
        tool_choice,
    };
    Prepared {
        wire,
        answer_tool,
        trim_answer_start,
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    usage: WireUsage,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u32>,
    #[serde(default)]
    output_tokens: Option<u32>,
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            assistant_prefix: true,
            constrained_choice: false,
            constrained_json: false,
        }
    }

    fn unsupported(&self, request: &ChatRequest) -> Option<Unsupported> {
        unsupported(request)
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let endpoint = &self.endpoint;
        let prepared = prepare(request, false);
        let response = endpoint.post(request, &prepared.wire).await?;
        let body: WireResponse = endpoint
            .read_json(response, "a Messages API JSON object")
            .await?;
        if !body.content.iter().any(|block| block.kind == "text") && body.stop_reason.is_none() {
            return Err(endpoint.malformed(format!(
                "POST {} answered with no text content and no stop_reason",
                endpoint.url
            )));
        }
        let mut text: String = body
            .content
            .iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text.as_deref())
            .collect();
        let mut tool_calls = Vec::new();
        let mut finish = finish_reason(body.stop_reason.as_deref());
        for block in body.content.into_iter().filter(|b| b.kind == "tool_use") {
            let input = block.input.unwrap_or_else(|| json!({}));
            let name = block.name.unwrap_or_default();
            if prepared.answer_tool == Some(name.as_str()) {
                // The forced format tool: its input is the answer, and the answer is whole.
                text = input.to_string();
                finish = FinishReason::Stop;
                continue;
            }
            tool_calls.push(ToolCall {
                id: block.id.unwrap_or_default(),
                name,
                arguments: input.to_string(),
            });
        }
        let text = if prepared.trim_answer_start {
            text.trim_start().to_owned()
        } else {
            text
        };
        let usage =
            (body.usage.input_tokens.is_some() || body.usage.output_tokens.is_some()).then(|| {
                Usage {
                    prompt_tokens: body.usage.input_tokens.unwrap_or(0),
                    completion_tokens: body.usage.output_tokens.unwrap_or(0),
                }
            });
        Ok(ChatResponse {
            text,
            usage,
            finish_reason: finish,
            model: body.model.unwrap_or_else(|| request.model.clone()),
            choice_probability: None,
            tool_calls,
            logprobs: None,
        })
    }

    fn counts_tokens(&self) -> bool {
        true
    }

    /// The Messages API's own count (`POST /v1/messages/count_tokens`), sent the fields that
    /// endpoint takes.
    async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, ProviderError> {
        let prepared = prepare(request, false);
        let mut body = serde_json::to_value(&prepared.wire)
            .map_err(|e| ProviderError::Config(format!("the count request: {e}")))?;
        if let Some(fields) = body.as_object_mut() {
            fields.retain(|key, _| {
                matches!(
                    key.as_str(),
                    "model" | "messages" | "system" | "tools" | "tool_choice"
                )
            });
        }
        let response = self.count.post(request, &body).await?;
        #[derive(Deserialize)]
        struct Counted {
            input_tokens: u32,
        }
        let counted: Counted = self
            .count
            .read_json(response, "a count_tokens JSON object")
            .await?;
        Ok(counted.input_tokens)
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
        let prepared = prepare(request, true);
        let response = self.endpoint.post(request, &prepared.wire).await?;
        let parser = EventsParser::new(
            self.endpoint.name.clone(),
            prepared.trim_answer_start,
            prepared.answer_tool,
        );
        Ok(self.endpoint.events(response, parser))
    }
}
