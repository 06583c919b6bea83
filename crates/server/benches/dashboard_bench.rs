//! Each dashboard page's time on a large history, SQLite and PostgreSQL side by side: RUNS runs
//! seeded into the store (one attempt each, 1% held and decided, 28 days; the same history the
//! operating bench uses), two evals of the 60-case set, then every page requested through a
//! real `serve` on 127.0.0.1 with a signed-in session. Each figure is the median of five
//! requests, measured at the client on the loopback (so it includes HTTP, which is well under a
//! millisecond here); the CSV export of every run is printed apart, as it is a download, not a
//! page. Ends with one line per figure for scripts: `figure PAGE BACKEND MS`.
//!
//! `cargo bench -p shopfloor-server --bench dashboard_bench` (`SHOPFLOOR_BENCH_RUNS`, default
//! 100,000; PostgreSQL at `SHOPFLOOR_TEST_POSTGRES_URL`, default 127.0.0.1:5432).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../engine/benches/seeded/mod.rs"]
mod seeded;

use std::path::Path;
use std::time::{Duration, Instant};

use shopfloor_core::access::Role;
use shopfloor_engine::{Engine, EngineOptions, EvalObserver, EvalRequest};
use shopfloor_store::testing::TestPostgres;
use shopfloor_store::EvalCaseRecord;
use shopfloor_testkit::{openai_completion, FakeServer, Reply};

/// Pages over this are marked in the table (the target).
const TARGET: Duration = Duration::from_millis(100);

struct Quiet;
impl EvalObserver for Quiet {
    fn started(&self, _: &str, _: u64, _: u64) {}
    fn finished(&self, _: &EvalCaseRecord) {}
}

/// The median of five GETs of `url` (each must answer 200), and the last body's size.
async fn median(client: &reqwest::Client, url: &str, cookie: &str) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let response = client
            .get(url)
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.bytes().await.unwrap();
        times.push(started.elapsed());
        assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
        size = body.len();
    }
    times.sort();
    (times[2], size)
}

async fn measure(dir: &Path, database_url: Option<&str>, runs: usize) -> Vec<(String, Duration)> {
    // The evals' model: answers every case with the same label.
    let upstream = FakeServer::start_without_recording(|_| {
        Reply::Json(200, openai_completion("billing", 30, 1))
    })
    .await;
    seeded::write_project(dir, &format!("{}/v1", upstream.base_url()));
    let engine = Engine::open(EngineOptions {
        project_dir: dir.to_path_buf(),
        database_url: database_url.map(str::to_string),
        ..EngineOptions::default()
    })
    .await
    .unwrap();
    seeded::seed(&engine, runs).await;
    let request = EvalRequest {
        workflow: "triage".into(),
        concurrency: 8,
        no_cache: true,
        ..EvalRequest::default()
    };
    let mut evals = Vec::new();
    for _ in 0..2 {
        let summary = engine
            .run_eval(&request, &Quiet, std::future::pending())
            .await
            .unwrap();
        evals.push(summary.eval_id);
    }
    let link = engine
        .login_link("bench", Role::Admin, "bench")
        .await
        .unwrap();
    let session = engine
        .sign_in_with_token(&link.token)
        .await
        .unwrap()
        .expect("the fresh link signs in");
    let cookie = format!("sf_session={}", session.secret);
    let (base, stop) = common::serve_bench(engine).await;
    let client = common::client();
    let (a, b) = (&evals[0], &evals[1]);
    let pages = [
        ("portfolio /".to_string(), "/".to_string()),
        ("workflow".into(), "/workflows/triage".into()),
        ("runs".into(), "/runs".into()),
        (
            "runs, filtered".into(),
            "/runs?workflow=triage&status=held".into(),
        ),
        ("run".into(), "/runs/run-00000100".into()),
        ("evals".into(), "/evals".into()),
        ("eval".into(), format!("/evals/{a}")),
        ("eval case".into(), format!("/evals/{a}/cases/c1")),
        ("compare".into(), format!("/evals/{a}/compare/{b}")),
        ("review (empty)".into(), "/review".into()),
        ("review item".into(), "/review/run-00000100".into()),
        ("audit".into(), "/audit".into()),
        ("policy".into(), "/policy".into()),
        ("weekly".into(), "/reports/weekly".into()),
        ("runs.csv (all)".into(), "/runs.csv".into()),
    ];
    // The export of every run is a download of tens of megabytes at a million runs.
    let download = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let mut out = Vec::new();
    for (name, path) in pages {
        let client = if path.ends_with(".csv") {
            &download
        } else {
            &client
        };
        let (time, size) = median(client, &format!("{base}{path}"), &cookie).await;
        eprintln!("{name}: {:.1} ms, {size} bytes", time.as_secs_f64() * 1e3);
        out.push((name, time));
    }
    drop(stop);
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("SHOPFLOOR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite = measure(sqlite_dir.path(), None, runs).await;
    let pg = TestPostgres::create().await;
    let pg_dir = tempfile::tempdir().unwrap();
    let postgres = measure(pg_dir.path(), Some(pg.url()), runs).await;
    println!("dashboard pages over {runs} runs, median of 5 (* = over {TARGET:?})");
    println!("{:<16} {:>12} {:>12}", "", "SQLite", "PostgreSQL");
    let cell = |d: &Duration| {
        let mark = if *d > TARGET { "*" } else { " " };
        format!("{:.1} ms{mark}", d.as_secs_f64() * 1e3)
    };
    for ((name, s), (_, p)) in sqlite.iter().zip(&postgres) {
        println!("{name:<16} {:>12} {:>12}", cell(s), cell(p));
    }
    // One line per figure for scripts: `figure PAGE BACKEND MS`.
    for (backend, figures) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        for (name, time) in figures {
            let page: String = name
                .split(|c: char| !(c.is_alphanumeric() || c == '.'))
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            println!("figure {page} {backend} {:.1}", time.as_secs_f64() * 1e3);
        }
    }
}
