//! Providers against a real HTTP server on 127.0.0.1 (shopfloor-testkit): what goes on the wire
//! and what a caller gets back, including every way an upstream can fail.

mod anthropic;
mod openai;
mod registry;
mod replay;

use shopfloor_providers::{ChatRequest, Message, Role};

/// A typical triage request: a system prompt and one user message.
pub fn triage_request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::new(Role::System, "You route support tickets."),
            Message::new(Role::User, "I was charged twice."),
        ],
        ..ChatRequest::default()
    }
}
