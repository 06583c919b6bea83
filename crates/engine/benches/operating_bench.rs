//! How long the operating review's commands take on a large history, on SQLite and on
//! PostgreSQL side by side: `outcomes`, `drift`, `portfolio` and `report weekly` over RUNS runs
//! (one attempt each, 1% of them held and decided by a reviewer, spread over 28 days).
//!
//! `cargo bench -p shopfloor-engine --bench operating_bench` (`SHOPFLOOR_BENCH_RUNS`, default
//! 1,000,000; PostgreSQL at `SHOPFLOOR_TEST_POSTGRES_URL`, default 127.0.0.1:5432). Prints the
//! seeding rate and each command's time, each the best of three calls.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};
use shopfloor_engine::{now_ms, Engine, EngineOptions};
use shopfloor_store::testing::TestPostgres;
use shopfloor_store::{
    AttemptOutcome, AttemptRecord, ReviewDecisionRecord, ReviewTicket, ReviewUpdate, RunRecord,
    RunStatus,
};
use shopfloor_testkit::{self as testkit, OpenAiModel, WorkflowToml};

const DAY_MS: i64 = 86_400_000;
const LABELS: [&str; 4] = ["billing", "bug", "account", "other"];
const CHUNK: usize = 2_000;

fn write_project(dir: &Path) {
    let model = OpenAiModel::new("fast", "http://127.0.0.1:9/v1").classes(&["internal"]);
    let triage = WorkflowToml::new(&["text"], "Route: {{ text }}")
        .line("owner = \"dana@acme.example\"")
        .then(
            "[outcome]\nkpi = \"minutes\"\nbaseline = 40\ntarget = 15\nminutes_saved_per_accepted = 3\n\
             reviewer_cost_per_hour = 60\n[output]\nlabels = [\"billing\", \"bug\", \"account\", \"other\"]\n\
             [route]\nmodels = [\"fast\"]\n[eval]\ndataset = \"datasets/triage.jsonl\"\n\
             scorers = [\"label_accuracy\"]\n",
        )
        .replace("stage = \"draft\"", "stage = \"pilot\"");
    testkit::write_project(dir, &model.to_string(), &[("triage", &triage)]);
    std::fs::create_dir_all(dir.join("datasets")).unwrap();
    let cases: String = (0..60)
        .map(|i| {
            format!(
                "{{\"id\": \"c{i}\", \"input\": {{\"text\": \"ticket {i}\"}}, \"expected\": \"{}\"}}\n",
                LABELS[i % 4]
            )
        })
        .collect();
    std::fs::write(dir.join("datasets/triage.jsonl"), cases).unwrap();
}

fn run(i: usize, version: &str, now: i64, runs: usize) -> RunRecord {
    let at = now - 28 * DAY_MS + (i as i64 * 28 * DAY_MS) / runs as i64;
    let label = LABELS[(i * 7 + i / 97) % 4];
    let held = i.is_multiple_of(100);
    RunRecord {
        id: format!("run-{i:08}"),
        workflow: "triage".into(),
        version: version.into(),
        batch_id: None,
        case_index: None,
        status: if held {
            RunStatus::Held
        } else if i.is_multiple_of(37) {
            RunStatus::Invalid
        } else {
            RunStatus::Ok
        },
        input: json!({"text": format!("ticket number {i} about {label}")}),
        prompt: json!([]),
        raw_output: Some(label.into()),
        output: Some(json!(label)),
        error: None,
        model: Some("fast".into()),
        prompt_tokens: 120 + (i % 50) as u64,
        completion_tokens: 1,
        cost_usd: 0.000_02,
        latency_ms: 200 + (i % 300) as u64,
        created_at_ms: at,
        attempts: vec![AttemptRecord {
            n: 1,
            model: "fast".into(),
            provider: "openai-compatible".into(),
            outcome: AttemptOutcome::Ok,
            error: None,
            error_kind: None,
            prompt_tokens: 120,
            completion_tokens: 1,
            cost_usd: 0.000_02,
            latency_ms: 200,
            started_at_ms: at,
            raw_output: Some(label.into()),
        }],
        caller: None,
        sampled_for_review: false,
        confidence: None,
        review: held.then_some(ReviewTicket {
            reason: ReviewReason::HighRisk,
            approvals_required: 1,
            due_at_ms: None,
        }),
    }
}

/// Seed `runs` runs into the engine's store; returns runs per second.
async fn seed(engine: &Engine, runs: usize) -> f64 {
    let version = engine.project.workflow("triage").unwrap().version.clone();
    let now = now_ms();
    let started = Instant::now();
    for chunk in (0..runs).collect::<Vec<_>>().chunks(CHUNK) {
        let batch: Vec<RunRecord> = chunk.iter().map(|&i| run(i, &version, now, runs)).collect();
        engine.store().insert_runs(&batch).await.unwrap();
    }
    let rate = runs as f64 / started.elapsed().as_secs_f64();
    for i in (0..runs).step_by(100) {
        let decided = run(i, &version, now, runs).created_at_ms + 300_000;
        let update = ReviewUpdate {
            decision: ReviewDecisionRecord {
                run_id: format!("run-{i:08}"),
                reviewer: format!("reviewer-{}", i % 3),
                decision: Decision::Approve,
                output: None,
                reason: None,
                note: None,
                claimed_at_ms: Some(decided - 120_000),
                decided_at_ms: decided,
            },
            status: ReviewStatus::Approved,
            seen_decisions: 0,
            events: Vec::new(),
        };
        engine.store().decide_review(&update).await.unwrap();
    }
    rate
}

/// The best of three calls of `f`.
async fn best<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        f().await;
        best = best.min(started.elapsed());
    }
    best
}

async fn measure(dir: &Path, database_url: Option<&str>, runs: usize) -> Vec<(String, String)> {
    write_project(dir);
    let engine = Engine::open(EngineOptions {
        project_dir: dir.to_path_buf(),
        database_url: database_url.map(str::to_string),
        ..EngineOptions::default()
    })
    .await
    .unwrap();
    let rate = seed(&engine, runs).await;
    let week = shopfloor_core::calendar::iso_week(now_ms());
    let mut out = vec![("seed (runs/s)".to_string(), format!("{rate:.0}"))];
    let t = best(|| async {
        engine.outcomes("triage", None).await.unwrap();
    })
    .await;
    out.push(("outcomes".into(), format!("{:.3} s", t.as_secs_f64())));
    let t = best(|| async {
        engine.drift("triage", now_ms()).await.unwrap();
    })
    .await;
    out.push(("drift".into(), format!("{:.3} s", t.as_secs_f64())));
    let t = best(|| async {
        engine.portfolio().await.unwrap();
    })
    .await;
    out.push(("portfolio".into(), format!("{:.3} s", t.as_secs_f64())));
    let t = best(|| async {
        engine.weekly_report(&week).await.unwrap();
    })
    .await;
    out.push(("report weekly".into(), format!("{:.3} s", t.as_secs_f64())));
    engine.close().await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("SHOPFLOOR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite = measure(sqlite_dir.path(), None, runs).await;
    let pg = TestPostgres::create().await;
    let pg_dir = tempfile::tempdir().unwrap();
    let postgres = measure(pg_dir.path(), Some(pg.url()), runs).await;
    println!("operating review over {runs} runs (1 attempt each, 1% reviewed), best of 3");
    println!("{:<16} {:>12} {:>12}", "", "SQLite", "PostgreSQL");
    for ((name, s), (_, p)) in sqlite.iter().zip(&postgres) {
        println!("{name:<16} {s:>12} {p:>12}");
    }
}
