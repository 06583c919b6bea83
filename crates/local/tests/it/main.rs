//! The integration tests of `local`, in one binary: one link instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod choice;
mod embeddings;
mod errors;
mod generation;
mod json;
mod tokenizer;
