//! A fake model vendor for tests and benchmarks: a real HTTP/1.1 server on 127.0.0.1 that speaks
//! just enough of the OpenAI Chat Completions and Anthropic Messages wire protocols; and the
//! project folders (`shopfloor.toml`, workflow files) that route to it.
//!
//! It is written on raw tokio TCP rather than a web framework because tests need responses that
//! no well-behaved framework would send: bodies cut off before their `Content-Length`, invalid
//! JSON, connections closed without an answer.
//!
//! ```no_run
//! # async fn demo() {
//! use shopfloor_testkit::{openai_completion, FakeServer, Reply};
//! let server = FakeServer::start(|_req| Reply::Json(200, openai_completion("hi", 3, 1))).await;
//! let url = format!("{}/chat/completions", server.base_url());
//! # let _ = url;
//! # }
//! ```

mod payloads;
mod project;
mod reply;
mod server;

pub use payloads::{
    anthropic_error, anthropic_message, anthropic_stream, openai_completion, openai_error,
    openai_stream,
};
pub use project::{append, assert_contains, write_project, OpenAiModel, WorkflowToml};
pub use reply::{Reply, Script};
pub use server::{read_response, refused_base_url, FakeServer, ReceivedRequest};

/// One value of every kind the PII detectors know (email, phone, card, IBAN, SSN, IP
/// address, secret), for tests that plant them and look for them afterwards.
pub const PLANTED_PII: [&str; 7] = [
    "dana.k@client.example",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "GB82 WEST 1234 5698 7654 32",
    "123-45-6789",
    "203.0.113.77",
    "sk-proj-4f9Qz8LmN2xR7tYb1KcV3wE6",
];
