//! `Idempotency-Key` through the real server and a real upstream (issue 26 item 7): a retry
//! with the same key and body gets the first answer and calls no model; another body is 422;
//! a failed request's retry runs again; keys belong to their API key; a stream is not replayed.

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_testkit::FakeServer;

async fn send(
    server: &TestServer,
    path: &str,
    key: &str,
    idempotency: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client()
        .post(server.url(path))
        .bearer_auth(key)
        .header("Idempotency-Key", idempotency)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer_and_calls_no_model() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let key = server.keys.operator.clone();
    let chat = chat_body("fast", "Hello");

    let (status, first_headers, first) =
        send(&server, "/v1/chat/completions", &key, "retry-1", &chat).await;
    assert_eq!(status, 200, "{first}");
    assert!(first_headers.get("idempotent-replayed").is_none());
    let calls = upstream.request_count();
    let (status, headers, again) =
        send(&server, "/v1/chat/completions", &key, "retry-1", &chat).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "the same answer, byte for byte");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(
        headers["x-shopfloor-run-id"],
        first_headers["x-shopfloor-run-id"]
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(upstream.request_count(), calls, "no model was called again");

    // The same key with another body is refused by name; another API key's key is its own.
    let (status, _, body) = send(
        &server,
        "/v1/chat/completions",
        &key,
        "retry-1",
        &chat_body("fast", "Something else"),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["param"], "Idempotency-Key");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    let (status, _, _) = send(
        &server,
        "/v1/chat/completions",
        &server.keys.admin,
        "retry-1",
        &chat,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(upstream.request_count(), calls + 1);

    // A failed request leaves its key free: the retry (here, corrected) runs.
    let (status, _, _) = send(
        &server,
        "/v1/chat/completions",
        &key,
        "retry-2",
        &chat_body("no-such-model", "Hello"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, body) = send(&server, "/v1/chat/completions", &key, "retry-2", &chat).await;
    assert_eq!(status, 200, "{body}");

    // A workflow run is answered once: the retry names the same run.
    let run = json!({"input": {"text": "billing question"}});
    let (status, _, first) = send(&server, "/v1/workflows/triage/runs", &key, "run-1", &run).await;
    assert_eq!(status, 200, "{first}");
    let calls = upstream.request_count();
    let (status, headers, again) =
        send(&server, "/v1/workflows/triage/runs", &key, "run-1", &run).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(headers["idempotent-replayed"], "true");
    let (first, again): (Value, Value) = (
        serde_json::from_str(&first).unwrap(),
        serde_json::from_str(&again).unwrap(),
    );
    assert_eq!(again["run_id"], first["run_id"]);
    assert_eq!(upstream.request_count(), calls);

    // A stream is not kept: its retry is told which run answered it.
    let mut streamed = chat_body("fast", "Hello");
    streamed["stream"] = json!(true);
    let (status, headers, _) =
        send(&server, "/v1/chat/completions", &key, "stream-1", &streamed).await;
    assert_eq!(status, 200);
    let run_id = headers["x-shopfloor-run-id"].to_str().unwrap().to_string();
    let (status, _, body) =
        send(&server, "/v1/chat/completions", &key, "stream-1", &streamed).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains(&run_id), "{body}");

    // A key that is no key.
    let (status, _, body) = send(&server, "/v1/chat/completions", &key, "two words", &chat).await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}
