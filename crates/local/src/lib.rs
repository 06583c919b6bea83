//! The embedded model: SmolLM2-135M-Instruct run in-process on the CPU with candle.
//!
//! `provider = "local"` needs no key and no network once the weights are pulled
//! ([`pull`]). One [`LocalProvider`] per model file and process ([`LocalProvider::shared`]) serves
//! every request from a dedicated inference thread, each request with its own KV cache.

mod catalog;
mod choice;
mod convert;
mod error;
mod generate;
mod json;
mod kernels;
mod llama;
mod model;
mod prompt;
mod provider;
mod pull;
mod q8;
mod tokenizer;
mod worker;

pub use catalog::{known_model, known_models, model_dir, pulled_path, pulled_path_in, KnownModel};
pub use error::LocalError;
pub use json::{check_schema, SchemaError};
pub use prompt::{render_chatml, DEFAULT_SYSTEM_PROMPT};
pub use provider::{thread_count, LocalProvider, DEFAULT_MAX_TOKENS};
pub use pull::{pull, pull_into, PullProgress};
pub use tokenizer::Tokenizer;
