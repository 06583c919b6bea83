//! Constrained choice with the real SmolLM2 weights.

use crate::common;

use shopfloor_providers::{FinishReason, Provider};

use common::{ask, provider};

fn labels() -> Vec<String> {
    ["billing", "bug", "account", "other"]
        .map(String::from)
        .to_vec()
}

#[tokio::test]
async fn returns_one_of_the_choices_with_its_probability() {
    let provider = provider();
    assert!(provider.capabilities().constrained_choice);
    assert!(provider.capabilities().assistant_prefix);
    let mut request = ask(
        "Route this support ticket to a queue: billing, bug, account or other.\n\n\
         Subject: Charged twice\nI was charged twice for my subscription this month.",
        4,
    );
    request.choices = Some(labels());
    let response = provider.complete(&request).await.expect("choice");
    assert!(labels().contains(&response.text), "{:?}", response.text);
    let p = response.choice_probability.expect("a probability");
    assert!(p > 0.0 && p <= 1.0, "{p}");
    // With four options the winner holds at least a quarter of the mass.
    assert!(p >= 0.25, "{p}");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert!(response.usage.unwrap().completion_tokens >= 1);
    // Deterministic: the same request scores the same.
    assert_eq!(provider.complete(&request).await.expect("again"), response);
}

#[tokio::test]
async fn prefers_the_obvious_answer() {
    let provider = provider();
    // A 135M model gets many easy questions wrong (it calls fire cold); this one it knows.
    let mut request = ask(
        "What is the capital of France? Answer with the city name only.",
        4,
    );
    request.choices = Some(["Berlin", "Paris", "Madrid"].map(String::from).to_vec());
    let response = provider.complete(&request).await.expect("choice");
    assert_eq!(response.text, "Paris");
    assert!(
        response.choice_probability.is_some_and(|p| p > 0.5),
        "{response:?}"
    );
}

#[tokio::test]
async fn scores_after_the_assistant_prefix() {
    let provider = provider();
    let mut request = ask("What is the capital of France?", 4);
    request.assistant_prefix = Some("The capital of France is".to_owned());
    request.choices = Some(vec![
        " Berlin".to_owned(),
        " Paris".to_owned(),
        " Madrid".to_owned(),
    ]);
    let response = provider.complete(&request).await.expect("choice");
    assert_eq!(response.text, " Paris");
}

#[tokio::test]
async fn a_single_choice_is_certain_and_no_choice_is_an_error() {
    let provider = provider();
    let mut request = ask("Pick one.", 4);
    request.choices = Some(vec!["only".to_owned()]);
    let response = provider.complete(&request).await.expect("choice");
    assert_eq!(response.text, "only");
    assert_eq!(response.choice_probability, Some(1.0));
    request.choices = Some(Vec::new());
    assert!(provider.complete(&request).await.is_err());
}
