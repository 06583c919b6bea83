//! The Messages API's stream: its events read into shopfloor's stream events.

use super::*;

/// Reads Messages API stream events until `message_stop`.
pub(super) struct EventsParser {
    provider: String,
    trim_answer_start: bool,
    usage: Option<Usage>,
    stop_reason: Option<String>,
    answer_tool: Option<&'static str>,
    /// The content block that is the forced format tool's input: streamed as text.
    answer_block: Option<u32>,
    /// Content block index → tool call index, for the tool_use blocks so far.
    tool_blocks: Vec<(u32, u32)>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    content_block: Option<WireBlock>,
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
    partial_json: Option<String>,
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
            "content_block_start" => {
                let (Some(index), Some(block)) = (event.index, event.content_block) else {
                    return Ok(Vec::new());
                };
                if block.kind != "tool_use" {
                    return Ok(Vec::new());
                }
                let name = block.name.unwrap_or_default();
                if self.answer_tool == Some(name.as_str()) {
                    self.answer_block = Some(index);
                    return Ok(Vec::new());
                }
                let call = self.tool_blocks.len() as u32;
                self.tool_blocks.push((index, call));
                Ok(vec![StreamEvent::ToolCall(ToolCallDelta {
                    index: call,
                    id: block.id,
                    name: Some(name),
                    arguments: String::new(),
                })])
            }
            "content_block_delta" => {
                let index = event.index;
                let delta = event.delta;
                if let Some(json) = delta.as_ref().and_then(|d| d.partial_json.clone()) {
                    if index.is_some() && index == self.answer_block {
                        return Ok(if json.is_empty() {
                            Vec::new()
                        } else {
                            vec![StreamEvent::Delta(json)]
                        });
                    }
                    let call = self
                        .tool_blocks
                        .iter()
                        .find(|(block, _)| Some(*block) == index)
                        .map(|(_, call)| *call);
                    return Ok(match call {
                        Some(call) if !json.is_empty() => {
                            vec![StreamEvent::ToolCall(ToolCallDelta {
                                index: call,
                                id: None,
                                name: None,
                                arguments: json,
                            })]
                        }
                        _ => Vec::new(),
                    });
                }
                let mut text = delta.and_then(|delta| delta.text).unwrap_or_default();
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
            "message_stop" => {
                let finish = match finish_reason(self.stop_reason.as_deref()) {
                    FinishReason::ToolCalls if self.answer_block.is_some() => FinishReason::Stop,
                    finish => finish,
                };
                Ok(vec![StreamEvent::Done {
                    usage: self.usage,
                    finish_reason: finish,
                }])
            }
            "error" => Err(stream_error(&self.provider, event.error)),
            // ping, content_block_start/stop, and event types added after this was written.
            _ => Ok(Vec::new()),
        }
    }
}

impl EventsParser {
    pub(super) fn new(
        provider: String,
        trim_answer_start: bool,
        answer_tool: Option<&'static str>,
    ) -> Self {
        Self {
            provider,
            trim_answer_start,
            usage: None,
            stop_reason: None,
            answer_tool,
            answer_block: None,
            tool_blocks: Vec::new(),
        }
    }

    fn update_usage(&mut self, usage: WireUsage) {
        if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
            return;
        }
        let known = self.usage.get_or_insert_with(Usage::default);
        if let Some(input) = usage.input_tokens {
            known.prompt_tokens = input;
        }
        if let Some(output) = usage.output_tokens {
            known.completion_tokens = output;
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
