use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use shopfloor_providers::{
    ChatRequest, FinishReason, OpenAi, Provider, ProviderError, StreamEvent, Usage,
};
use shopfloor_testkit::{
    openai_completion, openai_error, openai_stream, refused_base_url, FakeServer, Reply, Script,
};

use crate::triage_request;

fn provider(server: &FakeServer, key: Option<&str>) -> OpenAi {
    OpenAi::new("gpt-mini", Some(server.base_url()), key.map(str::to_owned))
        .expect("provider for the fake server")
}

async fn serve(reply: Reply) -> FakeServer {
    FakeServer::start(move |_| reply.clone()).await
}

async fn error_for(reply: Reply) -> ProviderError {
    let server = serve(reply).await;
    provider(&server, None)
        .complete(&triage_request())
        .await
        .expect_err("the server answered with an error")
}

#[tokio::test]
async fn completes_with_text_usage_and_finish_reason() {
    let server = serve(Reply::Json(200, openai_completion("billing", 12, 1))).await;
    let response = provider(&server, Some("sk-test"))
        .complete(&triage_request())
        .await;
    let response = response.expect("a completion");
    assert_eq!(response.text, "billing");
    assert_eq!(
        response.usage,
        Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 1
        })
    );
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.model, "fake-model");
    assert_eq!(response.choice_probability, None);
}

#[tokio::test]
async fn sends_model_messages_and_parameters_with_bearer_key() {
    let server = serve(Reply::Json(200, openai_completion("ok", 1, 1))).await;
    let request = ChatRequest {
        max_tokens: Some(5),
        temperature: Some(0.2),
        top_p: Some(0.9),
        seed: Some(7),
        ..triage_request()
    };
    provider(&server, Some("sk-test"))
        .complete(&request)
        .await
        .expect("a completion");

    let received = server.requests();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                { "role": "system", "content": "You route support tickets." },
                { "role": "user", "content": "I was charged twice." }
            ],
            "max_tokens": 5,
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7
        })
    );
}

#[tokio::test]
async fn without_a_key_sends_no_authorization_and_never_a_prefix() {
    let server = serve(Reply::Json(200, openai_completion("ok", 1, 1))).await;
    let provider = provider(&server, None);
    assert!(
        !provider.capabilities().assistant_prefix,
        "OpenAI has no prefill"
    );
    let request = ChatRequest {
        assistant_prefix: Some("Category:".into()),
        choices: Some(vec!["billing".into(), "bug".into()]),
        ..triage_request()
    };
    provider.complete(&request).await.expect("a completion");

    let sent = &server.requests()[0];
    assert_eq!(sent.header("authorization"), None);
    let body = sent.body.as_object().expect("a JSON object");
    let mut fields: Vec<&str> = body.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["messages", "model"],
        "nothing the API does not know is sent"
    );
}

#[tokio::test]
async fn finish_reasons_map_to_stop_length_and_other() {
    for (wire, expected) in [
        ("stop", FinishReason::Stop),
        ("length", FinishReason::Length),
        ("content_filter", FinishReason::ContentFilter),
    ] {
        let mut body = openai_completion("x", 1, 1);
        body["choices"][0]["finish_reason"] = json!(wire);
        let server = serve(Reply::Json(200, body)).await;
        let response = provider(&server, None).complete(&triage_request()).await;
        assert_eq!(
            response.expect("a completion").finish_reason,
            expected,
            "{wire}"
        );
    }
}

#[tokio::test]
async fn keeps_the_connection_alive_across_requests() {
    let server = serve(Reply::Json(200, openai_completion("ok", 1, 1))).await;
    let provider = provider(&server, None);
    for _ in 0..20 {
        provider
            .complete(&triage_request())
            .await
            .expect("a completion");
    }
    assert_eq!(server.request_count(), 20);
    assert_eq!(
        server.connection_count(),
        1,
        "one pooled connection serves them all"
    );
}

#[tokio::test]
async fn rate_limit_is_retryable_after_the_wait_the_server_asks_for() {
    let reply = Reply::Json(
        429,
        openai_error("Rate limit reached for gpt-4o-mini", "requests"),
    )
    .with_header("Retry-After", "7");
    let error = error_for(reply).await;
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let ProviderError::Status {
        provider,
        status,
        message,
        ..
    } = &error
    else {
        panic!("expected a status error, got {error:?}");
    };
    assert_eq!((provider.as_str(), *status), ("gpt-mini", 429));
    assert!(
        message.contains("Rate limit reached for gpt-4o-mini"),
        "{message}"
    );
    assert!(
        error
            .to_string()
            .starts_with("HTTP 429 from gpt-mini: Rate limit reached"),
        "{error}"
    );
}

#[tokio::test]
async fn retry_after_as_an_http_date_becomes_a_duration() {
    let reply = Reply::Json(503, openai_error("busy", "server_error"))
        .with_header("Retry-After", "Fri, 31 Dec 2100 23:59:59 GMT");
    let error = error_for(reply).await;
    let wait = error.retry_after().expect("a wait");
    assert!(wait > Duration::from_secs(365 * 24 * 3600), "{wait:?}");
}

#[tokio::test]
async fn server_errors_are_retryable() {
    for status in [500, 502, 503] {
        let error = error_for(Reply::Json(
            status,
            openai_error("upstream broke", "server_error"),
        ))
        .await;
        assert!(error.is_retryable(), "{status}: {error}");
        assert_eq!(error.retry_after(), None);
    }
}

#[tokio::test]
async fn client_errors_are_not_retryable_and_keep_the_vendor_message() {
    for (status, message) in [
        (400, "Invalid value for 'temperature'"),
        (401, "Incorrect API key provided"),
        (403, "Project does not have access to model"),
    ] {
        let error = error_for(Reply::Json(
            status,
            openai_error(message, "invalid_request_error"),
        ))
        .await;
        assert!(!error.is_retryable(), "{status}: {error}");
        assert!(error.to_string().contains(message), "{error}");
        if status != 400 {
            assert!(error.to_string().contains("check the API key"), "{error}");
        }
    }
}

#[tokio::test]
async fn error_bodies_that_are_not_json_are_quoted() {
    let error = error_for(Reply::Raw(502, "  <html>Bad gateway</html>\n".into())).await;
    assert!(
        error
            .to_string()
            .contains("HTTP 502 from gpt-mini: <html>Bad gateway</html>"),
        "{error}"
    );
    let error = error_for(Reply::Json(
        404,
        json!({ "error": "model 'llama9' not found" }),
    ))
    .await;
    assert!(
        error.to_string().contains("model 'llama9' not found"),
        "{error}"
    );
}

#[tokio::test]
async fn unparseable_or_incomplete_success_bodies_are_malformed() {
    let cases = [
        Reply::Raw(200, "{\"choices\": [".into()),
        Reply::Json(
            200,
            json!({ "id": "chatcmpl-1", "object": "chat.completion" }),
        ),
        Reply::Json(200, json!({ "choices": [] })),
        Reply::Json(
            200,
            json!({ "choices": [{ "message": { "role": "assistant" } }] }),
        ),
    ];
    for reply in cases {
        let error = error_for(reply.clone()).await;
        assert!(
            matches!(error, ProviderError::Malformed { .. }),
            "{reply:?} gave {error:?}"
        );
        assert!(!error.is_retryable());
    }
}

#[tokio::test]
async fn a_body_cut_off_before_its_length_is_a_retryable_connection_error() {
    let error = error_for(Reply::CutOff).await;
    assert!(
        matches!(error, ProviderError::Connection { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_a_retryable_connection_error() {
    let error = error_for(Reply::Close).await;
    assert!(
        matches!(error, ProviderError::Connection { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn connection_refused_says_where_and_is_retryable() {
    let base_url = refused_base_url();
    let provider = OpenAi::new("vllm", Some(base_url.clone()), None).expect("provider");
    let error = provider
        .complete(&triage_request())
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, ProviderError::Connection { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let text = error.to_string();
    assert!(text.contains("connection to vllm failed"), "{text}");
    assert!(
        text.contains(&format!("{base_url}/chat/completions")),
        "{text}"
    );
}

#[tokio::test]
async fn a_retry_after_a_failure_succeeds_on_the_same_provider() {
    let script = Script::new(
        [
            Reply::Json(500, openai_error("hiccup", "server_error")),
            Reply::CutOff,
        ],
        Reply::Json(200, openai_completion("billing", 3, 1)),
    );
    let server = FakeServer::start(script.handler()).await;
    let provider = provider(&server, None);
    assert!(provider.complete(&triage_request()).await.is_err());
    assert!(provider.complete(&triage_request()).await.is_err());
    let response = provider
        .complete(&triage_request())
        .await
        .expect("third time lucky");
    assert_eq!(response.text, "billing");
    assert_eq!(script.remaining(), 0);
}

async fn collect(
    provider: &OpenAi,
    request: &ChatRequest,
) -> Vec<Result<StreamEvent, ProviderError>> {
    let stream = provider.stream(request).await.expect("the stream starts");
    stream.collect().await
}

#[tokio::test]
async fn streams_deltas_then_done_with_usage() {
    let server = serve(Reply::Sse(openai_stream(&["Bill", "ing ", "€"], 9, 3))).await;
    let events = collect(&provider(&server, None), &triage_request()).await;
    let events: Vec<StreamEvent> = events
        .into_iter()
        .map(|event| event.expect("no error"))
        .collect();
    assert_eq!(
        events,
        vec![
            StreamEvent::Delta("Bill".into()),
            StreamEvent::Delta("ing ".into()),
            StreamEvent::Delta("€".into()),
            StreamEvent::Done {
                usage: Some(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 3
                }),
                finish_reason: FinishReason::Stop
            },
        ]
    );
    let body = &server.requests()[0].body;
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"], json!({ "include_usage": true }));
}

#[tokio::test]
async fn a_stream_without_usage_ends_with_zero_usage() {
    let lines = vec![
        json!({ "choices": [{ "index": 0, "delta": { "content": "ok" }, "finish_reason": null }] })
            .to_string(),
        json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "length" }] }).to_string(),
        "[DONE]".to_owned(),
    ];
    let server = serve(Reply::Sse(lines)).await;
    let events = collect(&provider(&server, None), &triage_request()).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1],
        Ok(StreamEvent::Done {
            usage: None,
            finish_reason: FinishReason::Length
        })
    );
}

#[tokio::test]
async fn a_stream_that_stops_before_done_ends_in_a_connection_error() {
    let mut lines = openai_stream(&["Hel", "lo"], 1, 2);
    lines.truncate(2);
    let server = serve(Reply::Sse(lines)).await;
    let events = collect(&provider(&server, None), &triage_request()).await;
    assert_eq!(events[0], Ok(StreamEvent::Delta("Hel".into())));
    let last = events
        .last()
        .expect("events")
        .clone()
        .expect_err("an error at the end");
    assert!(matches!(last, ProviderError::Connection { .. }), "{last:?}");
    assert!(last.is_retryable());
}

#[tokio::test]
async fn a_stream_refused_with_a_status_fails_before_any_event() {
    let server = serve(Reply::Json(429, openai_error("slow down", "requests"))).await;
    let error = provider(&server, None)
        .stream(&triage_request())
        .await
        .err()
        .expect("refused");
    assert!(error.is_retryable());
    assert!(error.to_string().contains("slow down"), "{error}");
}
