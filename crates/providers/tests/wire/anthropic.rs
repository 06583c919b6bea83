use futures::StreamExt;
use serde_json::json;
use shopfloor_providers::{
    Anthropic, ChatRequest, FinishReason, Message, Provider, ProviderError, Role, StreamEvent,
    Usage,
};
use shopfloor_testkit::{anthropic_error, anthropic_message, anthropic_stream, FakeServer, Reply};

use crate::triage_request;

fn provider(server: &FakeServer) -> Anthropic {
    Anthropic::new(
        "claude",
        Some(server.base_url()),
        Some("sk-ant-test".into()),
    )
    .expect("provider for the fake server")
}

async fn serve(reply: Reply) -> FakeServer {
    FakeServer::start(move |_| reply.clone()).await
}

#[tokio::test]
async fn completes_with_text_and_usage() {
    let server = serve(Reply::Json(200, anthropic_message("billing", 20, 2))).await;
    let response = provider(&server)
        .complete(&triage_request())
        .await
        .expect("a message");
    assert_eq!(response.text, "billing");
    assert_eq!(
        response.usage,
        Some(Usage {
            prompt_tokens: 20,
            completion_tokens: 2
        })
    );
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.model, "fake-claude");
}

#[tokio::test]
async fn sends_headers_system_field_and_default_max_tokens() {
    let server = serve(Reply::Json(200, anthropic_message("ok", 1, 1))).await;
    let request = ChatRequest {
        model: "claude-3-5-haiku-latest".into(),
        messages: vec![
            Message::new(Role::System, "You route support tickets."),
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "I was charged twice."),
        ],
        temperature: Some(0.5),
        seed: Some(1),
        ..ChatRequest::default()
    };
    provider(&server)
        .complete(&request)
        .await
        .expect("a message");

    let sent = &server.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 1024,
            "system": "You route support tickets.\n\nBe brief.",
            "messages": [{ "role": "user", "content": "I was charged twice." }],
            "temperature": 0.5
        })
    );
}

#[tokio::test]
async fn an_assistant_prefix_is_prefilled_and_the_answer_is_what_follows_it() {
    let server = serve(Reply::Json(200, anthropic_message(" billing", 20, 2))).await;
    let provider = provider(&server);
    assert!(provider.capabilities().assistant_prefix);
    let request = ChatRequest {
        max_tokens: Some(3),
        assistant_prefix: Some("Category: ".into()),
        ..triage_request()
    };
    let response = provider.complete(&request).await.expect("a message");
    assert_eq!(response.text, "billing");

    let body = &server.requests()[0].body;
    assert_eq!(body["max_tokens"], json!(3));
    assert_eq!(
        body["messages"],
        json!([
            { "role": "user", "content": "I was charged twice." },
            // The API rejects a prefill ending in whitespace.
            { "role": "assistant", "content": "Category:" }
        ])
    );
}

#[tokio::test]
async fn stop_reasons_map_to_finish_reasons() {
    for (wire, expected) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
    ] {
        let mut body = anthropic_message("x", 1, 1);
        body["stop_reason"] = json!(wire);
        let server = serve(Reply::Json(200, body)).await;
        let response = provider(&server).complete(&triage_request()).await;
        assert_eq!(
            response.expect("a message").finish_reason,
            expected,
            "{wire}"
        );
    }
}

#[tokio::test]
async fn overloaded_is_retryable_and_bad_requests_are_not() {
    let server = serve(Reply::Json(
        529,
        anthropic_error("overloaded_error", "Overloaded"),
    ))
    .await;
    let error = provider(&server)
        .complete(&triage_request())
        .await
        .expect_err("overloaded");
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .starts_with("HTTP 529 from claude: Overloaded"),
        "{error}"
    );

    let message = "max_tokens: Field required";
    let server = serve(Reply::Json(
        400,
        anthropic_error("invalid_request_error", message),
    ))
    .await;
    let error = provider(&server)
        .complete(&triage_request())
        .await
        .expect_err("bad request");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains(message), "{error}");
}

#[tokio::test]
async fn a_body_without_content_is_malformed() {
    let server = serve(Reply::Json(200, json!({ "type": "message", "usage": {} }))).await;
    let error = provider(&server)
        .complete(&triage_request())
        .await
        .expect_err("malformed");
    assert!(
        matches!(error, ProviderError::Malformed { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn streams_text_deltas_then_done_with_usage() {
    let server = serve(Reply::Sse(anthropic_stream(&["bill", "ing"], 20, 2))).await;
    let stream = provider(&server)
        .stream(&triage_request())
        .await
        .expect("the stream starts");
    let events: Vec<_> = stream.collect().await;
    assert_eq!(
        events,
        vec![
            Ok(StreamEvent::Delta("bill".into())),
            Ok(StreamEvent::Delta("ing".into())),
            Ok(StreamEvent::Done {
                usage: Some(Usage {
                    prompt_tokens: 20,
                    completion_tokens: 2
                }),
                finish_reason: FinishReason::Stop
            }),
        ]
    );
    assert_eq!(server.requests()[0].body["stream"], json!(true));
}

#[tokio::test]
async fn an_error_event_mid_stream_keeps_its_retry_meaning() {
    let mut lines = anthropic_stream(&["bill"], 20, 2);
    lines.truncate(4);
    lines.push(anthropic_error("overloaded_error", "Overloaded").to_string());
    let server = serve(Reply::Sse(lines)).await;
    let stream = provider(&server)
        .stream(&triage_request())
        .await
        .expect("the stream starts");
    let events: Vec<_> = stream.collect().await;
    assert_eq!(events[0], Ok(StreamEvent::Delta("bill".into())));
    let error = events[1].clone().expect_err("the error event");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(events.len(), 2);
}

/// A base URL written as Anthropic's SDKs write it (no `/v1`) reaches the same endpoint as one
/// with it; a base with another path is kept as given.
#[tokio::test]
async fn a_base_url_without_the_version_gets_it() {
    let server = FakeServer::start(|_: &shopfloor_testkit::ReceivedRequest| {
        shopfloor_testkit::Reply::Json(200, shopfloor_testkit::anthropic_message("ok", 1, 1))
    })
    .await;
    let root = server.base_url().trim_end_matches("/v1").to_string();
    let request = ChatRequest {
        model: "claude-3-5-haiku-latest".into(),
        messages: vec![Message::new(Role::User, "Hi")],
        ..ChatRequest::default()
    };
    for base in [root.clone(), format!("{root}/"), format!("{root}/v1")] {
        Anthropic::new("claude", Some(base.clone()), Some("k".into()))
            .unwrap()
            .complete(&request)
            .await
            .unwrap_or_else(|e| panic!("{base}: {e}"));
        assert_eq!(
            server.requests().last().unwrap().path,
            "/v1/messages",
            "{base}"
        );
    }
    let proxied = format!("{root}/proxy/anthropic");
    let _ = Anthropic::new("claude", Some(proxied), Some("k".into()))
        .unwrap()
        .complete(&request)
        .await;
    assert_eq!(
        server.requests().last().unwrap().path,
        "/proxy/anthropic/messages"
    );
}
