//! OpenAI's `POST /embeddings`, which OpenAI-compatible servers (vLLM, Ollama, llama.cpp) also
//! serve.

use serde::{Deserialize, Serialize};

use crate::{http, EmbeddingRequest, EmbeddingResponse, ProviderError};

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    input: &'a [String],
    /// Always floats upstream: the gateway encodes base64 for its own clients.
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
}

#[derive(Deserialize)]
struct WireResponse {
    data: Vec<WireEmbedding>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u32,
}

/// Ask `endpoint` for one vector per text of `request`, in the request's order.
pub(super) async fn embed(
    endpoint: &http::Endpoint,
    request: &EmbeddingRequest,
) -> Result<EmbeddingResponse, ProviderError> {
    let wire = WireRequest {
        model: &request.model,
        input: &request.input,
        encoding_format: "float",
        dimensions: request.dimensions,
    };
    let response = endpoint
        .post_traced(request.traceparent.as_deref(), &wire)
        .await?;
    let body: WireResponse = endpoint
        .read_json(response, "an Embeddings JSON object")
        .await?;
    let count = request.input.len();
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; count];
    for item in body.data {
        let slot = vectors.get_mut(item.index).ok_or_else(|| {
            endpoint.malformed(format!(
                "POST {} answered an embedding with index {} for {count} inputs",
                endpoint.url, item.index
            ))
        })?;
        *slot = Some(item.embedding);
    }
    let vectors = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| {
                endpoint.malformed(format!(
                    "POST {} answered no embedding for input {i} of {count}",
                    endpoint.url
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmbeddingResponse {
        vectors,
        prompt_tokens: body.usage.map(|u| u.prompt_tokens),
        model: body.model.unwrap_or_else(|| request.model.clone()),
    })
}
