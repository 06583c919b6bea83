//! `shopfloor serve` as a process: the address line at start-up, a graceful SIGTERM, and two
//! replicas on one PostgreSQL sharing a batch, one of them killed with SIGKILL mid-batch.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{keyword_router, scaffold, shopfloor, text};
use serde_json::{json, Value};
use shopfloor_store::testing::TestPostgres;
use shopfloor_testkit::{assert_contains, FakeServer, Reply};

/// A running `shopfloor serve` and the base URL it printed.
struct Replica {
    child: Child,
    base: String,
}

impl Replica {
    fn start(dir: &Path, database_url: Option<&str>, extra: &[&str], log: &str) -> Replica {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shopfloor"));
        command.arg("-C").arg(dir);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SHOPFLOOR_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start shopfloor serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Replica { child, base }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "shopfloor serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn create_key(dir: &Path, database_url: Option<&str>) -> String {
    let mut args = Vec::new();
    if let Some(url) = database_url {
        args.extend(["--database-url", url]);
    }
    args.extend(["keys", "create", "--name", "ops", "--role", "operator"]);
    let out = shopfloor(dir, &args);
    assert!(out.status.success(), "{:?}", text(&out));
    text(&out).0.trim().to_string()
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
