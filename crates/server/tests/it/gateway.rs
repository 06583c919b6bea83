//! The OpenAI-compatible gateway against fake upstreams: answers, streams, retries and
//! fallbacks, errors in OpenAI's format, and what is recorded for each call.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use shopfloor_store::{AttemptOutcome, RunStatus};
use shopfloor_testkit::{openai_completion, openai_error, FakeServer, ReceivedRequest, Reply};

#[tokio::test]
async fn a_chat_call_is_answered_and_recorded_with_caller_tokens_and_cost() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let client = client();

    let response = client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .json(&json!({
            "model": "fast",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "user": "end-user-42",
            "temperature": 0.2,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run_id = run_id(&response);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "fast");
    assert_eq!(body["id"], format!("chatcmpl-{run_id}"));
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    );

    // The upstream got the vendor's model id and the client's messages and parameters.
    let sent = &upstream.requests()[0];
    assert_eq!(sent.body["model"], "fake-fast");
    assert_eq!(sent.body["messages"][1]["content"], "Hi");
    assert!((sent.body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);

    let run = server.recorded(&run_id).await;
    assert_eq!(run.workflow, "gateway");
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.model.as_deref(), Some("fast"));
    assert_eq!(run.output, Some(json!(ANSWER)));
    assert_eq!((run.prompt_tokens, run.completion_tokens), (7, 3));
    // 7 prompt tokens at $1/Mtok and 3 completion tokens at $2/Mtok.
    assert!((run.cost_usd - 13e-6).abs() < 1e-12, "{}", run.cost_usd);
    assert_eq!(run.attempts.len(), 1);
    assert_eq!(run.attempts[0].outcome, AttemptOutcome::Ok);
    let caller = run.caller.expect("the caller is recorded");
    assert_eq!(caller.user.as_deref(), Some("end-user-42"));
    assert_eq!(caller.team.as_deref(), Some("finance"));
    assert!(!caller.key_id.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_streamed_call_sends_chunks_then_done_and_is_recorded() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;

    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.builder)
        .json(&json!({
            "model": "fast",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let run_id = run_id(&response);
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .expect("every event is a data line")
        })
        .collect();
    assert_eq!(*events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, ANSWER);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 10);

    let run = server.recorded(&run_id).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.output, Some(json!(ANSWER)));
    assert_eq!((run.prompt_tokens, run.completion_tokens), (7, 3));
    assert_eq!(run.caller.unwrap().user.as_deref(), Some("bob"));
    server.stop().await;
}

#[tokio::test]
async fn a_failing_model_is_retried_then_falls_back_and_every_attempt_is_recorded() {
    // `fast` fails twice (its one retry included); `backup` answers.
    let fast =
        FakeServer::start(|_| Reply::Json(503, openai_error("overloaded", "server_error"))).await;
    let backup = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &fast.base_url(), &backup.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;

    for stream in [false, true] {
        let response = client()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&server.keys.operator)
            .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "stream={stream}");
        assert_eq!(response.headers()["x-shopfloor-model"], "backup");
        let run_id = run_id(&response);
        let text = response.text().await.unwrap();
        assert!(text.contains("Hello"), "{text}");
        let run = server.recorded(&run_id).await;
        assert_eq!(run.status, RunStatus::Ok);
        assert_eq!(run.model.as_deref(), Some("backup"));
        let attempts: Vec<(&str, AttemptOutcome)> = run
            .attempts
            .iter()
            .map(|a| (a.model.as_str(), a.outcome))
            .collect();
        assert_eq!(
            attempts,
            vec![
                ("fast", AttemptOutcome::Error),
                ("fast", AttemptOutcome::Error),
                ("backup", AttemptOutcome::Ok)
            ],
            "stream={stream}"
        );
        assert!(run.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("HTTP 503"));
        // Cost at backup's prices: 7 × $3/Mtok + 3 × $4/Mtok.
        assert!((run.cost_usd - 33e-6).abs() < 1e-12, "{}", run.cost_usd);
    }
    assert_eq!(fast.request_count(), 4);

    let (status, metrics) = metrics_text(&server).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("shopfloor_fallbacks_total{workflow=\"gateway\",model=\"backup\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("shopfloor_provider_errors_total{workflow=\"gateway\",model=\"backup\"} 4\n"),
        "{metrics}"
    );
    server.stop().await;
}

async fn metrics_text(server: &TestServer) -> (u16, String) {
    let response = client()
        .get(server.url("/metrics"))
        .bearer_auth(&server.keys.viewer)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn errors_come_in_openai_format_with_the_right_status() {
    // Upstream: 429 for "limit", a slow answer for "slow", 401 for "denied", else an answer.
    let upstream = FakeServer::start(|request| {
        let content = request.body["messages"][0]["content"]
            .as_str()
            .unwrap_or("");
        match content {
            "limit" => Reply::Json(429, openai_error("slow down", "rate_limit_error"))
                .with_header("retry-after", "0"),
            "slow" => Reply::Json(200, openai_completion("late", 1, 1))
                .delayed(Duration::from_millis(2500)),
            "denied" => Reply::Json(401, openai_error("bad key", "authentication_error")),
            _ => answer(request),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // `backup` answers from the same upstream, so failures there mirror `fast`.
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let key = Some(server.keys.operator.as_str());
    let url = server.url("/v1/chat/completions");

    let (status, body) = post(&c, &url, key, &chat_body("nope", "Hi")).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "not_found_error");
    assert_eq!(body["error"]["param"], "model");
    assert_eq!(body["error"]["code"], "model_not_found");

    let (status, body) = post(&c, &url, key, &json!({"messages": []})).await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("model"));

    let (status, body) = post(&c, &url, key, &json!({"model": "fast", "messages": []})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");

    let response = c
        .post(&url)
        .bearer_auth(&server.keys.operator)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_openai_error(&response.json().await.unwrap(), "invalid_request_error");

    let (status, body) = post(&c, &url, key, &chat_body("fast", "limit")).await;
    assert_eq!(status, 429, "{body}");
    assert_openai_error(&body, "rate_limit_error");
    assert!(
        body["run_id"].is_string(),
        "the failed run is named: {body}"
    );

    let (status, body) = post(&c, &url, key, &chat_body("fast", "slow")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "upstream_timeout");

    let (status, body) = post(&c, &url, key, &chat_body("fast", "denied")).await;
    assert_eq!(status, 502, "{body}");
    assert_openai_error(&body, "server_error");

    // A model not allowed the gateway's data class (internal) is never called.
    let before = upstream.request_count();
    let (status, body) = post(&c, &url, key, &chat_body("secret-only", "Hi")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "refused_by_policy");
    assert_eq!(upstream.request_count(), before);
    let run = server.recorded(body["run_id"].as_str().unwrap()).await;
    assert_eq!(run.status, RunStatus::Refused);

    let (status, body) = get(&c, &server.url("/v1/nothing-here"), key).await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "not_found_error");
    server.stop().await;
}

#[tokio::test]
async fn a_workflow_runs_through_the_chat_endpoint() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let url = server.url("/v1/chat/completions");
    let key = Some(server.keys.operator.as_str());

    // Plain text fills the workflow's one string field.
    let (status, body) = post(
        &c,
        &url,
        key,
        &chat_body("workflow:triage", "billing please"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "billing");
    assert_eq!(body["model"], "workflow:triage");
    // An answer that breaks the contract: 502, and the message does not carry it.
    let (status, body) = post(&c, &url, key, &chat_body("workflow:triage", "CANARY7Q")).await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.to_string().contains("CANARY7Q"), "{body}");
    // A two-field input must be sent as JSON.
    let (status, body) = post(&c, &url, key, &chat_body("workflow:ticket", "hello")).await;
    assert_eq!(status, 400, "{body}");
    let input = json!({"subject": "bug", "body": "it crashes"}).to_string();
    let (status, body) = post(&c, &url, key, &chat_body("workflow:ticket", &input)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "bug");
    let run_id = body["id"]
        .as_str()
        .unwrap()
        .strip_prefix("chatcmpl-")
        .unwrap();
    let run = server.recorded(run_id).await;
    assert_eq!(run.workflow, "ticket");
    assert_eq!(run.input, json!({"subject": "bug", "body": "it crashes"}));
    assert_eq!(run.caller.unwrap().team.as_deref(), Some("finance"));

    // A high-risk workflow's output is held: accepted, but no content.
    let (status, body) = post(&c, &url, key, &chat_body("workflow:approve", "billing")).await;
    assert_eq!(status, 202, "{body}");
    assert!(body["choices"][0]["message"]["content"].is_null(), "{body}");
    assert_eq!(body["shopfloor"]["status"], "held");
    assert!(!body.to_string().contains("billing"), "{body}");

    let (status, body) = post(&c, &url, key, &chat_body("workflow:nope", "x")).await;
    assert_eq!(status, 404, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_does_not_lose_the_run() {
    let fast = FakeServer::start(answer).await;
    let slow = FakeServer::start(|_| {
        Reply::Json(200, openai_completion("late answer", 5, 2)).delayed(Duration::from_millis(800))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &fast.base_url(), &slow.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;

    // Not streamed: the client gives up after 100 ms; the answer comes at 800 ms and is recorded.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let gone = impatient
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .json(&chat_body("backup", "Hi"))
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out");
    let run = wait_for_gateway_run(&server, "backup").await;
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.output, Some(json!("late answer")));
    assert_eq!(run.completion_tokens, 2);

    // Streamed: the client reads the head and hangs up; the run is recorded all the same.
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run_id = run_id(&response);
    drop(response);
    let run = server.eventually_recorded(&run_id).await;
    assert_eq!(run.attempts.len(), 1, "{run:?}");
    assert_eq!(run.model.as_deref(), Some("fast"));
    // Either the whole answer went out before the hang-up was noticed, or the cut is recorded.
    match run.status {
        RunStatus::Ok => assert_eq!(run.output, Some(json!(ANSWER))),
        RunStatus::Failed => assert!(run.error.unwrap().contains("client went away")),
        other => panic!("unexpected status {other:?}"),
    }
    server.stop().await;
}

/// The first gateway run answered by `model`, once recorded.
async fn wait_for_gateway_run(server: &TestServer, model: &str) -> shopfloor_store::RunRecord {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        server.state.engine.flush().await;
        let runs = server
            .store()
            .list_runs(&shopfloor_store::RunFilter {
                workflow: Some("gateway".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(run) = runs.iter().find(|r| r.model.as_deref() == Some(model)) {
            return server.recorded(&run.id).await;
        }
        assert!(Instant::now() < deadline, "no run of {model} was recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_keep_alive_connection_gets_one_whole_response_per_request() {
    let upstream =
        FakeServer::start_without_recording(|_| Reply::Json(200, openai_completion("ok", 1, 1)))
            .await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let addr = server.addr;
    let key = server.keys.operator.clone();

    // A raw keep-alive connection with Nagle left on at the client, as many clients have it:
    // a response written in two segments would wait ~40 ms for the delayed ACK.
    let latencies = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let body = chat_body("fast", "Hi").to_string();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut latencies = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        for _ in 0..200 {
            let started = Instant::now();
            stream.write_all(request.as_bytes()).unwrap();
            let got = shopfloor_testkit::read_response(&mut stream, &mut buffer);
            latencies.push(started.elapsed());
            assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
        }
        latencies
    })
    .await
    .unwrap();
    // Whether a response stalls on Nagle and delayed ACKs is a figure: the gateway bench
    // measures it (keep-alive median and p90). Here: every request got its one response.
    assert_eq!(latencies.len(), 200);
    assert_eq!(upstream.request_count(), 200);
    server.stop().await;
}

/// Answers with the last message echoed back, streamed five characters at a time when asked.
fn echo(request: &shopfloor_testkit::ReceivedRequest) -> Reply {
    let said = request.body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let text = format!("You said: {said}");
    if request.body["stream"] == json!(true) {
        let chars: Vec<char> = text.chars().collect();
        let pieces: Vec<String> = chars.chunks(5).map(|c| c.iter().collect()).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
        Reply::Sse(shopfloor_testkit::openai_stream(&pieces, 9, 9))
    } else {
        Reply::Json(200, openai_completion(&text, 9, 9))
    }
}

#[tokio::test]
async fn personal_data_is_redacted_for_the_provider_and_restored_for_the_client() {
    let upstream = FakeServer::start(echo).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let config = dir.path().join("shopfloor.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[policy.pii]\ndetect = [\"email\"]\non_external = \"redact\"\non_store = \"redact\"\n"),
    )
    .unwrap();
    let server = TestServer::start(dir.path(), test_config()).await;
    let message = "Mail jane.doe@example.com today";

    for stream in [false, true] {
        let response = client()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&server.keys.operator)
            .json(&json!({"model": "fast", "messages": [{"role": "user", "content": message}], "stream": stream}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let run_id = run_id(&response);
        let body = response.text().await.unwrap();
        let answer: String = if stream {
            body.split("\n\n")
                .filter_map(|e| e.strip_prefix("data: "))
                .filter(|e| *e != "[DONE]")
                .filter_map(|e| {
                    let chunk: Value = serde_json::from_str(e).unwrap();
                    chunk["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect()
        } else {
            serde_json::from_str::<Value>(&body).unwrap()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(answer, format!("You said: {message}"), "stream={stream}");
        // The provider never saw the address; the database keeps only the placeholder.
        let sent = upstream.requests().last().unwrap().body.to_string();
        assert!(!sent.contains("jane.doe"), "{sent}");
        assert!(sent.contains("[EMAIL_1]"), "{sent}");
        let run = server.recorded(&run_id).await;
        let stored = serde_json::to_string(&run).unwrap();
        assert!(!stored.contains("jane.doe"), "{stored}");
        assert_eq!(
            run.output,
            Some(json!("You said: Mail [EMAIL_1] today")),
            "stream={stream}"
        );
    }
    server.stop().await;
}

/// A model that answers a label first, and JSON once told its answer broke the schema,
/// unless the user says "stubborn".
fn schema_learner(request: &ReceivedRequest) -> Reply {
    let messages = request.body["messages"].to_string();
    let text = if messages.contains("stubborn") || !messages.contains("does not match") {
        "billing"
    } else {
        r#"{"queue": "billing", "urgent": false}"#
    };
    Reply::Json(200, openai_completion(text, 7, 3))
}

#[tokio::test]
async fn strict_json_schemas_are_checked_on_the_way_back_and_asked_again_once() {
    let upstream = FakeServer::start(schema_learner).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let key = server.keys.operator.clone();
    let url = server.url("/v1/chat/completions");
    let body = |text: &str, strict: bool, stream: bool| {
        json!({"model": "fast", "stream": stream,
            "messages": [{"role": "user", "content": text}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "route", "strict": strict,
                "schema": {"type": "object", "required": ["queue", "urgent"],
                    "properties": {"queue": {"type": "string"}, "urgent": {"type": "boolean"}},
                    "additionalProperties": false}}}})
    };

    // A label where the schema wants an object: asked again with the problem, then answered.
    let response = c
        .post(&url)
        .bearer_auth(&key)
        .json(&body("route this", true, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = run_id(&response);
    let answer: Value = response.json().await.unwrap();
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(content).unwrap()["queue"],
        "billing"
    );
    let asked = upstream.requests();
    assert_eq!(asked.len(), 2, "one answer, one re-ask");
    let again = asked[1].body["messages"].as_array().unwrap().clone();
    assert_eq!(again[1]["role"], "assistant");
    assert_eq!(again[1]["content"], "billing");
    assert!(again[2]["content"]
        .as_str()
        .unwrap()
        .contains("does not match the response_format JSON schema"));
    let run = server.recorded(&first).await;
    let outcomes: Vec<_> = run.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Invalid, AttemptOutcome::Ok]);

    // Twice wrong: 502 naming the schema's place, never the answer; the run is invalid.
    let response = c
        .post(&url)
        .bearer_auth(&key)
        .json(&body("stubborn", true, false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let failed = run_id(&response);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_output", "{error}");
    assert_eq!(error["error"]["param"], "response_format");
    assert!(!error.to_string().contains("billing"), "{error}");
    assert_eq!(server.recorded(&failed).await.status, RunStatus::Invalid);

    // Streamed: the checked answer, sent as events.
    let response = c
        .post(&url)
        .bearer_auth(&key)
        .json(&body("route this", true, true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = response.text().await.unwrap();
    assert!(events.contains(r#"\"queue\": \"billing\""#), "{events}");
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");

    // Not strict: the model's answer as it came, no re-ask.
    let before = upstream.request_count();
    let (status, answer) = post(&c, &url, Some(&key), &body("route this", false, false)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "billing");
    assert_eq!(upstream.request_count(), before + 1);
    server.stop().await;
}
