//! The integration tests of `server`, in one binary: one link instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod adversarial;
mod anthropic_sdk;
mod chat_fields;
mod embeddings;
mod experiments;
mod gateway;
mod idempotency;
mod images;
mod lifecycle;
mod limits;
mod models;
mod openai_sdk;
mod outcomes;
mod responses;
mod reviews;
mod schemathesis;
mod worker;
mod workflows;
