//! `POST /v1/embeddings` in OpenAI's wire format: `input` as one string or a list of them,
//! `encoding_format` `float` (the default) or `base64` (little-endian `f32`s, which the
//! openai SDKs ask for by default), `dimensions` carried to the model or refused by it,
//! `user` recorded as the caller. Token-id inputs are refused by name: no model here shares
//! OpenAI's tokenizer, so the ids would mean other words.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use shopfloor_engine::{EmbedAnswer, EmbedRequest};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::gateway::with_run;
use crate::{json_response, AppState, Json};

/// Texts in one request, at most (OpenAI's own limit).
const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddingsBody {
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    user: Option<String>,
}

/// How the vectors are written back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Float,
    Base64,
}

/// The texts of `input`: a string, or a non-empty list of strings.
fn texts(input: Value) -> Result<Vec<String>, ApiError> {
    let refuse = |why: &str| ApiError::bad_request(format!("input {why}")).param("input");
    let texts = match input {
        Value::String(text) => vec![text],
        Value::Array(items) => {
            if items.iter().any(|i| i.is_number() || i.is_array()) {
                return Err(refuse(
                    "holds token ids; send the texts themselves (no model here uses OpenAI's tokenizer)",
                ));
            }
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    _ => Err(refuse("must be a string or a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => return Err(refuse("must be a string or a list of strings")),
    };
    if texts.is_empty() {
        return Err(refuse("is empty"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(refuse(&format!(
            "holds {} texts; at most {MAX_INPUTS} in one request",
            texts.len()
        )));
    }
    if texts.iter().any(String::is_empty) {
        return Err(refuse("holds an empty string"));
    }
    Ok(texts)
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<EmbeddingsBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let encoding = match body.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format \"{other}\" is not one of: float, base64"
            ))
            .param("encoding_format"))
        }
    };
    if body.dimensions == Some(0) {
        return Err(ApiError::bad_request("dimensions must be at least 1").param("dimensions"));
    }
    let request = EmbedRequest {
        model: body.model.clone(),
        input: texts(body.input)?,
        dimensions: body.dimensions,
        caller: Some(principal.caller(body.user.as_deref())),
    };
    let engine = state.engine.clone();
    let metrics_state = state.clone();
    let outcome = state
        .detached(async move {
            let outcome = engine.gateway_embed(request).await;
            metrics_state.metrics.run(&outcome.run, started.elapsed());
            outcome
        })
        .await?;
    match outcome.result {
        Ok(answer) => Ok(list(&body.model, &outcome.run.id, &answer, encoding)),
        Err(e) => Err(ApiError::gateway(e, outcome.run.model.as_deref()).run(outcome.run.id)),
    }
}

/// OpenAI's `list` of `embedding` objects.
fn list(requested: &str, run_id: &str, answer: &EmbedAnswer, encoding: Encoding) -> Response {
    let data: Vec<Value> = answer
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = match encoding {
                Encoding::Float => json!(vector),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list",
        "data": data,
        "model": requested,
        "usage": {"prompt_tokens": answer.prompt_tokens, "total_tokens": answer.prompt_tokens},
    });
    with_run(
        json_response(StatusCode::OK, &body),
        run_id,
        Some(&answer.model),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_a_text_or_a_list_of_texts() {
        assert_eq!(texts(json!("hi")).unwrap(), ["hi"]);
        assert_eq!(texts(json!(["a", "b"])).unwrap(), ["a", "b"]);
        for bad in [
            json!([]),
            json!([1, 2]),
            json!([[1]]),
            json!(3),
            json!([""]),
            json!(["a", {}]),
        ] {
            let error = texts(bad.clone()).expect_err("refused");
            assert_eq!(error.param.as_deref(), Some("input"), "{bad}");
        }
    }
}
