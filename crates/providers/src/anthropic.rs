//! Anthropic Messages API.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::registry::ProviderConfig;
use crate::sse::EventParser;
use crate::{
    http, Capabilities, ChatRequest, ChatResponse, FinishReason, Provider, ProviderError, Role,
    StreamEvent, Usage,
};

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
        let base_url = base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let headers = &[("anthropic-version", API_VERSION)];
        Ok(Anthropic {
            endpoint: http::Endpoint::new(
                name.into(),
                base_url,
                "messages",
                api_key,
                key,
                headers,
            )?,
        })
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
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: &'a str,
}

/// How a request goes on the wire, and what that means for the answer's first characters.
struct Prepared<'a> {
    wire: WireRequest<'a>,
    /// The API rejects a prefill that ends in whitespace, so that whitespace is cut off the
    /// prefix; the model then usually starts its answer with it, and it is cut from there too,
    /// so the text still reads as what follows the whole prefix.
    trim_answer_start: bool,
}

/// The wire form: system messages join into the top-level `system` field; the assistant prefix
/// becomes a final assistant turn. `seed` and `choices` have no counterpart in this API.
fn prepare(request: &ChatRequest, stream: bool) -> Prepared<'_> {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|message| message.role == Role::System)
        .map(|message| message.content.as_str())
        .collect();
    let mut messages: Vec<WireMessage<'_>> = request
        .messages
        .iter()
        .filter_map(|message| match message.role {
            Role::System => None,
            Role::User => Some(WireMessage {
                role: "user",
                content: &message.content,
            }),
            Role::Assistant => Some(WireMessage {
                role: "assistant",
                content: &message.content,
            }),
        })
        .collect();
    let mut trim_answer_start = false;
    if let Some(prefix) = request.assistant_prefix.as_deref() {
        let kept = prefix.trim_end();
        trim_answer_start = kept.len() < prefix.len();
        if !kept.is_empty() {
            messages.push(WireMessage {
                role: "assistant",
                content: kept,
            });
        }
    }
    let wire = WireRequest {
        model: &request.model,
        max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        temperature: request.temperature,
        top_p: request.top_p,
        stream,
    };
    Prepared {
        wire,
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
        }
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
        let text: String = body
            .content
            .iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text.as_deref())
            .collect();
        let text = if prepared.trim_answer_start {
            text.trim_start().to_owned()
        } else {
            text
        };
        Ok(ChatResponse {
            text,
            usage: Usage {
                prompt_tokens: body.usage.input_tokens.unwrap_or(0),
                completion_tokens: body.usage.output_tokens.unwrap_or(0),
            },
            finish_reason: finish_reason(body.stop_reason.as_deref()),
            model: body.model.unwrap_or_else(|| request.model.clone()),
            choice_probability: None,
        })
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
        let prepared = prepare(request, true);
        let response = self.endpoint.post(request, &prepared.wire).await?;
        let parser = EventsParser {
            provider: self.endpoint.name.clone(),
            trim_answer_start: prepared.trim_answer_start,
            usage: Usage::default(),
            stop_reason: None,
        };
        Ok(self.endpoint.events(response, parser))
    }
}

/// Reads Messages API stream events until `message_stop`.
struct EventsParser {
    provider: String,
    trim_answer_start: bool,
    usage: Usage,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<WireStartMessage>,
    #[serde(default)]
    delta: Option<WireEventDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireStartMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct WireEventDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl EventParser for EventsParser {
    fn on_data(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError> {
        let event: WireEvent =
            serde_json::from_str(data).map_err(|err| ProviderError::Malformed {
                provider: self.provider.clone(),
                message: format!(
                    "a stream event is not a Messages API event ({err}): {}",
                    http::body_prefix(data.as_bytes())
                ),
            })?;
        match event.kind.as_str() {
            "message_start" => {
                if let Some(usage) = event.message.map(|message| message.usage) {
                    self.update_usage(usage);
                }
                Ok(Vec::new())
            }
            "content_block_delta" => {
                let mut text = event.delta.and_then(|delta| delta.text).unwrap_or_default();
                if self.trim_answer_start {
                    text = text.trim_start().to_owned();
                    self.trim_answer_start = text.is_empty();
                }
                Ok(if text.is_empty() {
                    Vec::new()
                } else {
                    vec![StreamEvent::Delta(text)]
                })
            }
            "message_delta" => {
                if let Some(reason) = event.delta.and_then(|delta| delta.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                if let Some(usage) = event.usage {
                    self.update_usage(usage);
                }
                Ok(Vec::new())
            }
            "message_stop" => Ok(vec![StreamEvent::Done {
                usage: self.usage,
                finish_reason: finish_reason(self.stop_reason.as_deref()),
            }]),
            "error" => Err(stream_error(&self.provider, event.error)),
            // ping, content_block_start/stop, and event types added after this was written.
            _ => Ok(Vec::new()),
        }
    }
}

impl EventsParser {
    fn update_usage(&mut self, usage: WireUsage) {
        if let Some(input) = usage.input_tokens {
            self.usage.prompt_tokens = input;
        }
        if let Some(output) = usage.output_tokens {
            self.usage.completion_tokens = output;
        }
    }
}

/// A mid-stream error event, given the status the same error would have had before the stream
/// started, so that retries treat it alike (`overloaded_error` is 529, retryable).
fn stream_error(provider: &str, error: Option<WireError>) -> ProviderError {
    let error = error.unwrap_or(WireError {
        kind: String::new(),
        message: String::new(),
    });
    let status = match error.kind.as_str() {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    };
    ProviderError::Status {
        provider: provider.to_owned(),
        status,
        message: format!("error event mid-stream: {} ({})", error.message, error.kind),
        retry_after: None,
    }
}
