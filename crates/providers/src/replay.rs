//! Recorded exchanges: [`ExchangeRecorder`] writes them while a real provider answers, [`Replay`] answers
//! from them later, offline and deterministically (tests, CI, demos).
//!
//! A recording is JSONL, one exchange a line: `{"key":…,"request":…,"response":…}`, where
//! `request` is a [`ChatRequest`] and `response` a [`ChatResponse`] in their serde form and `key`
//! is [`request_key`] of the request.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::registry::ProviderConfig;
use crate::{
    Capabilities, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Message,
    Provider, ProviderError, Role, Unsupported,
};

/// The identity of a request: lower-case hex SHA-256 of its canonical JSON.
///
/// The canonical JSON is written here by hand rather than by serde so that it cannot shift with
/// serde_json features another crate turns on (`preserve_order`, `arbitrary_precision`): an
/// object with the fields `model`, `messages` (each `{"role":…,"content":…}`), `max_tokens`,
/// `temperature`, `top_p`, `seed`, `assistant_prefix`, `choices` in that order, absent fields
/// left out, no whitespace, strings escaped as serde_json does, floats in Rust's shortest
/// round-trip form (`0.7`). The same request gives the same key on every run and platform.
/// Adding a field to [`ChatRequest`] fails to compile here until it is given a place.
pub fn request_key(request: &ChatRequest) -> String {
    let ChatRequest {
        model,
        messages,
        max_tokens,
        temperature,
        top_p,
        seed,
        assistant_prefix,
        choices,
        // Where the call sits in a trace does not change what is asked.
        traceparent: _,
        // Refused before a call (`Provider::unsupported`): replay answers plain chat only.
        extras: _,
    } = request;
    let mut json = String::with_capacity(256);
    json.push_str("{\"model\":");
    push_string(&mut json, model);
    json.push_str(",\"messages\":[");
    for (index, message) in messages.iter().enumerate() {
        let Message { role, content, .. } = message;
        if index > 0 {
            json.push(',');
        }
        let role = match role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        let _ = write!(json, "{{\"role\":\"{role}\",\"content\":");
        push_string(&mut json, content);
        json.push('}');
    }
    json.push(']');
    // Writing into a String cannot fail.
    if let Some(max_tokens) = max_tokens {
        let _ = write!(json, ",\"max_tokens\":{max_tokens}");
    }
    if let Some(temperature) = temperature {
        let _ = write!(json, ",\"temperature\":{temperature}");
    }
    if let Some(top_p) = top_p {
        let _ = write!(json, ",\"top_p\":{top_p}");
    }
    if let Some(seed) = seed {
        let _ = write!(json, ",\"seed\":{seed}");
    }
    if let Some(prefix) = assistant_prefix {
        json.push_str(",\"assistant_prefix\":");
        push_string(&mut json, prefix);
    }
    if let Some(choices) = choices {
        json.push_str(",\"choices\":[");
        for (index, choice) in choices.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            push_string(&mut json, choice);
        }
        json.push(']');
    }
    json.push('}');
    hex::encode(Sha256::digest(json.as_bytes()))
}

fn push_string(json: &mut String, text: &str) {
    // Serialising a &str cannot fail; string escaping does not depend on serde_json features.
    json.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// One line of a recording, as written.
#[derive(Serialize)]
struct ExchangeOut<'a> {
    key: &'a str,
    request: &'a ChatRequest,
    response: &'a ChatResponse,
}

/// One line of a recording, as read. `request` may be left out of hand-written recordings.
#[derive(Deserialize)]
struct ExchangeIn {
    key: String,
    #[serde(default)]
    request: Option<ChatRequest>,
    response: ChatResponse,
}

/// Answers requests from a recording; a request that was not recorded is an error.
#[derive(Debug)]
pub struct Replay {
    file: String,
    responses: HashMap<String, ChatResponse>,
    capabilities: Capabilities,
}

impl Replay {
    /// Load a recording. When a key occurs more than once, the last line wins.
    pub fn open(path: impl AsRef<Path>) -> Result<Replay, ProviderError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| {
            ProviderError::Config(format!(
                "cannot read the replay recording {file}: {err}; record one by running with a \
                 recorder, or fix `file` in shopfloor.toml"
            ))
        })?;
        let mut responses = HashMap::new();
        let mut capabilities = Capabilities::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let exchange: ExchangeIn = serde_json::from_str(line).map_err(|err| {
                ProviderError::Config(format!(
                    "{file}:{}: not a recorded exchange ({err}); each line must be \
                     {{\"key\":…,\"request\":…,\"response\":…}}: fix or delete the line, or record again",
                    index + 1
                ))
            })?;
            // Report the capabilities the recording was made with, so that the engine shapes
            // requests (prefix, choices) the way it did then and the keys match.
            if let Some(request) = &exchange.request {
                capabilities.assistant_prefix |= request.assistant_prefix.is_some();
                capabilities.constrained_choice |= request.choices.is_some();
                capabilities.constrained_json |= request
                    .extras
                    .as_ref()
                    .is_some_and(|e| e.response_format.is_some());
            }
            responses.insert(exchange.key, exchange.response);
        }
        Ok(Replay {
            file,
            responses,
            capabilities,
        })
    }

    /// How many distinct requests the recording answers.
    pub fn len(&self) -> usize {
        self.responses.len()
    }

    /// Whether the recording answers nothing.
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }
}

/// Registry constructor for `provider = "replay"` (file required).
pub(crate) fn from_config(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    let file = config.file.as_deref().ok_or_else(|| {
        ProviderError::Config(format!(
            "model '{}' uses provider \"replay\", which needs the recording to answer from: add \
             file = \"recordings/{}.jsonl\" to its entry in shopfloor.toml",
            config.name, config.name
        ))
    })?;
    Ok(Arc::new(Replay::open(file)?))
}

#[async_trait]
impl Provider for Replay {
    fn kind(&self) -> &'static str {
        "replay"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let key = request_key(request);
        match self.responses.get(&key) {
            Some(response) => Ok(response.clone()),
            None => Err(ProviderError::NotRecorded {
                key,
                file: self.file.clone(),
            }),
        }
    }
}

/// Wraps a provider and appends every successful exchange to a recording for [`Replay`].
///
/// Each exchange is written with one `write` call under a mutex on a file opened for appending,
/// so concurrent calls never interleave lines. Streaming goes through [`Provider::complete`]
/// (the default `stream`), so streamed answers are recorded too, as one piece.
pub struct ExchangeRecorder {
    inner: Arc<dyn Provider>,
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl ExchangeRecorder {
    /// Record `inner`'s answers to `path`, creating it or appending to it.
    pub fn new(
        inner: Arc<dyn Provider>,
        path: impl AsRef<Path>,
    ) -> Result<ExchangeRecorder, ProviderError> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|err| {
                ProviderError::Config(format!(
                "cannot open the recording {} for appending: {err}; check that its folder exists \
                 and is writable",
                path.display()
            ))
            })?;
        Ok(ExchangeRecorder {
            inner,
            path,
            file: Mutex::new(file),
        })
    }

    fn append(&self, request: &ChatRequest, response: &ChatResponse) -> Result<(), ProviderError> {
        let key = request_key(request);
        let exchange = ExchangeOut {
            key: &key,
            request,
            response,
        };
        let write_error = |err: &dyn std::fmt::Display| {
            ProviderError::Config(format!(
                "cannot append to the recording {}: {err}",
                self.path.display()
            ))
        };
        let mut line = serde_json::to_vec(&exchange).map_err(|err| write_error(&err))?;
        line.push(b'\n');
        // A panic elsewhere while holding the lock leaves the file itself intact.
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line).map_err(|err| write_error(&err))
    }
}

impl std::fmt::Debug for ExchangeRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRecorder")
            .field("inner", &self.inner.kind())
            .field("path", &self.path)
            .finish()
    }
}

#[async_trait]
impl Provider for ExchangeRecorder {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self.inner.complete(request).await?;
        self.append(request, &response)?;
        Ok(response)
    }

    // Embeddings pass through unrecorded: replay files hold chat exchanges only.
    fn unsupported_embedding(&self, request: &EmbeddingRequest) -> Option<Unsupported> {
        self.inner.unsupported_embedding(request)
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        self.inner.embed(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages: vec![
                Message::new(Role::System, "Route tickets."),
                Message::new(Role::User, "Refund \"now\"\n€"),
            ],
            max_tokens: Some(16),
            temperature: Some(0.7),
            seed: Some(42),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn key_is_pinned_so_recordings_stay_valid() {
        // If this changes, every recording in every project stops matching: don't, or bump a
        // version and migrate. The value was checked independently (Python's hashlib over the
        // documented canonical form).
        assert_eq!(
            request_key(&request()),
            "c27b7461f3c35b97fe1a1fac7d2261269efbf3b9c59606605c058e4831c0b6e9"
        );
    }

    #[test]
    fn key_changes_with_every_part_of_the_request() {
        let base = request_key(&request());
        let variants = [
            ChatRequest {
                model: "other".into(),
                ..request()
            },
            ChatRequest {
                temperature: Some(0.70001),
                ..request()
            },
            ChatRequest {
                top_p: Some(1.0),
                ..request()
            },
            ChatRequest {
                seed: None,
                ..request()
            },
            ChatRequest {
                max_tokens: Some(17),
                ..request()
            },
            ChatRequest {
                assistant_prefix: Some("A".into()),
                ..request()
            },
            ChatRequest {
                choices: Some(vec!["a".into()]),
                ..request()
            },
            ChatRequest {
                messages: vec![Message::new(Role::User, "Route tickets.")],
                ..request()
            },
        ];
        for variant in variants {
            assert_ne!(request_key(&variant), base, "{variant:?}");
        }
    }
}
