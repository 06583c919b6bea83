//! Health, readiness, metrics, and a graceful shutdown that finishes requests in flight and
//! writes every run before the server returns.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::json;
use shopfloor_testkit::{openai_completion, FakeServer, Reply};

#[tokio::test]
async fn health_and_readiness_need_no_key() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let (status, body) = get(&c, &server.url("/healthz"), None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = get(&c, &server.url("/readyz"), None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ready", "store": "sqlite"}));
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_runs_tokens_cost_and_overhead() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    for _ in 0..3 {
        let (status, _) = post(
            &c,
            &server.url("/v1/chat/completions"),
            Some(&server.keys.operator),
            &chat_body("fast", "Hi"),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        Some(&server.keys.operator),
        &json!({"input": {"text": "bug"}}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &c,
        &server.url("/v1/chat/completions"),
        Some(&server.keys.operator),
        &chat_body("nope", "Hi"),
    )
    .await;
    assert_eq!(status, 404);

    let response = c
        .get(server.url("/metrics"))
        .bearer_auth(&server.keys.viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let gateway = "workflow=\"gateway\",model=\"fast\"";
    let triage = "workflow=\"triage\",model=\"fast\"";
    for line in [
        "shopfloor_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 3"
            .to_string(),
        "shopfloor_http_requests_total{route=\"/v1/chat/completions\",status=\"404\"} 1"
            .to_string(),
        "shopfloor_http_requests_total{route=\"/v1/workflows/{name}/runs\",status=\"200\"} 1"
            .to_string(),
        format!("shopfloor_runs_total{{{gateway},status=\"ok\"}} 3"),
        format!("shopfloor_runs_total{{{triage},status=\"ok\"}} 1"),
        format!("shopfloor_tokens_total{{{gateway},kind=\"prompt\"}} 21"),
        format!("shopfloor_tokens_total{{{gateway},kind=\"completion\"}} 9"),
        format!("shopfloor_gateway_overhead_seconds_count{{{gateway}}} 3"),
        format!("shopfloor_run_duration_seconds_count{{{triage}}} 1"),
        format!("shopfloor_fallbacks_total{{{gateway}}} 0"),
        "shopfloor_runs_total{workflow=\"gateway\",model=\"none\",status=\"failed\"} 1".to_string(),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "missing {line} in\n{text}"
        );
    }
    // 3 × (7 prompt × $1/Mtok + 3 completion × $2/Mtok)
    let cost: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("shopfloor_cost_usd_total{{{gateway}}} ")))
        .unwrap()
        .parse()
        .unwrap();
    assert!((cost - 39e-6).abs() < 1e-12, "{cost}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("shopfloor_"), "{line}");
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_writes_their_runs() {
    let upstream = FakeServer::start(|_| {
        Reply::Json(200, openai_completion("slow answer", 4, 2)).delayed(Duration::from_millis(600))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let url = server.url("/v1/chat/completions");
    let key = server.keys.operator.clone();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let key = key.clone();
            tokio::spawn(async move {
                post(&client(), &url, Some(&key), &chat_body("fast", "Hi")).await
            })
        })
        .collect();
    // Every request has reached the upstream; now shut down.
    while upstream.request_count() < 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let project = server.project.clone();
    server.stop().await;
    let mut run_ids = Vec::new();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "a request in flight was finished: {body}");
        run_ids.push(
            body["id"]
                .as_str()
                .unwrap()
                .strip_prefix("chatcmpl-")
                .unwrap()
                .to_string(),
        );
    }
    // The server has returned: its runs are in the database file, read by a fresh store.
    let store = shopfloor_engine::open_store(&project, None).await.unwrap();
    for id in run_ids {
        let run = store
            .get_run(&id)
            .await
            .unwrap()
            .expect("recorded before shutdown returned");
        assert_eq!(run.output, Some(json!("slow answer")));
    }
}
