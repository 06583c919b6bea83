//! `shopfloor serve` as a process: the address line at start-up, a graceful SIGTERM, two
//! replicas on one PostgreSQL sharing a batch, one of them killed with SIGKILL mid-batch, and
//! the whole review loop (API, CLI, webhook, dataset, eval).

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{create_named_key, keyword_router, scaffold, shopfloor, text, Replica};
use serde_json::{json, Value};
use shopfloor_core::webhook::{verify_signature, EVENT_ID_HEADER, SIGNATURE_HEADER};
use shopfloor_store::testing::TestPostgres;
use shopfloor_testkit::{assert_contains, FakeServer, Reply};

fn create_key(dir: &Path, database_url: Option<&str>) -> String {
    create_named_key(dir, database_url, "ops", "operator")
}

fn ticket(i: usize) -> Value {
    let body = [
        "I was charged twice",
        "the app shows an error",
        "reset my password",
        "hello",
    ];
    json!({"subject": format!("ticket {i}"), "body": body[i % 4]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_its_address_and_sigterm_finishes_a_request_in_flight() {
    let upstream =
        FakeServer::start(|request| keyword_router(request).delayed(Duration::from_millis(700)))
            .await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &upstream.base_url());
    let key = create_key(dir.path(), None);
    let collector = FakeServer::start(|_| Reply::Json(200, json!({}))).await;
    let otlp = format!("http://{}", collector.addr());
    let mut replica = Replica::start(dir.path(), None, &["--otlp-endpoint", &otlp], "serve.log");
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/readyz", replica.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let request = {
        let url = format!("{}/v1/workflows/ticket-triage/runs", replica.base);
        let key = key.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .json(&json!({"input": ticket(0)}))
                .send()
                .await
                .unwrap()
        })
    };
    while upstream.request_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replica.signal("-TERM");
    let response = request.await.unwrap();
    assert_eq!(response.status(), 200, "the request in flight was finished");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["output"], "billing");
    let status = tokio::task::spawn_blocking(move || {
        let status = replica.wait(Duration::from_secs(20));
        drop(replica);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "exit {status:?}");

    let out = shopfloor(
        dir.path(),
        &["runs", "show", body["run_id"].as_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "the run was written before exit: {:?}",
        text(&out)
    );
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    let served: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "served")
        .collect();
    assert_eq!(served.len(), 2, "{log}");
    assert!(
        served.iter().all(|l| l["span"]["request_id"].is_string()),
        "every request's lines carry its request id: {log}"
    );
    let run_line = served
        .iter()
        .find(|l| l["fields"]["route"] == "/v1/workflows/{name}/runs")
        .unwrap_or_else(|| panic!("no line for the run: {log}"));
    assert_eq!(
        run_line["span"]["workflow"], "ticket-triage",
        "a workflow's request lines name it: {log}"
    );

    // The spans of the run reached the collector before the process exited.
    let run_id = body["run_id"].as_str().unwrap();
    let exported: String = collector
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/traces")
        .map(|r| String::from_utf8_lossy(&r.raw_body).into_owned())
        .collect();
    assert!(exported.contains(run_id), "{exported}");
    assert!(exported.contains(r#""name":"attempt""#), "{exported}");
}

#[test]
fn serve_refuses_a_bad_otlp_endpoint_saying_what_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), "http://127.0.0.1:9/v1");
    let out = shopfloor(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "ftp://collector",
        ],
    );
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert_contains(&stderr, &["ftp://collector", "http://127.0.0.1:4318"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_finish_a_batch_when_one_is_killed_each_case_once() {
    let db = TestPostgres::create().await;
    let upstream =
        FakeServer::start(|request| keyword_router(request).delayed(Duration::from_millis(150)))
            .await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &upstream.base_url());
    let key = create_key(dir.path(), Some(db.url()));
    let replica_args = ["--lease-secs", "2", "--batch-concurrency", "4"];
    let mut a = Replica::start(dir.path(), Some(db.url()), &replica_args, "a.log");
    let b = Replica::start(dir.path(), Some(db.url()), &replica_args, "b.log");
    let client = reqwest::Client::new();

    let total = 80;
    let inputs: Vec<Value> = (0..total).map(ticket).collect();
    let submitted: Value = client
        .post(format!("{}/v1/workflows/ticket-triage/batches", a.base))
        .bearer_auth(&key)
        .json(&json!({"inputs": inputs}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let batch_id = submitted["batch_id"]
        .as_str()
        .expect("a batch id")
        .to_string();
    let progress = |base: String| {
        let client = client.clone();
        let key = key.clone();
        let url = format!("{base}/v1/batches/{batch_id}?limit=1000");
        async move {
            let response = client.get(url).bearer_auth(key).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };

    // Kill A with cases of its own in flight (it runs 4 at a time while the queue lasts).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = progress(a.base.clone()).await;
        if body["done"].as_u64().unwrap() >= 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch does not progress: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.signal("-KILL");
    let killed = a.wait(Duration::from_secs(10));
    assert!(!killed.success());
    let at_kill = progress(b.base.clone()).await["done"].as_u64().unwrap();
    assert!(
        at_kill < total as u64,
        "A was killed mid-batch ({at_kill} done)"
    );

    // B takes over the rest, A's leased cases once their lease runs out.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let body = progress(b.base.clone()).await;
        if body["status"] == "done" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "B did not finish the batch: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["total"], total);
    assert_eq!(done["done"], total);
    let cases: Vec<u64> = done["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "ok", "{r}");
            r["case"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        cases,
        (1..=total as u64).collect::<Vec<_>>(),
        "every case exactly once"
    );
    let results = done["results"].as_array().unwrap();
    for (i, r) in results.iter().enumerate() {
        let expected = ["billing", "bug", "account", "other"][i % 4];
        assert_eq!(r["output"], expected, "{r}");
    }

    // The database agrees: one run per case, though some cases may have been run twice.
    let store = shopfloor_store::open(db.url()).await.unwrap();
    assert_eq!(
        store.batch_recorded_cases(&batch_id).await.unwrap(),
        (1..=total as u64).collect::<Vec<_>>()
    );
    let runs = store
        .list_runs(&shopfloor_store::RunFilter {
            batch_id: Some(batch_id.clone()),
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), total);
    assert!(upstream.request_count() >= total);
    eprintln!(
        "{} cases, {} upstream calls ({} run again after the kill)",
        total,
        upstream.request_count(),
        upstream.request_count() - total
    );

    b.signal("-TERM");
    let mut b = b;
    assert!(b.wait(Duration::from_secs(20)).success());
}

const HOOK_ENV: &str = "SHOPFLOOR_E2E_REVIEW_HOOK_SECRET";
const HOOK_SECRET: &str = "whsec-e2e-51c9";

/// Wait until `server` has received `n` requests, at most 15 s.
async fn received(server: &FakeServer, n: usize) -> Vec<shopfloor_testkit::ReceivedRequest> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.request_count() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} requests arrived",
            server.request_count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.requests()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_loop_end_to_end_api_cli_webhook_dataset_and_eval() {
    // The server and the CLI read the signing secret from the environment they inherit.
    std::env::set_var(HOOK_ENV, HOOK_SECRET);
    let upstream = FakeServer::start(keyword_router).await;
    let receiver = FakeServer::start(|_| Reply::Json(200, json!({}))).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &upstream.base_url());
    let workflow = dir.path().join("workflows/ticket-triage.toml");
    let toml = std::fs::read_to_string(&workflow)
        .unwrap()
        .replace("risk = \"medium\"", "risk = \"high\"")
        .replace(
            "sample_rate = 0.10",
            &format!(
                "webhook = {{ url = \"http://{}/hooks\", secret_env = \"{HOOK_ENV}\" }}",
                receiver.addr()
            ),
        );
    std::fs::write(&workflow, toml).unwrap();
    let ops = create_key(dir.path(), None);
    let rita = create_named_key(dir.path(), None, "rita", "reviewer");
    let viewer = create_named_key(dir.path(), None, "vic", "viewer");
    let replica = Replica::start(dir.path(), None, &[], "serve.log");
    let client = reqwest::Client::new();
    let submit = |i: usize| {
        client
            .post(format!("{}/v1/workflows/ticket-triage/runs", replica.base))
            .bearer_auth(&ops)
            .json(&json!({"input": ticket(i)}))
            .send()
    };

    // A high-risk run is pending review; its caller gets no output yet.
    let response = submit(0).await.unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["pending_review"], true, "{body}");
    let approved = body["run_id"].as_str().unwrap().to_string();
    let read = |key: &str, run_id: &str| {
        client
            .get(format!("{}/v1/runs/{run_id}", replica.base))
            .bearer_auth(key)
            .send()
    };
    let run: Value = read(&ops, &approved).await.unwrap().json().await.unwrap();
    assert_eq!(run["status"], "held", "{run}");
    assert!(run["output"].is_null(), "{run}");

    // The operator may not decide; the reviewer approves through the API.
    let approve = |key: &str| {
        client
            .post(format!("{}/v1/reviews/{approved}/approve", replica.base))
            .bearer_auth(key)
            .json(&json!({"note": "checked"}))
            .send()
    };
    assert_eq!(approve(&ops).await.unwrap().status(), 403);
    assert_eq!(approve(&rita).await.unwrap().status(), 200);
    let run: Value = read(&ops, &approved).await.unwrap().json().await.unwrap();
    assert_eq!(run["output"], "billing", "{run}");
    assert_eq!(run["review"]["by"], "rita", "{run}");

    // The webhook receiver gets review.released, signed under the secret.
    let hooks = received(&receiver, 1).await;
    let hook = &hooks[0];
    assert_eq!(hook.path, "/hooks");
    verify_signature(
        HOOK_SECRET.as_bytes(),
        hook.header(SIGNATURE_HEADER).unwrap(),
        &hook.raw_body,
        shopfloor_engine::now_ms() / 1000,
        300,
    )
    .expect("the signature verifies");
    let event: Value = serde_json::from_slice(&hook.raw_body).unwrap();
    assert_eq!(event["type"], "review.released");
    assert_eq!(event["run_id"], approved.as_str());
    assert_eq!(hook.header(EVENT_ID_HEADER), event["id"].as_str());

    // A second run is corrected from the CLI by another reviewer.
    let body: Value = submit(2).await.unwrap().json().await.unwrap();
    let edited = body["run_id"].as_str().unwrap().to_string();
    // The reviewer looks at the item first (the server writes runs within 50 ms of their end;
    // reading the queue through it waits for that).
    let item = client
        .get(format!("{}/v1/reviews/{edited}", replica.base))
        .bearer_auth(&rita)
        .send()
        .await
        .unwrap();
    assert_eq!(item.status(), 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .arg("-C")
        .arg(dir.path())
        .args([
            "review",
            "edit",
            &edited,
            "--output",
            "bug",
            "--note",
            "not a login issue",
        ])
        .env("SHOPFLOOR_ACTOR", "carl")
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_contains(&text(&out).0, &["edited: the correction is released"]);
    let run: Value = read(&ops, &edited).await.unwrap().json().await.unwrap();
    assert_eq!(run["output"], "bug", "{run}");
    let hooks = received(&receiver, 2).await;
    let ids: std::collections::HashSet<&str> = hooks
        .iter()
        .map(|h| h.header(EVENT_ID_HEADER).unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "two events, each delivered once");

    // /metrics counts the queue as the database has it.
    let metrics = client
        .get(format!("{}/metrics", replica.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_contains(
        &metrics,
        &[
            "shopfloor_review_items{workflow=\"ticket-triage\",status=\"approved\"} 1\n",
            "shopfloor_review_items{workflow=\"ticket-triage\",status=\"edited\"} 1\n",
            "shopfloor_webhook_events{state=\"delivered\"} 2\n",
        ],
    );
    let out = shopfloor(dir.path(), &["review", "deliveries", "--json"]);
    let deliveries: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(deliveries.as_array().unwrap().len(), 2, "{deliveries}");
    assert!(deliveries
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["delivered_at_ms"].is_i64() && d["last_status"] == 200));

    // The corrections grow the dataset; the next eval shows them as their own slice.
    let dataset = dir.path().join("datasets/ticket-triage.jsonl");
    let before = std::fs::read_to_string(&dataset).unwrap().lines().count();
    let out = shopfloor(
        dir.path(),
        &["datasets", "add-from-reviews", "ticket-triage"],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let lines = std::fs::read_to_string(&dataset).unwrap();
    assert_eq!(lines.lines().count(), before + 2, "{:?}", text(&out));
    assert_contains(
        &lines,
        &[
            &format!("\"id\":\"review-{approved}\""),
            &format!("\"id\":\"review-{edited}\""),
            "\"expected\":\"bug\"",
        ],
    );
    let out = shopfloor(dir.path(), &["eval", "ticket-triage"]);
    assert_contains(&text(&out).0, &["cases from reviews (2 of them)"]);
    drop(replica);
}
