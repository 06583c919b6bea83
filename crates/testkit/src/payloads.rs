//! Response bodies shaped like the vendors' own, for handlers to return.

use serde_json::{json, Value};

/// A successful OpenAI Chat Completions body answering `text`.
pub fn openai_completion(text: &str, prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    })
}

/// An OpenAI error body: `{"error":{"message":…,"type":…}}`.
pub fn openai_error(message: &str, kind: &str) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })
}

/// The `data:` payloads of an OpenAI stream sending `pieces`, then usage, then `[DONE]`.
pub fn openai_stream(pieces: &[&str], prompt_tokens: u32, completion_tokens: u32) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": "fake-model",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
        .to_string()
    };
    let mut events = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    events.extend(
        pieces
            .iter()
            .map(|piece| chunk(json!({ "content": piece }), Value::Null)),
    );
    events.push(chunk(json!({}), json!("stop")));
    events.push(
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": "fake-model",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens
            }
        })
        .to_string(),
    );
    events.push("[DONE]".to_owned());
    events
}

/// A successful Anthropic Messages body answering `text`.
pub fn anthropic_message(text: &str, input_tokens: u32, output_tokens: u32) -> Value {
    json!({
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "fake-claude",
        "content": [{ "type": "text", "text": text }],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": { "input_tokens": input_tokens, "output_tokens": output_tokens }
    })
}

/// An Anthropic error body: `{"type":"error","error":{"type":…,"message":…}}`.
pub fn anthropic_error(kind: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

/// The `data:` payloads of an Anthropic stream sending `pieces` (it has no `[DONE]`).
pub fn anthropic_stream(pieces: &[&str], input_tokens: u32, output_tokens: u32) -> Vec<String> {
    let mut events = vec![
        json!({
            "type": "message_start",
            "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": "fake-claude",
                "content": [], "stop_reason": null,
                "usage": { "input_tokens": input_tokens, "output_tokens": 1 }
            }
        }),
        json!({ "type": "content_block_start", "index": 0,
                "content_block": { "type": "text", "text": "" } }),
        json!({ "type": "ping" }),
    ];
    events.extend(pieces.iter().map(|piece| {
        json!({ "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": piece } })
    }));
    events.push(json!({ "type": "content_block_stop", "index": 0 }));
    events.push(json!({
        "type": "message_delta",
        "delta": { "stop_reason": "end_turn", "stop_sequence": null },
        "usage": { "output_tokens": output_tokens }
    }));
    events.push(json!({ "type": "message_stop" }));
    events.into_iter().map(|event| event.to_string()).collect()
}
