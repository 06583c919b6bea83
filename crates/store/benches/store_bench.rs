//! How fast each store records runs, the way the engine flushes them.
//!
//! `cargo bench -p shopfloor-store [-- RUNS]` (or `SHOPFLOOR_BENCH_RUNS=…`): records RUNS runs
//! (default 50,000; 1–2 attempts each, ~300-byte input, ~600-byte prompt, short output) in
//! flushes of 256 into a SQLite file and a fresh PostgreSQL database, and prints runs/s for both.
//! PostgreSQL is the test server (`SHOPFLOOR_TEST_POSTGRES_URL`, default 127.0.0.1:5432).

use std::time::{Duration, Instant};

use serde_json::json;
use shopfloor_store::testing::TestPostgres;
use shopfloor_store::{open, AttemptOutcome, AttemptRecord, RunRecord, RunStatus, Store};

const DEFAULT_RUNS: usize = 50_000;
/// Runs per `insert_runs` call, as an engine flush would send them.
const FLUSH: usize = 256;
const BATCH_ID: &str = "bench-batch";

fn main() {
    let runs = run_count();
    let records = records(runs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let results = runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let sqlite_path = dir.path().join("bench.db");
        let sqlite = open(sqlite_path.to_str().expect("a UTF-8 path"))
            .await
            .expect("SQLite opens");
        let sqlite_time = record_all(sqlite.as_ref(), &records).await;

        let pg = TestPostgres::create().await;
        let postgres = open(pg.url()).await.expect("PostgreSQL opens");
        let postgres_time = record_all(postgres.as_ref(), &records).await;
        [("sqlite", sqlite_time), ("postgres", postgres_time)]
    });

    let mean = |f: fn(&RunRecord) -> usize| records.iter().map(f).sum::<usize>() / runs.max(1);
    println!(
        "\nrecording {runs} runs in flushes of {FLUSH} (mean input {} bytes, prompt {} bytes, \
         {:.2} attempts per run)",
        mean(|r| r.input.to_string().len()),
        mean(|r| r.prompt.to_string().len()),
        records.iter().map(|r| r.attempts.len()).sum::<usize>() as f64 / runs.max(1) as f64,
    );
    println!("{:<10} {:>10} {:>12}", "backend", "seconds", "runs/s");
    for (backend, elapsed) in results {
        let rate = runs as f64 / elapsed.as_secs_f64();
        println!("{backend:<10} {:>10.2} {rate:>12.0}", elapsed.as_secs_f64());
    }
}

/// Time to record every run, checked afterwards so that a fast wrong answer does not count.
async fn record_all(store: &dyn Store, records: &[RunRecord]) -> Duration {
    let started = Instant::now();
    for flush in records.chunks(FLUSH) {
        store.insert_runs(flush).await.expect("runs are recorded");
    }
    let elapsed = started.elapsed();
    let recorded = store
        .batch_recorded_cases(BATCH_ID)
        .await
        .expect("cases are listed");
    assert_eq!(
        recorded.len(),
        records.len(),
        "{} lost runs",
        store.backend()
    );
    elapsed
}

/// The number of runs: the first numeric argument (cargo passes `--bench` too), then the
/// environment, then the default.
fn run_count() -> usize {
    std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .or_else(|| std::env::var("SHOPFLOOR_BENCH_RUNS").ok()?.parse().ok())
        .unwrap_or(DEFAULT_RUNS)
}

/// Runs shaped like a ticket-triage batch.
fn records(count: usize) -> Vec<RunRecord> {
    let body = "Hello, I was charged twice for my subscription this month and the second charge \
                shows as pending on my card. Could you refund it and confirm by email? My order number \
                is on the receipt. Thanks.";
    (0..count)
        .map(|i| {
            let case = i as u64 + 1;
            let created = 1_700_000_000_000 + i as i64;
            let input = json!({
                "subject": format!("Double charge on invoice INV-{case:06}"),
                "body": body,
                "customer": {"id": format!("cus_{case:08}"), "plan": "team"},
            });
            let prompt = json!([
                {"role": "system", "content": "You route support tickets to the right queue for Acme's \
                    support team. Read the ticket, decide which team owns it, and be brief."},
                {"role": "user", "content": format!(
                    "Subject: Double charge on invoice INV-{case:06}\n\n{body}\n\n\
                     Answer with one of: billing, bug, account, other. Answer with the label \
                     only, in lower case, and nothing else. If unsure, answer other."
                )},
            ]);
            let mut attempts = vec![attempt(1, created, AttemptOutcome::Ok)];
            if i % 3 == 0 {
                attempts[0] = attempt(1, created, AttemptOutcome::Error);
                attempts.push(attempt(2, created + 900, AttemptOutcome::Ok));
            }
            RunRecord {
                id: format!("0190a3b2-{i:04x}-7000-8000-{case:012x}"),
                workflow: "ticket-triage".into(),
                version: "3f2a9c0d1e7b".into(),
                batch_id: Some(BATCH_ID.into()),
                case_index: Some(case),
                status: RunStatus::Ok,
                input,
                prompt,
                raw_output: Some("billing".into()),
                output: Some(json!("billing")),
                error: None,
                model: Some("gpt-mini".into()),
                prompt_tokens: 142,
                completion_tokens: 2,
                cost_usd: 0.000_022_5,
                latency_ms: 640,
                created_at_ms: created,
                attempts,
            }
        })
        .collect()
}

fn attempt(n: u32, started_at_ms: i64, outcome: AttemptOutcome) -> AttemptRecord {
    let failed = outcome == AttemptOutcome::Error;
    AttemptRecord {
        n,
        model: if failed { "gpt-mini" } else { "local" }.into(),
        provider: if failed { "openai" } else { "local" }.into(),
        started_at_ms,
        latency_ms: 600,
        prompt_tokens: if failed { 0 } else { 142 },
        completion_tokens: if failed { 0 } else { 2 },
        cost_usd: if failed { 0.0 } else { 0.000_022_5 },
        outcome,
        error: failed.then(|| "HTTP 503 from https://api.openai.com/v1/chat/completions".into()),
        raw_output: (!failed).then(|| "billing".into()),
    }
}
