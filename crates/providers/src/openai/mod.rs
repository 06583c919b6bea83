//! OpenAI Chat Completions, which also serves every OpenAI-compatible server (vLLM, Ollama,
//! llama.cpp, LiteLLM, …).

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use reqwest::header::AUTHORIZATION;
use serde::Serialize;

use crate::registry::ProviderConfig;
use crate::sse::EventParser;
use crate::{
    http, Capabilities, ChatExtras, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse,
    Message, Part, Provider, ProviderError, ResponseFormat, Role, StreamEvent, ToolCall,
    ToolCallDelta, ToolChoice, Unsupported, Usage,
};
use serde::ser::SerializeSeq;
use serde_json::{json, Map, Value};

mod embeddings;
pub mod wire;

/// The official endpoint, used when no base URL is configured.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A Chat Completions endpoint. Cheap to share; one connection pool per instance.
#[derive(Debug)]
pub struct OpenAi {
    kind: &'static str,
    endpoint: http::Endpoint,
    /// `{base_url}/embeddings`, on the same client and key.
    embeddings: http::Endpoint,
}

impl OpenAi {
    /// An endpoint at `base_url` (default [`DEFAULT_BASE_URL`]); without a key no
    /// `Authorization` header is sent. `name` identifies it in errors (the model's config name).
    pub fn new(
        name: impl Into<String>,
        base_url: Option<String>,
        api_key: Option<String>,
    ) -> Result<OpenAi, ProviderError> {
        let key = http::KeyHeader {
            name: AUTHORIZATION.as_str(),
            prefix: "Bearer ",
        };
        let base_url = base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let endpoint =
            http::Endpoint::new(name.into(), base_url, "chat/completions", api_key, key, &[])?;
        Ok(OpenAi {
            kind: "openai",
            embeddings: endpoint.with_path(base_url, "embeddings")?,
            endpoint,
        })
    }

    /// Report this kind from [`Provider::kind`] (`openai-compatible` for self-hosted servers).
    pub fn with_kind(mut self, kind: &'static str) -> OpenAi {
        self.kind = kind;
        self
    }
}

/// Registry constructor for `provider = "openai"` (base_url optional).
pub(crate) fn from_config(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    let api_key = config.vendor_api_key("OpenAI", "OPENAI_API_KEY")?;
    Ok(Arc::new(OpenAi::new(
        &config.name,
        config.base_url.clone(),
        api_key,
    )?))
}

/// Registry constructor for `provider = "openai-compatible"` (base_url required, key optional).
pub(crate) fn compatible_from_config(
    config: &ProviderConfig,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let base_url = config.require_base_url("http://localhost:11434/v1")?;
    let api_key = config.api_key()?;
    let provider = OpenAi::new(&config.name, Some(base_url.to_owned()), api_key)?;
    Ok(Arc::new(provider.with_kind("openai-compatible")))
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: WireMessages<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extras: Option<WireExtras<'a>>,
}

/// [`ChatExtras`] in this API's form: most fields are this API's own, tools and
/// `response_format` are rebuilt from their typed form, and unknown fields go as they came.
#[derive(Serialize)]
struct WireExtras<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logit_bias: Option<&'a Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    passthrough: &'a Map<String, Value>,
}

impl<'a> WireExtras<'a> {
    fn new(extras: &'a ChatExtras) -> Self {
        WireExtras {
            stop: &extras.stop,
            presence_penalty: extras.presence_penalty,
            frequency_penalty: extras.frequency_penalty,
            logit_bias: extras.logit_bias.as_ref(),
            logprobs: extras.logprobs,
            top_logprobs: extras.top_logprobs,
            user: extras.user.as_deref(),
            response_format: extras.response_format.as_ref().map(response_format),
            tools: extras
                .tools
                .iter()
                .map(|tool| {
                    let mut function = json!({ "name": tool.name });
                    if let Some(description) = &tool.description {
                        function["description"] = json!(description);
                    }
                    if let Some(parameters) = &tool.parameters {
                        function["parameters"] = parameters.clone();
                    }
                    if let Some(strict) = tool.strict {
                        function["strict"] = json!(strict);
                    }
                    json!({ "type": "function", "function": function })
                })
                .collect(),
            tool_choice: extras.tool_choice.as_ref().map(|choice| match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Named(name) => {
                    json!({ "type": "function", "function": { "name": name } })
                }
            }),
            parallel_tool_calls: extras.parallel_tool_calls,
            passthrough: &extras.passthrough,
        }
    }
}

fn response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({ "type": "text" }),
        ResponseFormat::JsonObject => json!({ "type": "json_object" }),
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            let mut inner = json!({ "name": name });
            if let Some(description) = description {
                inner["description"] = json!(description);
            }
            if let Some(schema) = schema {
                inner["schema"] = schema.clone();
            }
            if let Some(strict) = strict {
                inner["strict"] = json!(strict);
            }
            json!({ "type": "json_schema", "json_schema": inner })
        }
    }
}

/// The messages in this API's form, written straight from the request's (no copies).
struct WireMessages<'a>(&'a [Message]);

impl Serialize for WireMessages<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for message in self.0 {
            seq.serialize_element(&WireOutMessage {
                role: match message.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool => "tool",
                },
                // An assistant turn that only calls tools has no content (`null`).
                content: if !message.parts.is_empty() {
                    Some(WireContent::Parts(WireParts(&message.parts)))
                } else {
                    (!message.content.is_empty() || message.tool_calls.is_empty())
                        .then_some(WireContent::Text(message.content.as_str()))
                },
                tool_calls: WireToolCalls(&message.tool_calls),
                tool_call_id: message.tool_call_id.as_deref(),
            })?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct WireOutMessage<'a> {
    role: &'static str,
    content: Option<WireContent<'a>>,
    #[serde(skip_serializing_if = "WireToolCalls::is_empty")]
    tool_calls: WireToolCalls<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

/// A message's content: its text, or its parts when it holds images.
#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Parts(WireParts<'a>),
}

/// Text and `image_url` parts, in order.
struct WireParts<'a>(&'a [Part]);

impl Serialize for WireParts<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for part in self.0 {
            match part {
                Part::Text(text) => {
                    seq.serialize_element(&json!({"type": "text", "text": text}))?
                }
                Part::Image(image) => {
                    let mut url = json!({ "url": image.url });
                    if let Some(detail) = &image.detail {
                        url["detail"] = json!(detail);
                    }
                    seq.serialize_element(&json!({"type": "image_url", "image_url": url}))?
                }
            }
        }
        seq.end()
    }
}

struct WireToolCalls<'a>(&'a [ToolCall]);

impl WireToolCalls<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for WireToolCalls<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for call in self.0 {
            seq.serialize_element(&json!({
                "id": call.id,
                "type": "function",
                "function": { "name": call.name, "arguments": call.arguments },
            }))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> WireRequest<'a> {
    /// The wire form. `assistant_prefix` and `choices` are not sent: this API has no prefill or
    /// constrained choice, and [`Capabilities`] tells the engine so.
    fn new(request: &'a ChatRequest, stream: bool) -> Self {
        let completion = request
            .extras
            .as_deref()
            .is_some_and(|e| e.max_completion_tokens);
        WireRequest {
            model: &request.model,
            messages: WireMessages(&request.messages),
            max_tokens: request.max_tokens.filter(|_| !completion),
            max_completion_tokens: request.max_tokens.filter(|_| completion),
            temperature: request.temperature,
            top_p: request.top_p,
            seed: request.seed,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            extras: request.extras.as_deref().map(WireExtras::new),
        }
    }
}

#[async_trait]
impl Provider for OpenAi {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            assistant_prefix: false,
            constrained_choice: false,
            constrained_json: false,
        }
    }

    /// This API takes every field of its own request, and an OpenAI-compatible server the
    /// extra fields it knows.
    fn unsupported(&self, _request: &ChatRequest) -> Option<Unsupported> {
        None
    }

    /// The Embeddings API takes every field the gateway sends (`dimensions` included).
    fn unsupported_embedding(&self, _request: &EmbeddingRequest) -> Option<Unsupported> {
        None
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        embeddings::embed(&self.embeddings, request).await
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let endpoint = &self.endpoint;
        let wire = WireRequest::new(request, false);
        let response = endpoint.post(request, &wire).await?;
        let body: wire::Completion = endpoint
            .read_json(response, "a Chat Completions JSON object")
            .await?;
        let Some(choice) = body.choices.into_iter().next() else {
            return Err(
                endpoint.malformed(format!("POST {} answered with no choices", endpoint.url))
            );
        };
        let reason = choice.finish_reason.as_deref();
        let mut tool_calls: Vec<ToolCall> = choice
            .message
            .tool_calls
            .into_iter()
            .map(|call| ToolCall {
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
            })
            .collect();
        if let Some(function) = choice.message.function_call {
            tool_calls.push(ToolCall {
                id: format!("call_{}", tool_calls.len()),
                name: function.name,
                arguments: function.arguments,
            });
        }
        let text = match (choice.message.content, choice.message.refusal) {
            (Some(text), _) => text,
            // A refusal is an answer the user should see, not a broken response.
            (None, Some(refusal)) => refusal,
            (None, None) if !tool_calls.is_empty() => String::new(),
            (None, None) => {
                return Err(endpoint.malformed(format!(
                    "POST {} answered without choices[0].message.content (finish_reason {:?})",
                    endpoint.url,
                    reason.unwrap_or("missing")
                )))
            }
        };
        Ok(ChatResponse {
            text,
            usage: body.usage.map(Usage::from),
            finish_reason: wire::finish_reason_of(reason),
            model: body.model.unwrap_or_else(|| request.model.clone()),
            choice_probability: None,
            tool_calls,
            logprobs: choice.logprobs.filter(|l| !l.is_null()),
        })
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
        let wire = WireRequest::new(request, true);
        let response = self.endpoint.post(request, &wire).await?;
        let parser = ChunkParser {
            provider: self.endpoint.name.clone(),
            ..ChunkParser::default()
        };
        Ok(self.endpoint.events(response, parser))
    }
}

/// Reads `chat.completion.chunk` events until `[DONE]`.
#[derive(Default)]
struct ChunkParser {
    provider: String,
    usage: Option<wire::Usage>,
    finish_reason: Option<String>,
}

impl EventParser for ChunkParser {
    fn on_data(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        if data.trim() == "[DONE]" {
            let finish_reason = wire::finish_reason_of(self.finish_reason.as_deref());
            return Ok(vec![StreamEvent::Done {
                usage: self.usage.map(Usage::from),
                finish_reason,
            }]);
        }
        let chunk: wire::Chunk =
            serde_json::from_str(data).map_err(|err| ProviderError::Malformed {
                provider: self.provider.clone(),
                message: format!(
                    "a stream event is not a chat.completion.chunk ({err}): {}",
                    http::body_prefix(data.as_bytes())
                ),
            })?;
        if let Some(error) = chunk.error {
            let message = error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(ProviderError::Malformed {
                provider: self.provider.clone(),
                message: format!("the server reported an error mid-stream: {message}"),
            });
        }
        if let Some(usage) = chunk.usage() {
            self.usage = Some(usage);
        }
        let mut events = Vec::new();
        for choice in chunk.choices.into_iter().take(1) {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta else {
                continue;
            };
            if let Some(text) = delta.content {
                if !text.is_empty() {
                    events.push(StreamEvent::Delta(text));
                }
            }
            for piece in delta.tool_calls {
                let function = piece.function;
                let (name, arguments) = match function {
                    Some(f) => (f.name, f.arguments.unwrap_or_default()),
                    None => (None, String::new()),
                };
                events.push(StreamEvent::ToolCall(ToolCallDelta {
                    index: piece.index,
                    id: piece.id,
                    name,
                    arguments,
                }));
            }
        }
        Ok(events)
    }
}
