//! Rate limits and budgets per key (issue 26 item 6): checked before a model is called,
//! answered 429 with `Retry-After` and a message that names the limit, counted in the store
//! (requests as they are admitted, tokens and cost as runs are recorded), and shown on
//! `/metrics`.

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_core::access::Role;
use shopfloor_core::limits::{Budget, BudgetPeriod, KeyLimits};
use shopfloor_testkit::FakeServer;

/// A server over the test project, its upstream, and an operator key with `limits`.
async fn limited(limits: KeyLimits) -> (FakeServer, tempfile::TempDir, TestServer, String) {
    let upstream = FakeServer::start(hello).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let secret = server
        .state
        .engine
        .create_key_limited("metered-app", Role::Operator, None, limits, "test")
        .await
        .expect("create a limited key")
        .secret;
    (upstream, dir, server, secret)
}

/// Wait out a minute about to end, so that what a test does next falls in one minute.
async fn a_fresh_minute() {
    let into_minute = shopfloor_engine::now_ms() % 60_000;
    if into_minute > 55_000 {
        tokio::time::sleep(std::time::Duration::from_millis(
            60_100 - into_minute as u64,
        ))
        .await;
    }
}

async fn chat(server: &TestServer, key: &str) -> reqwest::Response {
    client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("fast", "Hello"))
        .send()
        .await
        .unwrap()
}

/// The status, `Retry-After` in seconds and body of a response.
async fn read(response: reqwest::Response) -> (u16, Option<u64>, Value) {
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry, response.json().await.unwrap())
}

#[tokio::test]
async fn requests_past_the_minutes_limit_are_answered_429_and_never_reach_the_model() {
    let (upstream, _dir, server, key) = limited(KeyLimits {
        rpm: Some(2),
        ..KeyLimits::default()
    })
    .await;
    a_fresh_minute().await;
    for _ in 0..2 {
        assert_eq!(chat(&server, &key).await.status(), 200);
    }
    let (status, retry, body) = read(chat(&server, &key).await).await;
    assert_eq!(status, 429, "{body}");
    assert!(matches!(retry, Some(1..=60)), "{retry:?}");
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("key metered-app has made its 2 requests for this minute"),
        "{message}"
    );
    // The other APIs count against the same limit, each refusal in its own form.
    let response = client()
        .post(server.url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&json!({"model": "fast", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    let (status, retry, body) = read(response).await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(upstream.request_count(), 2, "refused calls reach no model");
    // Another key is not held back by this one's limit.
    let (status, _) = post(
        &client(),
        &server.url("/v1/chat/completions"),
        Some(&server.keys.operator),
        &chat_body("fast", "Hello"),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_spent_budget_and_a_used_token_allowance_stop_the_next_call_and_show_on_metrics() {
    // `fast` costs $1 per million prompt tokens and $2 per million completion tokens; the
    // upstream answers with 7 and 3: $0.000013 a call.
    let (upstream, _dir, server, key) = limited(KeyLimits {
        budget: Some(Budget {
            usd: 0.00002,
            period: BudgetPeriod::Day,
        }),
        ..KeyLimits::default()
    })
    .await;
    for _ in 0..2 {
        let response = chat(&server, &key).await;
        assert_eq!(response.status(), 200);
        server.recorded(&run_id(&response)).await;
    }
    let (status, retry, body) = read(chat(&server, &key).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert_eq!(body["error"]["code"], "insufficient_quota");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "key metered-app has spent $0.000026 of its $0.00002 budget for this day (UTC)"
        ),
        "{message}"
    );
    let until_midnight = 86_400 - (shopfloor_engine::now_ms() / 1000) % 86_400;
    let retry = retry.expect("Retry-After");
    assert!(
        retry.abs_diff(until_midnight as u64) <= 2,
        "{retry} vs {until_midnight}"
    );
    assert_eq!(upstream.request_count(), 2);

    let (status, text) = metrics(&server).await;
    assert_eq!(status, 200);
    let spend = text
        .lines()
        .find(|l| l.starts_with("shopfloor_key_spend_usd{key=\"metered-app\",period=\"day\"}"))
        .unwrap_or_else(|| panic!("no spend line:\n{text}"));
    let spent: f64 = spend.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((spent - 0.000_026).abs() < 1e-9, "{spend}");
    assert!(
        text.contains("shopfloor_key_limit{key=\"metered-app\",limit=\"budget_usd_day\"} 0.00002"),
        "{text}"
    );

    server.stop().await;
}

#[tokio::test]
async fn tokens_past_the_minutes_allowance_stop_the_next_call_until_the_minute_ends() {
    let (upstream, _dir, server, key) = limited(KeyLimits {
        tpm: Some(10),
        ..KeyLimits::default()
    })
    .await;
    // Both calls in one minute: wait out a minute about to end.
    a_fresh_minute().await;
    let response = chat(&server, &key).await;
    assert_eq!(response.status(), 200);
    server.recorded(&run_id(&response)).await;
    let (status, retry, body) = read(chat(&server, &key).await).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "tokens");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has used 10 of its 10 tokens per minute"),
        "{body}"
    );
    assert!(matches!(retry, Some(1..=60)), "{retry:?}");
    assert_eq!(upstream.request_count(), 1);

    // Lifting the limit lets it call again at once (the test server caches no keys).
    server
        .state
        .engine
        .set_key_limits("metered-app", KeyLimits::default(), "test")
        .await
        .unwrap();
    assert_eq!(chat(&server, &key).await.status(), 200);
    server.stop().await;
}

async fn metrics(server: &TestServer) -> (u16, String) {
    let response = client()
        .get(server.url("/metrics"))
        .bearer_auth(&server.keys.admin)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_replay_of_an_idempotent_request_is_not_held_back_by_the_limits() {
    let (upstream, _dir, server, key) = limited(KeyLimits {
        rpm: Some(1),
        ..KeyLimits::default()
    })
    .await;
    let send = |idempotency: Option<&'static str>| {
        let mut request = client()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("fast", "Hello"));
        if let Some(k) = idempotency {
            request = request.header("Idempotency-Key", k);
        }
        request.send()
    };
    a_fresh_minute().await;
    assert_eq!(send(Some("order-1")).await.unwrap().status(), 200);
    // The same request again: answered from the store, the minute's one request already used.
    let replay = send(Some("order-1")).await.unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    // A new request is refused, and its key stays free for when the minute turns.
    let (status, _, body) = read(send(Some("order-2")).await.unwrap()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(upstream.request_count(), 1);
    server.stop().await;
}

/// A batch is one request when submitted, but its cases spend the key's budget one by one:
/// once it is spent, the rest of the batch waits in the queue instead of running.
#[tokio::test]
async fn a_batch_stops_at_its_keys_budget_and_its_other_cases_wait() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let mut config = test_config();
    if let Some(worker) = config.worker.as_mut() {
        worker.concurrency = 1;
    }
    let server = TestServer::start(dir.path(), config).await;
    // Less than one call's $0.000013.
    let limits = KeyLimits {
        budget: Some(Budget {
            usd: 0.00001,
            period: BudgetPeriod::Day,
        }),
        ..KeyLimits::default()
    };
    let key = server
        .state
        .engine
        .create_key_limited("batch-app", Role::Operator, None, limits, "test")
        .await
        .unwrap()
        .secret;
    let inputs: Vec<Value> = (0..5)
        .map(|i| json!({"text": format!("billing case {i}")}))
        .collect();
    let (status, body) = post(
        &client(),
        &server.url("/v1/workflows/triage/batches"),
        Some(&key),
        &json!({"inputs": inputs}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let url = server.url(&format!(
        "/v1/batches/{}",
        body["batch_id"].as_str().unwrap()
    ));
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (_, progress) = get(&client(), &url, Some(&key)).await;
    assert_eq!(progress["done"], 1, "{progress}");
    assert_eq!(progress["status"], "running", "{progress}");
    assert_eq!(
        upstream.request_count(),
        1,
        "the other four reached no model"
    );
    server.stop().await;
}
