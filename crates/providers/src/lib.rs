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
mod http;
pub mod openai;
mod registry;
pub mod replay;
mod sse;

pub use anthropic::Anthropic;
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
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    /// A message with the given role and text.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
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
    Other,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The answer text (without any assistant prefix that was sent).
    pub text: String,
    pub usage: Usage,
    pub finish_reason: FinishReason,
    /// The model id the provider says answered.
    pub model: String,
    /// For constrained choice: the probability of the chosen option among the choices.
    pub choice_probability: Option<f64>,
}

/// One piece of a streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// More text; never ends in half a UTF-8 character.
    Delta(String),
    /// The end, with totals.
    Done {
        usage: Usage,
        finish_reason: FinishReason,
    },
}

/// What a provider can do beyond plain chat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub assistant_prefix: bool,
    pub constrained_choice: bool,
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
}

/// A whole answer as a stream: its text as one piece, then [`StreamEvent::Done`].
pub fn whole_answer(
    response: ChatResponse,
) -> BoxStream<'static, Result<StreamEvent, ProviderError>> {
    let events = vec![
        Ok(StreamEvent::Delta(response.text)),
        Ok(StreamEvent::Done {
            usage: response.usage,
            finish_reason: response.finish_reason,
        }),
    ];
    Box::pin(futures::stream::iter(events))
}
