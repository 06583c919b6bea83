//! The embedded models: SmolLM2-135M-Instruct for chat and all-MiniLM-L6-v2 for embeddings,
//! run in-process on the CPU.
//!
//! `provider = "local"` needs no key and no network once the weights are pulled
//! ([`pull`]). One [`LocalProvider`] per model file and process ([`LocalProvider::shared`]) serves
//! every request from a dedicated inference thread, each request with its own KV cache; one
//! [`LocalEmbedder`] per encoder ([`LocalEmbedder::shared`]) serves embeddings.

mod bert;
mod bpe;
mod catalog;
mod choice;
mod convert;
mod embed;
mod error;
mod generate;
mod gguf;
mod json;
mod kernels;
mod llama;
mod matmul;
#[cfg(test)]
mod pinned;
mod prompt;
mod prompt_cache;
mod provider;
mod pull;
mod q8;
mod quant;
mod safetensors;
mod sample;
mod tokenizer;
mod wordpiece;
mod worker;

pub use catalog::{
    known_model, known_models, model_dir, pulled_path, pulled_path_in, KnownModel, ModelFile,
    ModelKind,
};
pub use embed::{Embeddings, LocalEmbedder, MAX_INPUTS, MAX_TOKENS};
pub use error::LocalError;
pub use json::{check_schema, SchemaError};
pub use kernels::dot;
pub use prompt::{render_chatml, DEFAULT_SYSTEM_PROMPT};
pub use provider::{thread_count, LocalProvider, DEFAULT_MAX_TOKENS};
pub use pull::{pull, pull_into, PullProgress};
pub use tokenizer::Tokenizer;
