//! Model providers: one trait, one module per wire protocol.
//!
//! Nothing outside this crate knows a vendor's JSON. The engine hands a [`ChatRequest`] to a
//! [`Provider`] and gets a [`ChatResponse`] or a [`ProviderError`] that says whether it is worth
//! retrying.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub mod anthropic;
mod embeddings;
mod http;
pub mod openai;
mod registry;
pub mod replay;
mod sse;

pub use anthropic::Anthropic;
pub use embeddings::{EmbeddingRequest, EmbeddingResponse};
pub use openai::OpenAi;
pub use registry::{build, known_kinds, ProviderConfig};
pub use replay::{request_key, ExchangeRecorder, Replay};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// The result of a tool call, answering the assistant's call `tool_call_id`.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// The text; empty for an assistant turn that only calls tools.
    pub content: String,
    /// An assistant turn's calls of the request's tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// A [`Role::Tool`] message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Set only for a message that holds images: all its parts, in order. `content` then
    /// holds its text parts joined, which is what the policy, token counts and recording read;
    /// change the text through [`Message::map_text`], which keeps the two in step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

impl Message {
    /// A message with the given role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            parts: Vec::new(),
        }
    }

    /// A message of text and image parts; a message of text parts only is plain text.
    /// Consecutive text parts become one, so that the policy reads (and redacts) text that
    /// runs across them as the model will.
    pub fn with_parts(role: Role, parts: Vec<Part>) -> Self {
        let mut message = Self::new(role, String::new());
        let mut merged: Vec<Part> = Vec::with_capacity(parts.len());
        for part in parts {
            match (merged.last_mut(), part) {
                (Some(Part::Text(text)), Part::Text(more)) => text.push_str(&more),
                (_, part) => merged.push(part),
            }
        }
        let parts = merged;
        if parts.iter().any(|p| matches!(p, Part::Image(_))) {
            message.parts = parts;
            message.content = message.joined_text();
        } else {
            message.content = parts
                .into_iter()
                .filter_map(|p| match p {
                    Part::Text(text) => Some(text),
                    Part::Image(_) => None,
                })
                .collect();
        }
        message
    }

    /// The message's images, in order.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.parts.iter().filter_map(|p| match p {
            Part::Image(image) => Some(image),
            Part::Text(_) => None,
        })
    }

    /// Rewrite every text of the message (not its tool calls) with `f`: the content, or each
    /// text part and then the content they join to.
    pub fn map_text(&mut self, mut f: impl FnMut(&str) -> String) {
        if self.parts.is_empty() {
            self.content = f(&self.content);
            return;
        }
        for part in &mut self.parts {
            if let Part::Text(text) = part {
                *text = f(text);
            }
        }
        self.content = self.joined_text();
    }

    fn joined_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(text) => Some(text.as_str()),
                Part::Image(_) => None,
            })
            .collect()
    }
}

/// A piece of a message that holds images.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Text(String),
    Image(Image),
}

/// An image in a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Image {
    /// An `https://` URL, or a `data:image/…;base64,…` URL holding the image.
    pub url: String,
    /// OpenAI's `detail` (`low`, `high`, `auto`), where the client gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Image {
    /// A data URL's media type and base64 data; `None` for any other URL.
    pub fn data(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (media_type, data) = rest.split_once(";base64,")?;
        Some((media_type, data))
    }
}

/// A model's call of one of the request's tools.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not necessarily valid.
    pub arguments: String,
}

/// A piece of a streamed tool call: the first piece of a call has its id and name, the
/// rest add to its arguments. `index` counts the answer's tool calls from 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// The JSON Schema of the arguments.
    pub parameters: Option<serde_json::Value>,
    pub strict: Option<bool>,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    /// This tool, by name.
    Named(String),
}

/// The form the answer must take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that matches `schema`.
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: Option<serde_json::Value>,
        strict: Option<bool>,
    },
}

/// What a gateway client may ask beyond plain chat. Boxed and optional on [`ChatRequest`], so
/// that a plain request carries none of it. Each provider carries these in its own form or
/// says it cannot ([`Provider::unsupported`]); none is dropped silently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatExtras {
    pub stop: Vec<String>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Token id (as text) → bias.
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    /// The end user, as the client named it (already redacted where the policy says so).
    pub user: Option<String>,
    pub response_format: Option<ResponseFormat>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    /// Fields the gateway does not know, sent as they came to OpenAI-compatible servers
    /// (vLLM, Ollama and llama.cpp take extra fields) and refused by every other provider.
    pub passthrough: serde_json::Map<String, serde_json::Value>,
    /// The token limit came as `max_completion_tokens` (which OpenAI's reasoning models
    /// require instead of `max_tokens`): OpenAI-style providers send it under that name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub max_completion_tokens: bool,
}

impl ChatExtras {
    /// The names (as in OpenAI's request) of the fields that are set, in a fixed order.
    pub fn set_fields(&self) -> Vec<&str> {
        let flags = [
            ("stop", !self.stop.is_empty()),
            ("presence_penalty", self.presence_penalty.is_some()),
            ("frequency_penalty", self.frequency_penalty.is_some()),
            ("logit_bias", self.logit_bias.is_some()),
            ("logprobs", self.logprobs.is_some()),
            ("top_logprobs", self.top_logprobs.is_some()),
            ("user", self.user.is_some()),
            ("response_format", self.response_format.is_some()),
            ("tools", !self.tools.is_empty()),
            ("tool_choice", self.tool_choice.is_some()),
            ("parallel_tool_calls", self.parallel_tool_calls.is_some()),
        ];
        let mut set: Vec<&str> = flags
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
        set.extend(self.passthrough.keys().map(String::as_str));
        set
    }
}

/// A field of a request that a provider cannot carry: the gateway answers 400 naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The field, as named in OpenAI's request (`tools`, `logit_bias`, `messages`).
    pub param: String,
    pub reason: String,
}

impl Unsupported {
    /// `param` cannot be carried to a `kind` model.
    pub fn field(param: &str, kind: &str) -> Unsupported {
        Unsupported {
            param: param.to_string(),
            reason: format!(
                "{param} is not supported by {kind} models: the provider has no counterpart for it"
            ),
        }
    }
}

/// What the engine asks of a model. Provider-independent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The vendor's model id (`gpt-4o-mini`, `claude-3-5-haiku-latest`, `smollm2`).
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    /// Text the answer must start with (prefilled assistant turn). Providers that cannot take
    /// it report so in [`Capabilities::assistant_prefix`]; the engine then leaves it out.
    pub assistant_prefix: Option<String>,
    /// Constrained choice: answer with exactly one of these strings. Only for providers with
    /// [`Capabilities::constrained_choice`]; others get a normal prompt.
    pub choices: Option<Vec<String>>,
    /// The W3C `traceparent` of the span the call is made in, sent as that header so that a
    /// provider which traces joins the caller's trace. Not part of what is asked: left out of
    /// the replay key and of recorded exchanges.
    #[serde(skip)]
    pub traceparent: Option<String>,
    /// What a gateway client asked beyond plain chat; `None` for plain requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<Box<ChatExtras>>,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    /// The model called tools.
    ToolCalls,
    /// The provider's content filter stopped the answer.
    ContentFilter,
    Other,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The answer text (without any assistant prefix that was sent).
    pub text: String,
    /// `None` when the provider reported none.
    pub usage: Option<Usage>,
    pub finish_reason: FinishReason,
    /// The model id the provider says answered.
    pub model: String,
    /// For constrained choice: the probability of the chosen option among the choices.
    pub choice_probability: Option<f64>,
    /// The tools the model called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Token log probabilities, in OpenAI's `choices[].logprobs` form, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<serde_json::Value>,
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// More text; never ends in half a UTF-8 character.
    Delta(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// The end, with totals (`None` when the provider reported none).
    Done {
        usage: Option<Usage>,
        finish_reason: FinishReason,
    },
}

/// What a provider can do beyond plain chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub assistant_prefix: bool,
    pub constrained_choice: bool,
    /// Answers to a `response_format` JSON schema are decoded under its constraint, so they
    /// always parse and match it (the embedded model).
    pub constrained_json: bool,
}

/// Why a call to a provider failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The server answered with an error status.
    #[error("HTTP {status} from {provider}: {message}")]
    Status {
        provider: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The attempt took longer than its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Could not connect, or the connection broke (reset, cut-off body).
    #[error("connection to {provider} failed: {message}")]
    Connection { provider: String, message: String },
    /// The server answered 2xx but the body is not what the protocol says.
    #[error("malformed response from {provider}: {message}")]
    Malformed { provider: String, message: String },
    /// The provider is not usable as configured (missing API key, missing weights, …).
    #[error("{0}")]
    Config(String),
    /// No recorded response for this request (replay provider).
    #[error("no recorded response for request {key} in {file}")]
    NotRecorded { key: String, file: String },
}

impl ProviderError {
    /// Whether trying again may help: 408, 409, 425, 429, 5xx, timeouts and broken connections.
    /// Never 400, 401, 403, 404 or 422: the same request would fail the same way.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Status { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429) || (500..=599).contains(status)
            }
            ProviderError::Timeout(_) | ProviderError::Connection { .. } => true,
            ProviderError::Malformed { .. }
            | ProviderError::Config(_)
            | ProviderError::NotRecorded { .. } => false,
        }
    }

    /// The wait the server asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A model endpoint. Implementations are cheap to share (`Arc<dyn Provider>`) and safe to call
/// concurrently. Timeouts and retries are the engine's job: dropping the returned future cancels
/// the call and must free whatever it held.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider kind, as written in `shopfloor.toml` (`openai`, `anthropic`, …).
    fn kind(&self) -> &'static str;

    /// Optional features this provider supports.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The first field of `request` this provider cannot carry, if any. The default carries
    /// no [`ChatExtras`] and no tool turns; a provider overrides it for what it can carry.
    fn unsupported(&self, request: &ChatRequest) -> Option<Unsupported> {
        plain_only(self.kind(), request)
    }

    /// Answer a request in one piece.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError>;

    /// Answer a request as a stream of text pieces, ending with [`StreamEvent::Done`].
    /// The default calls [`Provider::complete`] and yields its text as one piece.
    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
        Ok(whole_answer(self.complete(request).await?))
    }

    /// Whether [`Provider::count_tokens`] can count: the provider has the model's tokenizer
    /// or a counting endpoint. The default has neither.
    fn counts_tokens(&self) -> bool {
        false
    }

    /// How many input tokens `request` takes, as the model counts them (its chat template
    /// included). Callers check [`Provider::counts_tokens`] first; the default refuses.
    async fn count_tokens(&self, _request: &ChatRequest) -> Result<u32, ProviderError> {
        Err(ProviderError::Config(format!(
            "{} models cannot count tokens here",
            self.kind()
        )))
    }

    /// Why this model cannot answer `request` for embeddings, naming the field (`model` when
    /// it serves none at all). The default serves none.
    fn unsupported_embedding(&self, _request: &EmbeddingRequest) -> Option<Unsupported> {
        Some(Unsupported {
            param: "model".into(),
            reason: format!(
                "{} models do not serve embeddings here; use an openai, openai-compatible or local model with kind = \"embedding\"",
                self.kind()
            ),
        })
    }

    /// One vector per text of `request`. Callers check [`Provider::unsupported_embedding`]
    /// first; the default refuses.
    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        let reason = self
            .unsupported_embedding(request)
            .map_or_else(|| "no embeddings".to_string(), |u| u.reason);
        Err(ProviderError::Config(reason))
    }
}

/// The check of a provider that carries nothing beyond plain chat. `user` passes: it names
/// the caller, whom the gateway records on the run whatever the provider.
pub fn plain_only(kind: &str, request: &ChatRequest) -> Option<Unsupported> {
    if let Some(field) = request.extras.as_deref().and_then(|extras| {
        extras
            .set_fields()
            .into_iter()
            .find(|f| *f != "user")
            .map(str::to_string)
    }) {
        return Some(Unsupported::field(&field, kind));
    }
    request
        .messages
        .iter()
        .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty())
        .then(|| Unsupported {
            param: "messages".into(),
            reason: format!(
                "{kind} models cannot call tools: messages hold tool calls or tool results"
            ),
        })
        .or_else(|| no_images(kind, request))
}

/// The check of a provider that cannot see images.
pub fn no_images(kind: &str, request: &ChatRequest) -> Option<Unsupported> {
    request
        .messages
        .iter()
        .any(|m| m.images().next().is_some())
        .then(|| Unsupported {
            param: "messages".into(),
            reason: format!(
                "{kind} models cannot see images: messages hold image parts; route them to an openai, openai-compatible or anthropic model that takes images"
            ),
        })
}

/// A whole answer as a stream: its text as one piece, then [`StreamEvent::Done`].
pub fn whole_answer(
    response: ChatResponse,
) -> BoxStream<'static, Result<StreamEvent, ProviderError>> {
    let mut events = Vec::with_capacity(2 + response.tool_calls.len());
    if !response.text.is_empty() || response.tool_calls.is_empty() {
        events.push(Ok(StreamEvent::Delta(response.text)));
    }
    for (index, call) in response.tool_calls.into_iter().enumerate() {
        events.push(Ok(StreamEvent::ToolCall(ToolCallDelta {
            index: index as u32,
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments,
        })));
    }
    events.push(Ok(StreamEvent::Done {
        usage: response.usage,
        finish_reason: response.finish_reason,
    }));
    Box::pin(futures::stream::iter(events))
}
