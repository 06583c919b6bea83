//! Loading the real embedded model for tests.

use std::sync::Arc;

use shopfloor_local::{LocalError, LocalProvider};
use shopfloor_providers::{ChatRequest, Message, Role};

/// The shared model from the pulled cache (`SHOPFLOOR_MODEL_DIR` or the default folder).
/// Fails, never skips, when the model is not there.
pub fn provider() -> Arc<LocalProvider> {
    // nextest runs each test in its own process, two at a time on a 2-core machine: one compute
    // thread each keeps them from fighting over the cores.
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "1");
    }
    match LocalProvider::shared("smollm2") {
        Ok(provider) => provider,
        Err(e @ LocalError::NotPulled { .. }) => panic!(
            "these tests need the real model: {e}. Run `shopfloor models pull smollm2` \
             (or point SHOPFLOOR_MODEL_DIR at a folder holding the GGUF file)"
        ),
        Err(e) => panic!("cannot load the embedded model: {e}"),
    }
}

/// A one-turn request for `smollm2`.
#[allow(dead_code)] // Each test file compiles this module; not all of them ask.
pub fn ask(user: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        model: "smollm2".to_owned(),
        messages: vec![Message::new(Role::User, user)],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..ChatRequest::default()
    }
}
