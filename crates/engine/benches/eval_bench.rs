//! How fast an eval runs end to end: dataset → runner → HTTP → scoring → SQLite.
//!
//! `cargo bench -p shopfloor-engine --bench eval_bench [-- CASES]` (or
//! `SHOPFLOOR_BENCH_CASES=…`; default 10,000): writes a labels project whose one
//! `openai-compatible` model is a testkit fake server on 127.0.0.1 answering instantly with a
//! fixed label, and a JSONL dataset of CASES cases with ~300-byte inputs; then runs
//! `Engine::run_eval` with `no_cache` at concurrency 1, 8 and 64 and prints wall time, cases/s
//! and peak RSS for each.
//!
//! Every process has its own job, so each memory figure is that job's alone: this binary
//! re-executes itself as the fake server (one child for the whole benchmark) and once per
//! concurrency as the eval worker (a fresh engine, SQLite file and process each time; its
//! VmHWM is the peak of the whole run, opening the engine included). The server shares the
//! machine's cores with the worker, so its CPU time is printed too.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use shopfloor_engine::{Engine, EngineOptions, EvalObserver, EvalRequest};
use shopfloor_store::EvalCaseRecord;
use shopfloor_testkit::{
    self as testkit, openai_completion, FakeServer, OpenAiModel, Reply, WorkflowToml,
};

const DEFAULT_CASES: usize = 10_000;
const CONCURRENCIES: [usize; 3] = [1, 8, 64];
/// Which job a process of this binary does.
const ROLE: &str = "SHOPFLOOR_BENCH_ROLE";
const PROJECT: &str = "SHOPFLOOR_BENCH_PROJECT";
const CONCURRENCY: &str = "SHOPFLOOR_BENCH_CONCURRENCY";
/// Linux's USER_HZ: /proc's CPU times are in these ticks.
const TICKS_PER_SECOND: f64 = 100.0;

const WORDS: [&str; 16] = [
    "invoice", "refund", "login", "crash", "password", "charged", "twice", "error", "screen",
    "account", "billing", "timeout", "export", "settings", "customer", "urgent",
];

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("server") => serve(),
        Ok("eval") => eval_worker(),
        _ => orchestrate(),
    }
}

// ----- orchestrator -----

struct Row {
    concurrency: usize,
    cases: u64,
    wall: Duration,
    open_rss_kb: u64,
    peak_rss_kb: u64,
    cpu_s: f64,
    server_cpu_s: f64,
}

fn orchestrate() {
    let cases = case_count();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let dataset = dir.path().join("cases.jsonl");
    let dataset_bytes = write_dataset(&dataset, cases);

    let mut server = spawn_self("server", &[]);
    let mut lines = BufReader::new(server.stdout.take().expect("server stdout")).lines();
    let base_url = lines
        .next()
        .and_then(Result::ok)
        .expect("the server child prints its base URL");

    let mut rows = Vec::new();
    for concurrency in CONCURRENCIES {
        let project = dir.path().join(format!("c{concurrency}"));
        write_project(&project, &base_url, &dataset);
        let server_cpu_before = cpu_seconds(server.id());
        let worker = spawn_self(
            "eval",
            &[
                (PROJECT, project.display().to_string()),
                (CONCURRENCY, concurrency.to_string()),
            ],
        );
        let output = worker.wait_with_output().expect("the eval worker runs");
        assert!(output.status.success(), "eval worker failed");
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |key: &str| -> f64 {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("the worker reports {key}: {text}"))
        };
        let row = Row {
            concurrency,
            cases: field("cases") as u64,
            wall: Duration::from_secs_f64(field("wall_s")),
            open_rss_kb: field("open_rss_kb") as u64,
            peak_rss_kb: field("peak_rss_kb") as u64,
            cpu_s: field("cpu_s"),
            server_cpu_s: cpu_seconds(server.id()) - server_cpu_before,
        };
        eprintln!(
            "concurrency {:>2}: {} cases in {:.2} s",
            concurrency,
            row.cases,
            row.wall.as_secs_f64()
        );
        rows.push(row);
        let _ = std::fs::remove_dir_all(&project);
    }
    let server_peak_kb = proc_status_kb(server.id(), "VmHWM").unwrap_or(0);
    // Closing its stdin tells the server to exit.
    drop(server.stdin.take());
    let _ = server.wait();

    println!(
        "\neval of {cases} cases, no cache (dataset {:.1} MB, mean line {} bytes), \
         fake openai-compatible server on 127.0.0.1 in a child process",
        dataset_bytes as f64 / 1e6,
        dataset_bytes / cases.max(1)
    );
    println!(
        "{:>11} {:>8} {:>10} {:>10} {:>14} {:>13} {:>13}",
        "concurrency",
        "wall s",
        "cases/s",
        "peak MB",
        "after open MB",
        "eval CPU s",
        "server CPU s"
    );
    for row in &rows {
        println!(
            "{:>11} {:>8.2} {:>10.0} {:>10.1} {:>14.1} {:>13.2} {:>13.2}",
            row.concurrency,
            row.wall.as_secs_f64(),
            row.cases as f64 / row.wall.as_secs_f64(),
            row.peak_rss_kb as f64 / 1024.0,
            row.open_rss_kb as f64 / 1024.0,
            row.cpu_s,
            row.server_cpu_s,
        );
    }
    println!(
        "peak MB: VmHWM of the eval process (engine, SQLite, runtime; not the server). \
         Fake server peak: {:.1} MB.",
        server_peak_kb as f64 / 1024.0
    );
}

/// `-- N` wins over `SHOPFLOOR_BENCH_CASES`; cargo's own `--bench` flag is ignored.
fn case_count() -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .or_else(|| {
            std::env::var("SHOPFLOOR_BENCH_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(DEFAULT_CASES)
}

fn spawn_self(role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut command = Command::new(exe);
    command
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the benchmark can run itself")
}

/// ~300-byte inputs: a short subject and a body of ticket words, different for every case.
fn write_dataset(path: &Path, cases: usize) -> usize {
    let labels = ["billing", "bug", "account"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("dataset file"));
    let mut written = 0;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..cases {
        let mut body = String::with_capacity(300);
        while body.len() < 250 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            body.push_str(WORDS[(seed % WORDS.len() as u64) as usize]);
            body.push(' ');
        }
        let line = json!({
            "id": format!("case-{i}"),
            "input": {"subject": format!("ticket {i}: {}", WORDS[i % WORDS.len()]), "body": body.trim_end()},
            "expected": labels[i % labels.len()],
        })
        .to_string();
        writeln!(out, "{line}").expect("dataset write");
        written += line.len() + 1;
    }
    out.flush().expect("dataset flush");
    written
}

/// A labels workflow over subject and body on the one model `fake`, with its eval.
fn write_project(dir: &Path, base_url: &str, dataset: &Path) {
    let fake = OpenAiModel::new("fake", base_url)
        .classes(&["internal"])
        .price(1.0, 1.0);
    let triage = WorkflowToml::new(
        &["subject", "body"],
        "Subject: {{ subject }}\n\n{{ body }}\n\nAnswer with one label.",
    )
    .system("You sort support tickets.")
    .then(
        "[output]\nlabels = [\"billing\", \"bug\", \"account\"]\n[route]\nmodels = [\"fake\"]\n\
         [eval]\ndataset = \"cases.jsonl\"\nscorers = [\"label_accuracy\", \"latency_ms\"]\n\
         gate = { label_accuracy = 0.3 }\n",
    );
    testkit::write_project(dir, &fake.to_string(), &[("triage", &triage)]);
    std::fs::hard_link(dataset, dir.join("cases.jsonl"))
        .or_else(|_| std::fs::copy(dataset, dir.join("cases.jsonl")).map(|_| ()))
        .expect("dataset in the project");
}

// ----- fake server child -----

fn serve() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let reply = Reply::Json(200, openai_completion("billing", 80, 1));
        let server = FakeServer::start_without_recording(move |_| reply.clone()).await;
        println!("{}", server.base_url());
        std::io::stdout().flush().expect("stdout");
        // Serve until the orchestrator closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await
        .expect("stdin watcher");
        drop(server);
    });
}

// ----- eval worker child -----

struct Quiet;
impl EvalObserver for Quiet {
    fn started(&self, _: &str, _: u64, _: u64) {}
    fn finished(&self, _: &EvalCaseRecord) {}
}

fn eval_worker() {
    let project = PathBuf::from(std::env::var(PROJECT).expect("project folder"));
    let concurrency: usize = std::env::var(CONCURRENCY)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("concurrency");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let engine = Engine::open(EngineOptions {
            project_dir: project,
            ..EngineOptions::default()
        })
        .await
        .expect("the engine opens");
        let open_rss_kb = proc_status_kb(std::process::id(), "VmRSS").unwrap_or(0);
        let cpu_before = cpu_seconds(std::process::id());
        let request = EvalRequest {
            workflow: "triage".into(),
            concurrency,
            no_cache: true,
            ..EvalRequest::default()
        };
        let started = Instant::now();
        let summary = engine
            .run_eval(&request, &Quiet, std::future::pending())
            .await
            .expect("the eval runs");
        let wall = started.elapsed();
        let cpu_s = cpu_seconds(std::process::id()) - cpu_before;
        // Read before the checks below, which load records of their own.
        let peak_rss_kb = proc_status_kb(std::process::id(), "VmHWM").unwrap_or(0);
        assert_eq!(summary.failed, 0, "no case may fail");
        assert_eq!(summary.invalid, 0, "no answer may be invalid");
        assert_eq!(summary.cached_cases, 0, "no_cache means no cached case");
        let store = engine.store();
        let runs = store
            .batch_recorded_cases(&summary.eval_id)
            .await
            .expect("recorded runs")
            .len() as u64;
        assert_eq!(runs, summary.cases, "every case's run is recorded");
        let mut stored = 0;
        let mut after = 0;
        loop {
            let page = store
                .eval_cases(&summary.eval_id, after, 2000)
                .await
                .expect("stored cases");
            let Some(last) = page.last() else { break };
            after = last.line;
            stored += page.len() as u64;
        }
        assert_eq!(stored, summary.cases, "every case result is stored");
        engine.close().await;
        println!(
            "cases={} wall_s={} open_rss_kb={open_rss_kb} peak_rss_kb={peak_rss_kb} cpu_s={cpu_s}",
            summary.cases,
            wall.as_secs_f64()
        );
    });
}

// ----- /proc -----

/// A `kB` field (`VmHWM`, `VmRSS`) of `/proc/PID/status`.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// User plus system CPU time of a process so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime is field 14, stime field 15: indices 11 and 12 after the name.
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}
