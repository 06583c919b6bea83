//! Embedding requests: texts in, one vector per text out, provider-independent.

/// What the engine asks of an embedding model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingRequest {
    /// The vendor's model id (`text-embedding-3-small`, `minilm`).
    pub model: String,
    /// The texts, in order; the answer has one vector for each.
    pub input: Vec<String>,
    /// OpenAI's `dimensions`: a shorter vector, for models that can give one.
    pub dimensions: Option<u32>,
    /// The W3C `traceparent` of the span the call is made in, sent as that header.
    pub traceparent: Option<String>,
}

/// An embedding model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingResponse {
    /// One vector per input text, in the order of the request.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read, when the provider reported them.
    pub prompt_tokens: Option<u32>,
    /// The model id the provider says answered.
    pub model: String,
}
