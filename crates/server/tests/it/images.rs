//! Image parts (issue 26 item 4): carried to the providers that take them, each in its own
//! form and in order, refused by name for the embedded model, held back by the PII policy
//! (no detector reads an image) unless `images = "allow"`, and recorded by SHA-256 rather
//! than whole.

use crate::chat_fields::write_fields_project;
use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_testkit::{anthropic_message, openai_completion, FakeServer, ReceivedRequest, Reply};

const PNG: &str = "data:image/png;base64,iVBORw0KGgo=";

fn upstream(request: &ReceivedRequest) -> Reply {
    if request.path.ends_with("/messages") {
        Reply::Json(200, anthropic_message("A cat.", 5, 2))
    } else {
        Reply::Json(200, openai_completion("A cat.", 5, 2))
    }
}

fn pictured(model: &str, question: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": question},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "image_url", "image_url": "https://example.com/cat.jpg"},
    ]}]})
}

#[tokio::test]
async fn images_reach_each_provider_in_its_own_form_and_the_embedded_model_refuses_them() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let key = Some(server.keys.operator.as_str());
    let http = client();

    for model in ["oai", "claude"] {
        let (status, body) = post(
            &http,
            &server.url("/v1/chat/completions"),
            key,
            &pictured(model, "What is this?"),
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(body["choices"][0]["message"]["content"], "A cat.");
    }
    let sent = fake.requests();
    assert_eq!(
        sent[0].body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ])
    );
    assert_eq!(
        sent[1].body["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ])
    );

    // The Responses API's input_image parts go the same way.
    let (status, body) = post(
        &http,
        &server.url("/v1/responses"),
        key,
        &json!({"model": "oai", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "And this?"},
            {"type": "input_image", "image_url": "https://example.com/dog.png", "detail": "high"},
        ]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.requests()[2].body["messages"][0]["content"][1],
        json!({"type": "image_url", "image_url": {"url": "https://example.com/dog.png", "detail": "high"}})
    );

    // Refused by name, before any upstream is called: a type Anthropic does not take, and
    // what no provider takes. (The embedded model's refusal is `shopfloor-local`'s test:
    // this crate's tests build without it.)
    let before = fake.request_count();
    let refusals = [
        (
            json!({"model": "claude", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]}),
            "anthropic models take images of type image/jpeg, image/png, image/gif, image/webp, not image/bmp",
        ),
        (
            json!({"model": "oai", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]}),
            "messages[0].content[0].image_url.url \"http://example.com/a.png\" is neither an https:// URL",
        ),
        (
            json!({"model": "oai", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}]}]}),
            "is a data URL of type \"text/plain\", not an image",
        ),
        (
            json!({"model": "oai", "messages": [{"role": "system", "content": [
                {"type": "image_url", "image_url": {"url": PNG}}]},
                {"role": "user", "content": "Hi"}]}),
            "images go in user messages",
        ),
        (
            json!({"model": "oai", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]}]}),
            "text and image_url parts are supported",
        ),
    ];
    for (request, expected) in refusals {
        let (status, body) = post(&http, &server.url("/v1/chat/completions"), key, &request).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert_openai_error(&body, "invalid_request_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
        assert_eq!(body["error"]["param"], "messages", "{body}");
    }
    assert_eq!(fake.request_count(), before, "no upstream was called");
    server.stop().await;
}

#[tokio::test]
async fn the_pii_policy_holds_images_back_unless_allowed_and_still_redacts_the_text_beside_them() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let config = std::fs::read_to_string(dir.path().join("shopfloor.toml")).unwrap();
    let policy = "\n[policy.pii]\ndetect = [\"email\"]\non_external = \"redact\"\n";
    std::fs::write(
        dir.path().join("shopfloor.toml"),
        format!("{config}{policy}"),
    )
    .unwrap();
    let server = TestServer::start(dir.path(), test_config()).await;
    let key = Some(server.keys.operator.as_str());
    let question = "Whose badge is this? Mail dana@acme.example";
    let (status, body) = post(
        &client(),
        &server.url("/v1/chat/completions"),
        key,
        &pictured("oai", question),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "refused_by_policy", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("images = \"allow\""), "{message}");
    assert_eq!(fake.request_count(), 0);
    let keys = server.keys.clone();
    server.stop().await;

    std::fs::write(
        dir.path().join("shopfloor.toml"),
        format!("{config}{policy}images = \"allow\"\n"),
    )
    .unwrap();
    let server = TestServer::restart(dir.path(), test_config(), keys).await;
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .json(&pictured("oai", question))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = run_id(&response);
    let sent = &fake.requests()[0].body["messages"][0]["content"];
    let text = sent[0]["text"].as_str().unwrap();
    assert!(
        !text.contains("dana@acme.example") && text.contains("EMAIL"),
        "the text part is redacted: {sent}"
    );
    assert_eq!(
        sent[1]["image_url"]["url"], PNG,
        "the image goes as it came"
    );
    // The run keeps the inline image as its SHA-256, not its bytes.
    let run = server.recorded(&id).await;
    let parts = run.input["messages"][0]["parts"].to_string();
    assert!(
        parts.contains("data:image/png;sha256,") && !parts.contains("iVBORw0KGgo="),
        "{parts}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_workflow_refuses_images_rather_than_drop_them() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &fake.base_url(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let (status, body) = post(
        &client(),
        &server.url("/v1/chat/completions"),
        Some(&server.keys.operator),
        &json!({"model": "workflow:triage", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Classify this"},
            {"type": "image_url", "image_url": {"url": PNG}}]}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("images cannot be given to a workflow"),
        "{message}"
    );
    assert_eq!(fake.request_count(), 0);
    server.stop().await;
}
