//! What the `chat_body` fuzz target in `fuzz/` checks, so that its regression inputs run
//! again as an ordinary test (below): any bytes sent as a Chat Completions body are
//! read into a request or refused with a 400, never a panic. Not part of the API.

use crate::chat_body::{messages, ChatBody};

/// Read `data` as the gateway reads a request body, as far as a request for a model.
pub fn chat_body(data: &[u8]) {
    let Ok(mut body) = serde_json::from_slice::<ChatBody>(data) else {
        return;
    };
    if let Some((field, why)) = body.refused.take() {
        assert!(!field.is_empty() && !why.is_empty());
        return;
    }
    let _ = messages(std::mem::take(&mut body.messages));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chat_body_fuzz_corpus_runs_clean() {
        let ran = shopfloor_core::fuzzing::replay_corpus("chat_body", super::chat_body);
        assert!(ran > 0, "empty corpus");
    }
}
