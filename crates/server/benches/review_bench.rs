//! The review queue's throughput through the real HTTP API, printed side by side: queue claims
//! per second (`POST /v1/reviews/next`) and decisions per second (`POST …/approve`), on SQLite
//! with one server and on PostgreSQL with two servers (replicas) sharing one database. Every
//! item must be claimed exactly once and approved once; the bench fails otherwise.
//!
//! `cargo bench -p shopfloor-server --bench review_bench` (PostgreSQL at
//! `SHOPFLOOR_TEST_POSTGRES_URL`, default 127.0.0.1:5432). `REVIEW_BENCH_ITEMS` sets the queue
//! size (default 1000), `REVIEW_BENCH_REVIEWERS` the concurrent reviewers (default 8).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use serde_json::json;
use shopfloor_core::access::Role;
use shopfloor_core::review::ReviewStatus;
use shopfloor_engine::{Engine, EngineOptions};
use shopfloor_store::testing::TestPostgres;
use shopfloor_testkit::FakeServer;

struct Figures {
    claims_per_s: f64,
    decisions_per_s: f64,
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn engine(dir: &Path, database_url: Option<&str>) -> Engine {
    Engine::open(EngineOptions {
        project_dir: dir.to_path_buf(),
        database_url: database_url.map(str::to_string),
        ..EngineOptions::default()
    })
    .await
    .expect("open the engine")
}

/// Queue `items` held runs, then let `reviewers` claim and approve them all through `bases`
/// (reviewer i talks to server i mod n).
async fn measure(
    dir: &Path,
    database_url: Option<&str>,
    replicas: usize,
    items: usize,
    reviewers: usize,
) -> Figures {
    let first = engine(dir, database_url).await;
    let operator = first
        .create_key("ops", Role::Operator, None, "bench")
        .await
        .unwrap()
        .secret;
    let mut keys = Vec::new();
    for i in 0..reviewers {
        let key = first
            .create_key(&format!("reviewer-{i}"), Role::Reviewer, None, "bench")
            .await
            .unwrap();
        keys.push(key.secret);
    }
    let mut servers = vec![common::serve_bench(first).await];
    for _ in 1..replicas {
        servers.push(common::serve_bench(engine(dir, database_url).await).await);
    }
    let bases: Vec<String> = servers.iter().map(|(b, _)| b.clone()).collect();
    let client = common::client();

    // The queue: held runs through the workflow API, 16 at a time.
    let submitted = futures::future::join_all((0..16).map(|lane| {
        let client = client.clone();
        let url = format!("{}/v1/workflows/approve/runs", bases[lane % bases.len()]);
        let operator = operator.clone();
        async move {
            for i in (lane..items).step_by(16) {
                let response = client
                    .post(&url)
                    .bearer_auth(&operator)
                    .json(&json!({"input": {"text": format!("billing question {i}")}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
            }
        }
    }));
    submitted.await;

    // Claims: every reviewer takes the next item until none is left.
    let started = Instant::now();
    let claimed: Vec<Vec<String>> =
        futures::future::join_all(keys.iter().enumerate().map(|(i, key)| {
            let client = client.clone();
            let url = format!("{}/v1/reviews/next", bases[i % bases.len()]);
            async move {
                let mut got = Vec::new();
                loop {
                    let response = client
                        .post(&url)
                        .bearer_auth(key)
                        .json(&json!({}))
                        .send()
                        .await
                        .unwrap();
                    if response.status() == 204 {
                        return got;
                    }
                    assert_eq!(response.status(), 200);
                    let body: serde_json::Value = response.json().await.unwrap();
                    got.push(body["item"]["run_id"].as_str().unwrap().to_string());
                }
            }
        }))
        .await;
    let claim_time = started.elapsed();
    let all: Vec<&String> = claimed.iter().flatten().collect();
    let distinct: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), items, "every item claimed");
    assert_eq!(distinct.len(), items, "no item claimed twice");

    // Decisions: each reviewer approves what they claimed.
    let started = Instant::now();
    futures::future::join_all(
        claimed
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (run_ids, key))| {
                let client = client.clone();
                let base = bases[i % bases.len()].clone();
                async move {
                    for run_id in run_ids {
                        let response = client
                            .post(format!("{base}/v1/reviews/{run_id}/approve"))
                            .bearer_auth(key)
                            .json(&json!({}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 200);
                    }
                }
            }),
    )
    .await;
    let decision_time = started.elapsed();
    let check = engine(dir, database_url).await;
    let counts = check
        .store()
        .review_counts(Some("approve"), shopfloor_engine::now_ms())
        .await
        .unwrap();
    let approved: u64 = counts
        .iter()
        .filter(|c| c.status == ReviewStatus::Approved)
        .map(|c| c.items)
        .sum();
    assert_eq!(approved, items as u64, "every item approved once");
    check.close().await;
    drop(servers);
    Figures {
        claims_per_s: items as f64 / claim_time.as_secs_f64(),
        decisions_per_s: items as f64 / decision_time.as_secs_f64(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let items = env_number("REVIEW_BENCH_ITEMS", 1000);
    let reviewers = env_number("REVIEW_BENCH_REVIEWERS", 8);
    let upstream = FakeServer::start_without_recording(common::answer).await;

    let sqlite_dir = tempfile::tempdir().unwrap();
    common::write_project(
        sqlite_dir.path(),
        &upstream.base_url(),
        &upstream.base_url(),
    );
    let sqlite = measure(sqlite_dir.path(), None, 1, items, reviewers).await;

    let pg = TestPostgres::create().await;
    let pg_dir = tempfile::tempdir().unwrap();
    common::write_project(pg_dir.path(), &upstream.base_url(), &upstream.base_url());
    let postgres = measure(pg_dir.path(), Some(pg.url()), 2, items, reviewers).await;

    println!("review queue through the API: {items} items, {reviewers} concurrent reviewers");
    println!("{:<34} {:>12} {:>14}", "", "claims/s", "decisions/s");
    for (name, f) in [
        ("SQLite, one server", &sqlite),
        ("PostgreSQL, two replicas", &postgres),
    ] {
        println!(
            "{name:<34} {:>12.0} {:>14.0}",
            f.claims_per_s, f.decisions_per_s
        );
    }
}
