//! Generation with the real SmolLM2 weights.

use crate::common;

use futures::StreamExt;
use shopfloor_local::render_chatml;
use shopfloor_providers::{FinishReason, Provider, StreamEvent};

use common::{ask, provider};

#[tokio::test]
async fn greedy_completion_is_deterministic_and_sensible() {
    let provider = provider();
    let request = ask("What is the capital of France? Answer in one sentence.", 20);
    let first = provider.complete(&request).await.expect("first completion");
    let second = provider
        .complete(&request)
        .await
        .expect("second completion");
    assert_eq!(first.text, second.text);
    assert_eq!(first.usage, second.usage);
    assert!(
        first.text.contains("Paris"),
        "unexpected answer: {:?}",
        first.text
    );
    assert_eq!(first.model, "smollm2");
    assert_eq!(first.choice_probability, None);
}

#[tokio::test]
async fn stops_at_end_of_turn_without_special_text() {
    let provider = provider();
    let response = provider
        .complete(&ask("Say hello.", 48))
        .await
        .expect("completion");
    assert_eq!(
        response.finish_reason,
        FinishReason::Stop,
        "text: {:?}",
        response.text
    );
    assert!(!response.text.is_empty());
    for special in ["<|im_end|>", "<|im_start|>", "<|endoftext|>"] {
        assert!(
            !response.text.contains(special),
            "{special} in {:?}",
            response.text
        );
    }
    assert!(response.usage.unwrap().completion_tokens < 48);
}

#[tokio::test]
async fn token_counts_match_the_tokenizer() {
    let provider = provider();
    // A prompt whose answer is long, so that generation always runs into max_tokens: the test is
    // about counting, not about where a 135M model chooses to stop.
    let request = ask(
        "Write a long story about a cat who travels around the world.",
        6,
    );
    let response = provider.complete(&request).await.expect("completion");
    let rendered = render_chatml(&request.messages, None);
    let prompt_ids = provider.tokenizer().encode(&rendered).expect("tokenize");
    assert_eq!(
        response.usage.unwrap().prompt_tokens as usize,
        prompt_ids.len()
    );
    assert_eq!(response.finish_reason, FinishReason::Length);
    assert_eq!(response.usage.unwrap().completion_tokens, 6);
    // Re-tokenizing the answer can merge differently than the model sampled, but not by much.
    let answer_ids = provider
        .tokenizer()
        .encode(&response.text)
        .expect("tokenize");
    assert!(
        answer_ids.len() <= 6,
        "{} tokens in {:?}",
        answer_ids.len(),
        response.text
    );
}

#[tokio::test]
async fn assistant_prefix_is_continued_not_repeated() {
    let provider = provider();
    let mut request = ask("What colour is the sky on a clear day?", 16);
    request.assistant_prefix = Some("The sky is".to_owned());
    let response = provider.complete(&request).await.expect("completion");
    assert!(
        !response.text.starts_with("The sky is"),
        "{:?}",
        response.text
    );
    assert!(
        response.text.to_lowercase().contains("blue"),
        "{:?}",
        response.text
    );
}

#[tokio::test]
async fn concurrent_requests_answer_as_sequential_ones_do() {
    let provider = provider();
    let a = ask("Name a fruit that is yellow.", 12);
    let b = ask("What is 2 + 2?", 12);
    let alone_a = provider.complete(&a).await.expect("a alone");
    let alone_b = provider.complete(&b).await.expect("b alone");
    let (together_a, together_b) = tokio::join!(provider.complete(&a), provider.complete(&b));
    assert_eq!(together_a.expect("a together"), alone_a);
    assert_eq!(together_b.expect("b together"), alone_b);
}

#[tokio::test]
async fn stream_yields_the_same_text_in_whole_characters() {
    let provider = provider();
    let request = ask("Write the word café and a Japanese greeting.", 24);
    let whole = provider.complete(&request).await.expect("completion");
    let mut stream = provider.stream(&request).await.expect("stream");
    let mut text = String::new();
    let mut pieces = 0;
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.expect("stream event") {
            StreamEvent::Delta(piece) => {
                assert!(!piece.contains(char::REPLACEMENT_CHARACTER), "{piece:?}");
                text.push_str(&piece);
                pieces += 1;
            }
            StreamEvent::Done {
                usage,
                finish_reason,
            } => done = Some((usage, finish_reason)),
            StreamEvent::ToolCall(call) => panic!("the local model called a tool: {call:?}"),
        }
    }
    assert_eq!(text, whole.text);
    assert!(pieces > 1, "streamed in {pieces} piece(s)");
    assert_eq!(done, Some((whole.usage, whole.finish_reason)));
}

#[tokio::test]
async fn sampling_with_a_seed_repeats_and_differs_from_greedy() {
    let provider = provider();
    let mut request = ask("Tell me a one-line story about a cat.", 16);
    request.temperature = Some(1.0);
    request.top_p = Some(0.95);
    request.seed = Some(7);
    let first = provider.complete(&request).await.expect("first");
    let second = provider.complete(&request).await.expect("second");
    assert_eq!(first.text, second.text);
    request.seed = Some(8);
    let other = provider.complete(&request).await.expect("other seed");
    assert_ne!(first.text, other.text);
}

#[tokio::test]
async fn an_overlong_prompt_is_refused_clearly() {
    let provider = provider();
    let response = provider.complete(&ask(&"word ".repeat(5000), 4)).await;
    let error = response.expect_err("5000 words do not fit");
    assert!(error.to_string().contains("reads at most"), "{error}");
    assert!(!error.is_retryable());
}
