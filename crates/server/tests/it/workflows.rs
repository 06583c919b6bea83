//! The workflow API: one input → the validated output with its run id; batches queued,
//! run in the background by the worker and read back; runs read by id.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use shopfloor_server::ServerConfig;
use shopfloor_store::{BatchStatus, RunStatus};
use shopfloor_testkit::{openai_completion, FakeServer, Reply};

#[tokio::test]
async fn a_run_returns_the_validated_output_with_its_run_id() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let key = Some(server.keys.operator.as_str());

    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        key,
        &json!({"input": {"text": "bug in the app"}, "user": "clerk-7"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["output"], "bug");
    assert_eq!(body["model"], "fast");
    assert_eq!(body["workflow"], "triage");
    assert_eq!(body["prompt_tokens"], 7);
    let run_id = body["run_id"].as_str().unwrap();
    let run = server.recorded(run_id).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.output, Some(json!("bug")));
    let caller = run.caller.unwrap();
    assert_eq!(caller.user.as_deref(), Some("clerk-7"));
    assert_eq!(caller.team.as_deref(), Some("finance"));

    // The run, read back by an operator who made it, and by a viewer.
    for key in [&server.keys.operator, &server.keys.viewer] {
        let (status, body) = get(&c, &server.url(&format!("/v1/runs/{run_id}")), Some(key)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["output"], "bug");
        assert_eq!(body["input"], json!({"text": "bug in the app"}));
        assert_eq!(body["attempts"][0]["model"], "fast");
        assert_eq!(body["attempts"][0]["outcome"], "ok");
        assert_eq!(body["caller"]["user"], "clerk-7");
    }
    let (status, body) = get(&c, &server.url("/v1/runs/no-such-run"), key).await;
    assert_eq!(status, 404, "{body}");
    assert_openai_error(&body, "not_found_error");
    server.stop().await;
}

#[tokio::test]
async fn bad_inputs_unknown_workflows_and_bad_outputs_are_errors_naming_what_is_wrong() {
    let upstream = FakeServer::start(|request| {
        let prompt = request.body["messages"][0]["content"]
            .as_str()
            .unwrap_or("");
        if prompt.contains("nonsense") {
            Reply::Json(200, openai_completion("I cannot say", 5, 3))
        } else {
            answer(request)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let key = Some(server.keys.builder.as_str());

    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        key,
        &json!({"input": {"txt": "typo"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["param"], "input");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("text"),
        "{body}"
    );

    // A field the run body does not have (a misspelt `model`) is refused by name, for runs
    // and batches: ignored, it would run on a model the caller did not ask for.
    for (path, body) in [
        ("runs", json!({"input": {"text": "x"}, "modle": "fast"})),
        (
            "batches",
            json!({"inputs": [{"text": "x"}], "modle": "fast"}),
        ),
    ] {
        let (status, error) = post(
            &c,
            &server.url(&format!("/v1/workflows/triage/{path}")),
            key,
            &body,
        )
        .await;
        assert_eq!(status, 400, "{path}: {error}");
        assert_eq!(error["error"]["param"], "modle", "{error}");
    }

    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/nope/runs"),
        key,
        &json!({"input": {"text": "x"}}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("triage"),
        "{body}"
    );

    // The model's answer breaks the output contract: 502, with the recorded run named.
    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        key,
        &json!({"input": {"text": "CANARY7Q"}}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "invalid_output");
    // The message names the contract, never the model's text (issue 25 item 2).
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("billing, bug, other"), "{body}");
    assert!(!body.to_string().contains("CANARY7Q"), "{body}");
    let run = server.recorded(body["run_id"].as_str().unwrap()).await;
    assert_eq!(run.status, RunStatus::Invalid);
    assert!(!run.error.unwrap().contains("CANARY7Q"));
    // Nor does the run as the caller reads it, except for the answer itself.
    let (_, body) = get(&c, &server.url(&format!("/v1/runs/{}", run.id)), key).await;
    assert_eq!(body["attempts"][0]["outcome"], "invalid", "{body}");
    assert!(
        !body["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("CANARY7Q"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_high_risk_output_is_pending_and_never_returned() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/approve/runs"),
        Some(&server.keys.operator),
        &json!({"input": {"text": "bug report"}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "held");
    assert_eq!(body["pending_review"], true);
    assert!(body["output"].is_null(), "{body}");
    let run_id = body["run_id"].as_str().unwrap();
    for key in [&server.keys.operator, &server.keys.viewer] {
        let (status, body) = get(&c, &server.url(&format!("/v1/runs/{run_id}")), Some(key)).await;
        assert_eq!(status, 200);
        assert!(
            body["output"].is_null() && body["raw_output"].is_null(),
            "{body}"
        );
        assert_eq!(body["withheld"], "held", "{body}");
        // The label the model gave ("bug") appears nowhere in what the API returns.
        assert!(!body.to_string().contains("\"bug\""), "{body}");
    }
    // Roles that review read the model's answer (the queue shows it to them anyway).
    let (_, body) = get(
        &c,
        &server.url(&format!("/v1/runs/{run_id}")),
        Some(&server.keys.admin),
    )
    .await;
    assert_eq!(body["raw_output"], "bug", "{body}");
    assert!(body["output"].is_null(), "released: nothing yet: {body}");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_is_queued_run_in_the_background_and_read_back() {
    let upstream =
        FakeServer::start(|request| answer(request).delayed(Duration::from_millis(20))).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let labels = ["billing", "bug", "other"];
    let inputs: Vec<Value> = (0..30)
        .map(|i| json!({"text": format!("{} case {i}", labels[i % 3])}))
        .collect();

    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/triage/batches"),
        Some(&server.keys.operator),
        &json!({"inputs": inputs}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["total"], 30);
    assert_eq!(body["status"], "running");
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    assert_eq!(body["url"], format!("/v1/batches/{batch_id}"));

    // The submitting operator polls its own batch until the worker has recorded every case.
    let url = server.url(&format!("/v1/batches/{batch_id}"));
    let done = finished_batch(&c, &url, &server.keys.operator).await;
    assert_eq!(done["total"], 30);
    assert_eq!(done["done"], 30);
    let results = done["results"].as_array().unwrap();
    assert_eq!(results.len(), 30);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["case"], i as u64 + 1, "{result}");
        assert_eq!(result["status"], "ok");
        assert_eq!(result["output"], labels[i % 3], "{result}");
    }
    assert_eq!(done["next_after"], Value::Null);
    // Results page in case order.
    let (_, page) = get(
        &c,
        &format!("{url}?limit=8&after=20"),
        Some(&server.keys.operator),
    )
    .await;
    let cases: Vec<u64> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["case"].as_u64().unwrap())
        .collect();
    assert_eq!(cases, (21..=28).collect::<Vec<_>>());
    assert_eq!(page["next_after"], 28);
    let batch = server.store().get_batch(&batch_id).await.unwrap().unwrap();
    assert_eq!(batch.status, BatchStatus::Done);
    assert!(batch.finished_at_ms.is_some());
    // Each case ran once and carries the submitter.
    assert_eq!(upstream.request_count(), 30);
    let first = server
        .recorded(results[0]["run_id"].as_str().unwrap())
        .await;
    assert_eq!(first.batch_id.as_deref(), Some(batch_id.as_str()));
    assert_eq!(first.caller.unwrap().team.as_deref(), Some("finance"));

    // `results=false` leaves them out; another operator-like key may not read this batch.
    let (_, body) = get(
        &c,
        &format!("{url}?results=false"),
        Some(&server.keys.viewer),
    )
    .await;
    assert!(body.get("results").is_none(), "{body}");
    let (status, body) = get(
        &c,
        &server.url("/v1/batches/nope"),
        Some(&server.keys.viewer),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_with_an_invalid_input_is_refused_whole() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let (status, body) = post(
        &client(),
        &server.url("/v1/workflows/triage/batches"),
        Some(&server.keys.operator),
        &json!({"inputs": [{"text": "ok"}, {"text": 3}, {"nope": "x"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("input 2") && message.contains("input 3"),
        "{message}"
    );
    assert!(!message.contains("input 1:"), "{message}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(upstream.request_count(), 0, "nothing was queued");
    server.stop().await;
}

/// Poll a batch (as `key`) until the worker has recorded every case; its final state.
async fn finished_batch(c: &reqwest::Client, url: &str, key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(c, url, Some(key)).await;
        assert_eq!(status, 200, "{body}");
        if body["status"] == "done" {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the batch did not finish: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file of the project's SQLite database, as text.
fn database_text(dir: &std::path::Path) -> String {
    std::fs::read_dir(dir.join(".shopfloor"))
        .unwrap()
        .map(|entry| {
            String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap()).into_owned()
        })
        .collect()
}

#[tokio::test]
async fn queued_batch_inputs_keep_only_what_the_store_policy_allows() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let config = dir.path().join("shopfloor.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[policy.pii]\ndetect = [\"email\"]\non_external = \"redact\"\non_store = \"redact\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let planted = "jane.doe@example.com";

    // No worker here: the cases stay queued, in the database.
    let queue_only = ServerConfig {
        worker: None,
        ..test_config()
    };
    let server = TestServer::start(dir.path(), queue_only).await;
    let c = client();
    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/triage/batches"),
        Some(&server.keys.operator),
        &json!({"inputs": [{"text": format!("billing question from {planted}")}]}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    let keys = server.keys.clone();
    server.stop().await;
    assert!(
        !database_text(dir.path()).contains(planted),
        "the queued input is in the database in clear"
    );

    // A replica with a worker runs the case on its redacted input.
    let server = TestServer::restart(dir.path(), test_config(), keys.clone()).await;
    let url = server.url(&format!("/v1/batches/{batch_id}"));
    let done = finished_batch(&c, &url, &keys.operator).await;
    assert_eq!(done["results"][0]["output"], "billing", "{done}");
    let run = server
        .recorded(done["results"][0]["run_id"].as_str().unwrap())
        .await;
    assert_eq!(
        run.input,
        json!({"text": "billing question from [EMAIL_1]"})
    );
    let sent: String = upstream
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    assert!(!sent.contains(planted), "{sent}");
    server.stop().await;
    assert!(!database_text(dir.path()).contains(planted));
}
