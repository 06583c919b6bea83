//! OpenAI's Chat Completions answers as they travel: a `chat.completion` object and the
//! `chat.completion.chunk`s of a stream. The gateway (`shopfloor serve`) writes them and the
//! `openai` provider reads them, so both follow one definition.
//!
//! Every field reads with a default where OpenAI-compatible servers are known to leave it out,
//! and a field the provider does not act on also reads when it is `null` or of another type;
//! what is written is what OpenAI's SDKs expect (a `null` where OpenAI writes one).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FinishReason;

/// A whole answer: `object` = `chat.completion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    #[serde(default, deserialize_with = "lenient")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient")]
    pub object: String,
    #[serde(default, deserialize_with = "lenient")]
    pub created: u64,
    #[serde(default)]
    pub model: Option<String>,
    pub choices: Vec<Choice>,
    /// `null` when the model reported none; some compatible servers leave it out.
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default, deserialize_with = "lenient")]
    pub system_fingerprint: Option<String>,
}

/// One answer of a [`Completion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default, deserialize_with = "lenient")]
    pub index: u32,
    pub message: AssistantMessage,
    /// Token log probabilities, passed through as the model gave them.
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant's message: its text (`null` beside tool calls), a refusal, or tool calls
/// (`function_call` in the legacy form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    #[serde(default, deserialize_with = "lenient")]
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<Function>,
}

/// A tool the model called (`type` = `function`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub kind: String,
    pub function: Function,
}

/// A function call's name and its arguments as JSON text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Function {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default, deserialize_with = "lenient")]
    pub total_tokens: u32,
}

impl From<crate::Usage> for Usage {
    fn from(usage: crate::Usage) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
        }
    }
}

impl From<Usage> for crate::Usage {
    fn from(usage: Usage) -> Self {
        crate::Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }
    }
}

/// One event of a stream: `object` = `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    #[serde(default, deserialize_with = "lenient")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient")]
    pub object: String,
    #[serde(default, deserialize_with = "lenient")]
    pub created: u64,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Only on the chunk that carries the usage (`stream_options.include_usage`), where
    /// `Some(None)` is written as `null`: the model reported none. Read, `null` and absent are
    /// both `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    /// A server's error in the middle of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl Chunk {
    /// The usage the chunk carries, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.flatten()
    }
}

/// The piece of the answer a [`Chunk`] carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default, deserialize_with = "lenient")]
    pub index: u32,
    #[serde(default)]
    pub delta: Option<Delta>,
    /// `null` until the last piece.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What a piece adds: the role (first piece), text, or pieces of tool calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallPiece>,
    /// The legacy form of a single call.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub function_call: Option<FunctionPiece>,
}

/// A piece of the tool call at `index`: its first piece has the id, type and name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallPiece {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionPiece>,
}

/// A piece of a function call: the name (first piece only) and more of the arguments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionPiece {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
}

/// A field the provider does not act on (ids, timestamps, indexes, roles, types), read as its
/// default when a compatible server sends `null` or another type: such a field must never
/// make a usable answer unreadable.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// `finish_reason` as OpenAI names it; `legacy` names tool calls `function_call`.
pub fn finish_reason_name(reason: FinishReason, legacy: bool) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls if legacy => "function_call",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

/// The reason OpenAI's `finish_reason` names; anything unknown or missing is `Other`.
pub fn finish_reason_of(name: Option<&str>) -> FinishReason {
    match name {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_reason_reads_back_as_written() {
        for reason in [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolCalls,
            FinishReason::ContentFilter,
        ] {
            for legacy in [false, true] {
                assert_eq!(
                    finish_reason_of(Some(finish_reason_name(reason, legacy))),
                    reason
                );
            }
        }
        assert_eq!(finish_reason_of(None), FinishReason::Other);
        assert_eq!(finish_reason_of(Some("eos")), FinishReason::Other);
    }

    #[test]
    fn a_chunk_writes_usage_only_where_it_carries_one() {
        let mut chunk = Chunk {
            id: "c".into(),
            object: "chat.completion.chunk".into(),
            created: 1,
            model: Some("m".into()),
            choices: vec![],
            usage: None,
            error: None,
        };
        assert!(serde_json::to_value(&chunk).unwrap().get("usage").is_none());
        chunk.usage = Some(None);
        assert_eq!(serde_json::to_value(&chunk).unwrap()["usage"], Value::Null);
        let read: Chunk = serde_json::from_value(json!({"choices": [], "usage": null})).unwrap();
        assert_eq!(read.usage(), None);
        let read: Chunk = serde_json::from_value(
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        )
        .unwrap();
        assert_eq!(
            read.usage().map(crate::Usage::from),
            Some(crate::Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
    }

    #[test]
    fn a_sparse_compatible_answer_reads() {
        // What small OpenAI-compatible servers send: no id, no usage, no finish_reason.
        let read: Completion =
            serde_json::from_value(json!({"choices": [{"message": {"content": "hi"}}]})).unwrap();
        assert_eq!(read.choices[0].message.content.as_deref(), Some("hi"));
        assert_eq!(read.usage, None);
        assert_eq!(read.model, None);
    }

    #[test]
    fn fields_the_provider_ignores_never_make_an_answer_unreadable() {
        // Seen from compatible servers: a float timestamp, null ids, roles and indexes.
        let read: Completion = serde_json::from_value(json!({
            "id": null, "object": null, "created": 1.7e9, "system_fingerprint": 7,
            "choices": [{"index": null, "message": {"role": null, "content": "hi",
                "tool_calls": [{"id": "c1", "type": null,
                    "function": {"name": "f", "arguments": "{}"}}]},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": null}
        }))
        .unwrap();
        assert_eq!(read.created, 0);
        assert_eq!(read.choices[0].message.content.as_deref(), Some("hi"));
        assert_eq!(read.choices[0].message.tool_calls[0].function.name, "f");
        assert_eq!(read.usage.map(|u| u.completion_tokens), Some(4));
        let chunk: Chunk = serde_json::from_value(json!({
            "id": 5, "created": "now",
            "choices": [{"index": null, "delta": {"role": 1, "content": "x",
                "function_call": "?"}, "finish_reason": null}]
        }))
        .unwrap();
        let delta = chunk.choices[0].delta.as_ref().unwrap();
        assert_eq!(delta.content.as_deref(), Some("x"));
        assert_eq!(delta.role, None);
    }
}
