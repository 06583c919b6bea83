//! How long the operating review's commands take on a large history, on SQLite and on
//! PostgreSQL side by side: `outcomes`, `drift`, `portfolio`, `report weekly` and `review stats`
//! over RUNS runs (one attempt each, 1% of them held and decided by a reviewer, spread over 28
//! days).
//!
//! `cargo bench -p shopfloor-engine --bench operating_bench` (`SHOPFLOOR_BENCH_RUNS`, default
//! 1,000,000; PostgreSQL at `SHOPFLOOR_TEST_POSTGRES_URL`, default 127.0.0.1:5432). Prints the
//! seeding rate and each command's time, each the best of three calls, then one line per
//! figure for scripts: `figure COMMAND BACKEND MS` (e.g. `figure portfolio sqlite 212`).
//!
//! `SHOPFLOOR_BENCH_BACKENDS=postgres` (or `sqlite`) measures one backend only;
//! `SHOPFLOOR_BENCH_KEEP=1` keeps the seeded PostgreSQL database and prints its URL, for
//! `EXPLAIN ANALYZE` on a large history (drop it by hand afterwards);
//! `SHOPFLOOR_BENCH_REUSE=URL` measures such a kept database again without seeding it (a
//! newer build migrates it first).

mod seeded;

use std::path::Path;
use std::time::{Duration, Instant};

use seeded::{seed, write_project};
use shopfloor_engine::{now_ms, Engine, EngineOptions};
use shopfloor_store::testing::TestPostgres;

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

async fn measure(
    dir: &Path,
    database_url: Option<&str>,
    runs: usize,
    seeded: bool,
) -> Vec<(String, String)> {
    write_project(dir, "http://127.0.0.1:9/v1");
    let engine = Engine::open(EngineOptions {
        project_dir: dir.to_path_buf(),
        database_url: database_url.map(str::to_string),
        ..EngineOptions::default()
    })
    .await
    .unwrap();
    let rate = if seeded {
        "-".to_string()
    } else {
        format!("{:.0}", seed(&engine, runs).await)
    };
    let week = shopfloor_core::calendar::iso_week(now_ms());
    let mut out = vec![("seed (runs/s)".to_string(), rate)];
    let t = best(|| async {
        engine.outcomes("triage", None).await.unwrap();
    })
    .await;
    out.push((
        "outcomes".into(),
        format!("{:.1} ms", t.as_secs_f64() * 1e3),
    ));
    let t = best(|| async {
        engine.drift("triage", now_ms()).await.unwrap();
    })
    .await;
    out.push(("drift".into(), format!("{:.1} ms", t.as_secs_f64() * 1e3)));
    let t = best(|| async {
        engine.portfolio().await.unwrap();
    })
    .await;
    out.push((
        "portfolio".into(),
        format!("{:.1} ms", t.as_secs_f64() * 1e3),
    ));
    let t = best(|| async {
        engine.weekly_report(&week).await.unwrap();
    })
    .await;
    out.push((
        "report weekly".into(),
        format!("{:.1} ms", t.as_secs_f64() * 1e3),
    ));
    let t = best(|| async {
        engine.review_stats(Some("triage")).await.unwrap();
    })
    .await;
    out.push((
        "review stats".into(),
        format!("{:.1} ms", t.as_secs_f64() * 1e3),
    ));
    engine.close().await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("SHOPFLOOR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let backends =
        std::env::var("SHOPFLOOR_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let keep = std::env::var_os("SHOPFLOOR_BENCH_KEEP").is_some();
    let skipped = || vec![("seed (runs/s)".to_string(), "-".to_string())];
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite = if backends.contains("sqlite") {
        measure(sqlite_dir.path(), None, runs, false).await
    } else {
        skipped()
    };
    let reuse = std::env::var("SHOPFLOOR_BENCH_REUSE").ok();
    let postgres = if let Some(url) = &reuse {
        let pg_dir = tempfile::tempdir().unwrap();
        measure(pg_dir.path(), Some(url), runs, true).await
    } else if backends.contains("postgres") {
        let pg = TestPostgres::create().await;
        let pg_dir = tempfile::tempdir().unwrap();
        let figures = measure(pg_dir.path(), Some(pg.url()), runs, false).await;
        if keep {
            println!("kept PostgreSQL database: {}", pg.url());
            std::mem::forget(pg);
        }
        figures
    } else {
        skipped()
    };
    println!("operating review over {runs} runs (1 attempt each, 1% reviewed), best of 3");
    println!("{:<16} {:>12} {:>12}", "", "SQLite", "PostgreSQL");
    let names = if sqlite.len() >= postgres.len() {
        &sqlite
    } else {
        &postgres
    };
    let value = |figures: &[(String, String)], i: usize| {
        figures.get(i).map_or("-".to_string(), |(_, v)| v.clone())
    };
    for (i, (name, _)) in names.iter().enumerate() {
        let (s, p) = (value(&sqlite, i), value(&postgres, i));
        println!("{name:<16} {s:>12} {p:>12}");
    }
    for (backend, figures) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        for (name, value) in figures.iter().skip(1) {
            let ms = value.trim_end_matches(" ms");
            println!("figure {} {backend} {ms}", name.replace(' ', "_"));
        }
    }
}
