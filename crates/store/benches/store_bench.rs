//! How fast each store records runs and eval cases, the way the engine flushes them.
//!
//! `cargo bench -p shopfloor-store [-- RUNS]` (or `SHOPFLOOR_BENCH_RUNS=…`): records RUNS runs
//! (default 50,000; 1–2 attempts each, ~300-byte input, ~600-byte prompt, short output) in
//! flushes of 256 into a SQLite file and a fresh PostgreSQL database, and prints runs/s for both.
//! Then it records as many eval cases (one eval) the same way and prints cases/s, and the mean
//! time of an eval-cache lookup against them.
//! PostgreSQL is the test server (`SHOPFLOOR_TEST_POSTGRES_URL`, default 127.0.0.1:5432).

use std::time::{Duration, Instant};

use serde_json::json;
use shopfloor_core::scorers::Score;
use shopfloor_store::testing::TestPostgres;
use shopfloor_store::{
    open, AttemptOutcome, AttemptRecord, EvalCaseRecord, EvalRecord, EvalStatus, RunRecord,
    RunStatus, Store,
};

const DEFAULT_RUNS: usize = 50_000;
/// Runs per `insert_runs` call, as an engine flush would send them.
const FLUSH: usize = 256;
const BATCH_ID: &str = "bench-batch";
const EVAL_ID: &str = "bench-eval";
/// Cache lookups timed, spread over the recorded cases.
const LOOKUPS: usize = 2_000;

/// How long one backend took.
struct Timings {
    backend: &'static str,
    runs: Duration,
    cases: Duration,
    lookup: Duration,
}

fn main() {
    let runs = run_count();
    let records = records(runs);
    let cases = eval_cases(runs);
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
        let sqlite = measure(sqlite.as_ref(), &records, &cases).await;

        let pg = TestPostgres::create().await;
        let postgres = open(pg.url()).await.expect("PostgreSQL opens");
        let postgres = measure(postgres.as_ref(), &records, &cases).await;
        [sqlite, postgres]
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
    for t in &results {
        let rate = runs as f64 / t.runs.as_secs_f64();
        println!(
            "{:<10} {:>10.2} {rate:>12.0}",
            t.backend,
            t.runs.as_secs_f64()
        );
    }
    println!(
        "\nrecording {runs} eval cases of one eval in flushes of {FLUSH}; then {LOOKUPS} \
         eval-cache lookups"
    );
    println!(
        "{:<10} {:>10} {:>12} {:>12}",
        "backend", "seconds", "cases/s", "µs/lookup"
    );
    for t in &results {
        let rate = runs as f64 / t.cases.as_secs_f64();
        let lookup = t.lookup.as_secs_f64() * 1e6 / LOOKUPS as f64;
        println!(
            "{:<10} {:>10.2} {rate:>12.0} {lookup:>12.0}",
            t.backend,
            t.cases.as_secs_f64()
        );
    }
}

/// Every figure for one store.
async fn measure(store: &dyn Store, records: &[RunRecord], cases: &[EvalCaseRecord]) -> Timings {
    let runs = record_all(store, records).await;
    let cases_time = record_cases(store, cases).await;
    let lookup = look_up(store, cases).await;
    Timings {
        backend: store.backend(),
        runs,
        cases: cases_time,
        lookup,
    }
}

/// Time to record every case of one eval, checked afterwards by paging through them.
async fn record_cases(store: &dyn Store, cases: &[EvalCaseRecord]) -> Duration {
    store
        .create_eval(&EvalRecord {
            id: EVAL_ID.into(),
            workflow: "ticket-triage".into(),
            version: "3f2a9c0d1e7b".into(),
            dataset: "datasets/ticket-triage.jsonl".into(),
            dataset_hash: "9b1c".repeat(16),
            model_override: None,
            status: EvalStatus::Running,
            total_cases: cases.len() as u64,
            summary: None,
            passed: None,
            created_at_ms: 1_700_000_000_000,
            finished_at_ms: None,
            case_limit: None,
        })
        .await
        .expect("the eval is created");
    let started = Instant::now();
    for flush in cases.chunks(FLUSH) {
        store
            .insert_eval_cases(flush)
            .await
            .expect("cases are recorded");
    }
    let elapsed = started.elapsed();
    let (mut recorded, mut after) = (0, 0);
    loop {
        let page = store
            .eval_cases(EVAL_ID, after, 5_000)
            .await
            .expect("cases are read");
        let Some(last) = page.last() else { break };
        after = last.line;
        recorded += page.len();
    }
    assert_eq!(recorded, cases.len(), "{} lost cases", store.backend());
    elapsed
}

/// Time for [`LOOKUPS`] cache lookups, each of which must hit.
async fn look_up(store: &dyn Store, cases: &[EvalCaseRecord]) -> Duration {
    let step = (cases.len() / LOOKUPS).max(1);
    let started = Instant::now();
    for case in cases.iter().step_by(step).cycle().take(LOOKUPS) {
        let hit = store
            .cached_eval_case("ticket-triage", "3f2a9c0d1e7b", None, &case.input_hash)
            .await
            .expect("the cache answers");
        assert!(hit.is_some(), "{} missed a cached case", store.backend());
    }
    started.elapsed()
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
                caller: None,
                sampled_for_review: false,
                confidence: None,
                review: None,
                origin: Default::default(),
                experiment: None,
            }
        })
        .collect()
}

/// Case results shaped like a ticket-triage eval.
fn eval_cases(count: usize) -> Vec<EvalCaseRecord> {
    (0..count)
        .map(|i| {
            let line = i as u64 + 1;
            EvalCaseRecord {
                eval_id: EVAL_ID.into(),
                case_id: format!("t{line}"),
                line,
                run_id: format!("0190a3b2-{i:04x}-7000-8000-{line:012x}"),
                input_hash: format!("{:064x}", line.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                status: RunStatus::Ok,
                output: Some(json!("billing")),
                raw_output: Some("billing".into()),
                expected: json!(if i % 5 == 0 { "bug" } else { "billing" }),
                scores: [(
                    "label_accuracy".to_string(),
                    Score::binary(i % 5 != 0, None),
                )]
                .into(),
                tags: vec!["billing".into()],
                latency_ms: 640,
                cost_usd: 0.000_022_5,
                prompt_tokens: 142,
                completion_tokens: 2,
                cached: false,
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
        error_kind: None,
        raw_output: (!failed).then(|| "billing".into()),
    }
}
