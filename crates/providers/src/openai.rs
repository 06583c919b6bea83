//! OpenAI Chat Completions, which also serves every OpenAI-compatible server (vLLM, Ollama,
//! llama.cpp, LiteLLM, …).

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use reqwest::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};

use crate::registry::ProviderConfig;
use crate::sse::EventParser;
use crate::{
    http, Capabilities, ChatRequest, ChatResponse, FinishReason, Message, Provider, ProviderError,
    StreamEvent, Usage,
};

/// The official endpoint, used when no base URL is configured.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A Chat Completions endpoint. Cheap to share; one connection pool per instance.
#[derive(Debug)]
pub struct OpenAi {
    kind: &'static str,
    endpoint: http::Endpoint,
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
        Ok(OpenAi {
            kind: "openai",
            endpoint: http::Endpoint::new(
                name.into(),
                base_url,
                "chat/completions",
                api_key,
                key,
                &[],
            )?,
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
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
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
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> WireRequest<'a> {
    /// The wire form. `assistant_prefix` and `choices` are not sent: this API has no prefill or
    /// constrained choice, and [`Capabilities`] tells the engine so.
    fn new(request: &'a ChatRequest, stream: bool) -> Self {
        WireRequest {
            model: &request.model,
            messages: &request.messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            seed: request.seed,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<WireChoice>,
    /// Some compatible servers leave usage out; it then counts as zero.
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Usage {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }
    }
}

fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        _ => FinishReason::Other,
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
        }
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let endpoint = &self.endpoint;
        let wire = WireRequest::new(request, false);
        let response = endpoint.post(request, &wire).await?;
        let body: WireResponse = endpoint
            .read_json(response, "a Chat Completions JSON object")
            .await?;
        let Some(choice) = body.choices.into_iter().next() else {
            return Err(
                endpoint.malformed(format!("POST {} answered with no choices", endpoint.url))
            );
        };
        let reason = choice.finish_reason.as_deref();
        let text = match (choice.message.content, choice.message.refusal) {
            (Some(text), _) => text,
            // A refusal is an answer the user should see, not a broken response.
            (None, Some(refusal)) => refusal,
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
            usage: body.usage.unwrap_or_default().into(),
            finish_reason: finish_reason(reason),
            model: body.model.unwrap_or_else(|| request.model.clone()),
            choice_probability: None,
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
    usage: WireUsage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
}

impl EventParser for ChunkParser {
    fn on_data(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        if data.trim() == "[DONE]" {
            let finish_reason = finish_reason(self.finish_reason.as_deref());
            return Ok(vec![StreamEvent::Done {
                usage: self.usage.into(),
                finish_reason,
            }]);
        }
        let chunk: WireChunk =
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
        if let Some(usage) = chunk.usage {
            self.usage = usage;
        }
        let mut events = Vec::new();
        for choice in chunk.choices.into_iter().take(1) {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            if let Some(text) = choice.delta.and_then(|delta| delta.content) {
                if !text.is_empty() {
                    events.push(StreamEvent::Delta(text));
                }
            }
        }
        Ok(events)
    }
}
