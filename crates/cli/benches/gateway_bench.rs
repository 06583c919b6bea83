//! The gateway's own cost: wrk against a fast upstream directly, then through
//! `shopfloor serve` (recording every call to SQLite) at 1, 8 and 32 connections, side by side,
//! and through a second `serve --no-dashboard` on the same project (what mounting the
//! dashboard's routes costs the gateway);
//! plus the server's start-up time and peak RSS, and the latency of calls in turn on one
//! keep-alive connection with Nagle on at the client (where a Nagle/delayed-ACK stall shows).
//!
//! `cargo bench -p shopfloor --bench gateway_bench`. Needs `wrk` (`apt-get install -y wrk`);
//! the upstream is nginx when it is installed (`apt-get install -y nginx`), else the testkit's
//! fake server. Each run lasts `SHOPFLOOR_BENCH_SECS` seconds (default 5; 20 for figures to
//! quote). With `SHOPFLOOR_BENCH_BASELINE=/path/to/shopfloor` (another build's binary, e.g. of
//! the commit before a change), a last table puts this build and that one side by side on the
//! same project and upstream, each wire format in turn, two rounds interleaved.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shopfloor_testkit::{openai_completion, FakeServer, Reply};

/// The same call in each wire format: name, path, body. Chat Completions first.
const CALLS: [(&str, &str, &str); 3] = [
    (
        "chat completions",
        "/v1/chat/completions",
        r#"{"model":"fast","messages":[{"role":"user","content":"Say hello"}]}"#,
    ),
    (
        "responses",
        "/v1/responses",
        r#"{"model":"fast","input":"Say hello"}"#,
    ),
    (
        "messages",
        "/v1/messages",
        r#"{"model":"fast","max_tokens":64,"messages":[{"role":"user","content":"Say hello"}]}"#,
    ),
];

/// One wrk run's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("SKIPPED: wrk is not installed (apt-get install -y wrk)");
        return;
    }
    let seconds: u64 = std::env::var("SHOPFLOOR_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let (upstream_url, _upstream) = start_upstream(&runtime, work.path());
    let project = work.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("shopfloor.toml"),
        format!(
            "[models.fast]\nprovider = \"openai-compatible\"\nmodel = \"fast-1\"\nbase_url = \"{upstream_url}/v1\"\nprice = {{ input_per_mtok = 0.15, output_per_mtok = 0.60 }}\ndata_classes = [\"public\", \"internal\"]\n"
        ),
    )
    .unwrap();
    let key = create_key(&project);
    let (mut server, base, startup) = start_server(&project, &[]);
    // The same gateway without the dashboard's routes: the router's cost of mounting them.
    let (bare_server, bare, _) = start_server(&project, &["--no-dashboard"]);
    let _bare_server = KillOnDrop(bare_server);
    let script = post_script(work.path(), "chat", CALLS[0].2, &key);

    println!("gateway bench: {seconds} s per run, recording every call to SQLite");
    println!(
        "shopfloor serve start-up: {:.1} ms to the address line (process start, project load, store open and migrations, bind)",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "{:>3} | {:>22} | {:>22} | {:>17} | {:>22}",
        "c",
        "upstream req/s p50 p99",
        "gateway req/s p50 p99",
        "added p50 p99",
        "no dashboard req/s p50 p99"
    );
    // Warm both (connection pools, SQLite pages) before measuring.
    wrk(
        &format!("{upstream_url}/v1/chat/completions"),
        &script,
        8,
        1,
    );
    wrk(&format!("{base}/v1/chat/completions"), &script, 8, 1);
    wrk(&format!("{bare}/v1/chat/completions"), &script, 8, 1);
    for connections in [1, 8, 32] {
        let direct = wrk(
            &format!("{upstream_url}/v1/chat/completions"),
            &script,
            connections,
            seconds,
        );
        let gateway = wrk(
            &format!("{base}/v1/chat/completions"),
            &script,
            connections,
            seconds,
        );
        let without = wrk(
            &format!("{bare}/v1/chat/completions"),
            &script,
            connections,
            seconds,
        );
        println!(
            "{connections:>3} | {:>8.0} {:>6.3} {:>6.3} | {:>8.0} {:>6.3} {:>6.3} | {:>8.3} {:>7.3} | {:>8.0} {:>6.3} {:>6.3}   (ms)",
            direct.rps,
            direct.p50_ms,
            direct.p99_ms,
            gateway.rps,
            gateway.p50_ms,
            gateway.p99_ms,
            gateway.p50_ms - direct.p50_ms,
            gateway.p99_ms - direct.p99_ms,
            without.rps,
            without.p50_ms,
            without.p99_ms,
        );
    }
    // The same call in the other wire formats, at 8 connections: what each edge costs beside
    // Chat Completions (the model path behind them is one).
    println!("{:>17} | {:>22}", "8 connections", "gateway req/s p50 p99");
    for (name, path, body) in CALLS {
        let script = post_script(work.path(), name, body, &key);
        wrk(&format!("{base}{path}"), &script, 8, 1);
        let figures = wrk(&format!("{base}{path}"), &script, 8, seconds);
        println!(
            "{name:>17} | {:>8.0} {:>6.3} {:>6.3}   (ms)",
            figures.rps, figures.p50_ms, figures.p99_ms
        );
    }
    if let Some(baseline) = std::env::var_os("SHOPFLOOR_BENCH_BASELINE") {
        compare_with_baseline(
            Path::new(&baseline),
            &project,
            &base,
            &key,
            work.path(),
            seconds,
        );
    }
    let (median, p90) = keep_alive_latency(&base, &key, 200);
    println!(
        "one keep-alive connection, Nagle on at the client, 200 calls in turn: median {:.3} ms, p90 {:.3} ms (a Nagle/delayed-ACK stall would add ~40 ms each)",
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );
    let metrics = Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("{base}/metrics"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let value = |name: &str| -> f64 {
        let prefix = format!("{name}{{workflow=\"gateway\",model=\"fast\"");
        metrics
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let overhead = value("shopfloor_gateway_overhead_seconds_sum")
        / value("shopfloor_gateway_overhead_seconds_count");
    println!(
        "runs recorded: {:.0}; the server's own time per call (its /metrics: wall time minus time waiting on the upstream): mean {:.1} µs",
        value("shopfloor_runs_total"),
        overhead * 1e6
    );
    println!(
        "shopfloor serve peak RSS: {:.1} MB",
        peak_rss_kb(server.id()) as f64 / 1024.0
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let stopped = Instant::now();
    let _ = server.wait();
    println!(
        "graceful stop (drains the recorder): {:.0} ms",
        stopped.elapsed().as_secs_f64() * 1e3
    );
    drop(runtime);
}

/// A wrk script that POSTs `body` as JSON with the key.
fn post_script(dir: &Path, name: &str, body: &str, key: &str) -> PathBuf {
    let script = dir.join(format!("{}.lua", name.replace(' ', "_")));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {key}\"\n"
        ),
    )
    .unwrap();
    script
}

/// A fast upstream that answers every chat call with the same small completion: nginx when
/// installed, else the testkit server on this process's runtime.
fn start_upstream(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
) -> (String, Box<dyn std::any::Any>) {
    let answer = openai_completion("Hello! How can I help?", 12, 7).to_string();
    if let Some(nginx) = which("nginx") {
        let port = free_port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let temp = |name: &str| prefix.join(name).display().to_string();
        let config = format!(
            "worker_processes 1;\ndaemon off;\npid {pid};\nerror_log {log} warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  keepalive_requests 10000000;\n  client_body_temp_path {b};\n  proxy_temp_path {p};\n  fastcgi_temp_path {f};\n  uwsgi_temp_path {u};\n  scgi_temp_path {s};\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      default_type application/json;\n      return 200 '{answer}';\n    }}\n  }}\n}}\n",
            pid = temp("nginx.pid"),
            log = temp("logs/error.log"),
            b = temp("body"),
            p = temp("proxy"),
            f = temp("fastcgi"),
            u = temp("uwsgi"),
            s = temp("scgi"),
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        wait_for_port(port);
        println!("upstream: nginx on 127.0.0.1:{port} (return 200 with a canned completion)");
        return (
            format!("http://127.0.0.1:{port}"),
            Box::new(KillOnDrop(child)),
        );
    }
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let server = runtime.block_on(FakeServer::start_without_recording(move |_| {
        Reply::Json(200, answer.clone())
    }));
    println!("upstream: the testkit fake server (nginx is not installed)");
    (format!("http://{}", server.addr()), Box::new(server))
}

/// Stops nginx when dropped: SIGTERM to the master, which stops its workers too (SIGKILL would
/// leave the workers running, orphaned).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the upstream did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create_key(project: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .arg("-C")
        .arg(project)
        .args(["keys", "create", "--name", "bench", "--role", "builder"])
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// This build and the `baseline` binary's, serving the same project, side by side: every
/// wire format at 8 connections and Chat Completions at 1 and 32, each measured in turn, two
/// rounds, so that the machine's drift falls on both alike.
fn compare_with_baseline(
    baseline: &Path,
    project: &Path,
    base: &str,
    key: &str,
    work: &Path,
    seconds: u64,
) {
    let (server, other, _) = start_server_from(baseline.as_os_str(), project, &[]);
    let _server = KillOnDrop(server);
    println!(
        "against the baseline {} (same project and upstream, in turn):",
        baseline.display()
    );
    println!(
        "{:>26} | {:>22} | {:>22}",
        "wire format, connections", "this build req/s p50 p99", "baseline req/s p50 p99"
    );
    let cases = [
        (CALLS[0], 1),
        (CALLS[0], 8),
        (CALLS[0], 32),
        (CALLS[1], 8),
        (CALLS[2], 8),
    ];
    for round in 1..=2 {
        for ((name, path, body), connections) in cases {
            let script = post_script(work, &format!("baseline {name}"), body, key);
            wrk(&format!("{other}{path}"), &script, connections, 1);
            let ours = wrk(&format!("{base}{path}"), &script, connections, seconds);
            let theirs = wrk(&format!("{other}{path}"), &script, connections, seconds);
            println!(
                "{:>26} | {:>8.0} {:>6.3} {:>6.3} | {:>8.0} {:>6.3} {:>6.3}   (ms, round {round})",
                format!("{name}, {connections}"),
                ours.rps,
                ours.p50_ms,
                ours.p99_ms,
                theirs.rps,
                theirs.p50_ms,
                theirs.p99_ms,
            );
        }
    }
}

/// Start `shopfloor serve` (logs discarded) and time it to its address line.
fn start_server(project: &Path, extra: &[&str]) -> (Child, String, Duration) {
    start_server_from(env!("CARGO_BIN_EXE_shopfloor").as_ref(), project, extra)
}

/// Start `binary serve` on `project` (logs discarded) and time it to its address line.
fn start_server_from(
    binary: &std::ffi::OsStr,
    project: &Path,
    extra: &[&str],
) -> (Child, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("-C")
        .arg(project)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let took = started.elapsed();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (child, base, took)
}

/// Run wrk and read its requests per second and latency percentiles.
fn wrk(url: &str, script: &Path, connections: usize, seconds: u64) -> Figures {
    let threads = connections.min(2);
    let out = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    if text.contains("Non-2xx") {
        eprintln!("warning: wrk saw non-2xx answers from {url}:\n{text}");
    }
    Figures {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}")),
        p50_ms: field("50%").map(|v| millis(&v)).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(|v| millis(&v)).unwrap_or(f64::NAN),
    }
}

/// Median and p90 latency of `calls` chat calls made one after another on one keep-alive
/// connection that leaves Nagle on, as many clients do: a response written in two segments
/// would wait for the client's delayed ACK.
fn keep_alive_latency(base: &str, key: &str, calls: usize) -> (Duration, Duration) {
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"Hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buffer = vec![0u8; 64 * 1024];
    let mut latencies: Vec<Duration> = (0..calls)
        .map(|_| {
            let started = Instant::now();
            stream.write_all(request.as_bytes()).unwrap();
            let got = shopfloor_testkit::read_response(&mut stream, &mut buffer);
            assert!(
                got.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&got)
            );
            started.elapsed()
        })
        .collect();
    latencies.sort();
    (latencies[calls / 2], latencies[calls * 9 / 10])
}

/// wrk's `123.45us`, `1.23ms`, `1.05s` in milliseconds.
fn millis(value: &str) -> f64 {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(value.len()),
    );
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        _ => f64::NAN,
    }
}

/// Peak resident set size (VmHWM) of a process, in KiB.
fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
