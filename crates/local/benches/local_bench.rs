//! Speed of the embedded model: load time, time to first token on a ~180-token prompt, prompt
//! and decode tokens per second, peak RSS. `cargo bench -p shopfloor-local --bench local_bench`
//! (threads: `SHOPFLOOR_THREADS`, default 2).
//!
//! With `SHOPFLOOR_LLAMA_CPP=1` it also builds crates/local/llama-bench (llama.cpp on the same
//! Q8_0 file, the same prompt, the same threads; it needs cmake and clang), runs it before and
//! after our own runs, and ends with lines a script can check against the goals:
//! `ratio prompt N%`, `ratio decode N%` (ours over llama.cpp's tokens per second, best of each
//! side), `ttft_ms N` (ours) and `rss_ratio N%` (our peak RSS over llama.cpp's).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use futures::StreamExt;
use shopfloor_local::LocalProvider;
use shopfloor_providers::{ChatRequest, Message, Provider, Role, StreamEvent};

use common::{peak_rss_kib, report_message, system_message};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "2");
    }
    let with_llama = std::env::var("SHOPFLOOR_LLAMA_CPP").is_ok_and(|v| v == "1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let start = Instant::now();
    let provider = LocalProvider::shared("smollm2")?;
    let load = start.elapsed();
    let served = provider.served_path();
    let llama = if with_llama {
        Some(LlamaCpp::build()?)
    } else {
        None
    };
    let mut llama_runs = Vec::new();
    if let Some(llama) = &llama {
        llama_runs.push(llama.run(&served, provider.threads())?);
    }

    println!(
        "shopfloor-local, {} threads, {}",
        provider.threads(),
        served.display()
    );
    println!("load: {:.3} s", load.as_secs_f64());
    let (best, short) = runtime.block_on(async {
        // Warm-up: first-call allocations are not what a serving process sees.
        provider
            .complete(&request(system_message(99), "Say hi.".to_owned(), 4))
            .await?;
        let mut runs = Vec::new();
        for run in 1..=3 {
            runs.push(measure(&provider, system_message(run), report_message()).await?);
        }
        let short = measure(
            &provider,
            system_message(4),
            "Write a short story about a lighthouse keeper.".to_owned(),
        )
        .await?;
        Ok::<_, Error>((Best::of(&runs), short))
    })?;
    println!(
        "prompt: {} tokens, time to first token {:.3} s, {:.1} tok/s (best of 3)",
        best.prompt_tokens,
        best.ttft_s,
        best.prompt_tok_s()
    );
    println!(
        "decode: {} tokens, {:.1} tok/s (best of 3)",
        best.decode_tokens, best.decode_tok_s
    );
    println!(
        "decode after a {}-token prompt: {} tokens, {:.1} tok/s",
        short.prompt_tokens, short.decode_tokens, short.decode_tok_s
    );
    // Read before the concurrent requests, which hold several caches: llama.cpp's side reads
    // one sequence.
    let rss_mib = peak_rss_kib() / 1024;
    println!("peak RSS: {rss_mib} MiB (one request at a time)");
    // Concurrent requests share the inference thread: tokens written per second by all of them.
    for n in [1u32, 2, 4] {
        let (tokens, seconds) = runtime.block_on(concurrent(&provider, n))?;
        println!(
            "concurrent {n}: {tokens} tokens in {seconds:.2} s, {:.1} tok/s in all",
            f64::from(tokens) / seconds
        );
    }

    if let Some(llama) = &llama {
        llama_runs.push(llama.run(&served, provider.threads())?);
        let prompt = llama_runs
            .iter()
            .map(|r| r.prompt_tok_s)
            .fold(0.0, f64::max);
        let decode = llama_runs
            .iter()
            .map(|r| r.decode_tok_s)
            .fold(0.0, f64::max);
        let rss = llama_runs.iter().map(|r| r.rss_mib).max().unwrap_or(0);
        println!(
            "llama.cpp (best of {}): prompt {prompt:.1} tok/s, decode {decode:.1} tok/s, peak RSS {rss} MiB",
            llama_runs.len()
        );
        let percent = |ours: f64, theirs: f64| (100.0 * ours / theirs).round();
        println!("ratio prompt {}%", percent(best.prompt_tok_s(), prompt));
        println!("ratio decode {}%", percent(best.decode_tok_s, decode));
        println!("ttft_ms {}", (best.ttft_s * 1000.0).round());
        println!("rss_ratio {}%", percent(rss_mib as f64, rss as f64));
    }
    Ok(())
}

/// `n` requests at once, each its own short prompt and 64 new tokens: the tokens they wrote
/// and the seconds from the first request to the last answer.
async fn concurrent(provider: &LocalProvider, n: u32) -> Result<(u32, f64), Error> {
    let start = Instant::now();
    let requests = (0..n).map(|i| {
        let story = "Write a short story about a lighthouse keeper.".to_owned();
        let mut request = request(system_message(100 + 10 * n + i), story, 64);
        request.temperature = Some(0.0);
        async move { provider.complete(&request).await }
    });
    let mut tokens = 0;
    for answer in futures::future::join_all(requests).await {
        tokens += answer?.usage.map_or(0, |u| u.completion_tokens);
    }
    Ok((tokens, start.elapsed().as_secs_f64()))
}

struct Run {
    prompt_tokens: u32,
    ttft_s: f64,
    decode_tokens: u32,
    decode_tok_s: f64,
}

/// The fastest prompt read and the fastest decode of several runs (each its own best).
struct Best {
    prompt_tokens: u32,
    ttft_s: f64,
    decode_tokens: u32,
    decode_tok_s: f64,
}

impl Best {
    fn of(runs: &[Run]) -> Self {
        let prompt = runs
            .iter()
            .min_by(|a, b| a.ttft_s.total_cmp(&b.ttft_s))
            .expect("at least one run");
        let decode = runs
            .iter()
            .max_by(|a, b| a.decode_tok_s.total_cmp(&b.decode_tok_s))
            .expect("at least one run");
        Best {
            prompt_tokens: prompt.prompt_tokens,
            ttft_s: prompt.ttft_s,
            decode_tokens: decode.decode_tokens,
            decode_tok_s: decode.decode_tok_s,
        }
    }

    fn prompt_tok_s(&self) -> f64 {
        f64::from(self.prompt_tokens) / self.ttft_s
    }
}

async fn measure(provider: &LocalProvider, system: String, user: String) -> Result<Run, Error> {
    let start = Instant::now();
    let mut stream = provider.stream(&request(system, user, 128)).await?;
    let mut first = None;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Delta(_) => {
                first.get_or_insert_with(Instant::now);
            }
            StreamEvent::ToolCall(_) => {}
            StreamEvent::Done { usage, .. } => {
                let usage = usage.unwrap_or_default();
                let end = Instant::now();
                let first = first.unwrap_or(end);
                // The first token comes with the prompt; the rest are pure decode.
                let decode_tokens = usage.completion_tokens.saturating_sub(1);
                return Ok(Run {
                    prompt_tokens: usage.prompt_tokens,
                    ttft_s: (first - start).as_secs_f64(),
                    decode_tokens,
                    decode_tok_s: f64::from(decode_tokens) / (end - first).as_secs_f64(),
                });
            }
        }
    }
    Err("the stream ended without Done".into())
}

fn request(system: String, user: String, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        model: "smollm2".to_owned(),
        messages: vec![
            Message::new(Role::System, system),
            Message::new(Role::User, user),
        ],
        max_tokens: Some(max_tokens),
        ..ChatRequest::default()
    }
}

/// crates/local/llama-bench, built once.
struct LlamaCpp {
    binary: std::path::PathBuf,
}

/// What one run of llama-bench printed.
struct LlamaRun {
    prompt_tok_s: f64,
    decode_tok_s: f64,
    rss_mib: u64,
}

impl LlamaCpp {
    fn build() -> Result<Self, Error> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("llama-bench");
        println!("building llama.cpp's side ({}) …", dir.display());
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env_remove("RUSTFLAGS")
            .status()?;
        if !status.success() {
            return Err(format!(
                "building {} failed ({status}); it needs cmake, clang and libclang-dev",
                dir.display()
            )
            .into());
        }
        Ok(Self {
            binary: dir.join("target/release/shopfloor-llama-bench"),
        })
    }

    fn run(&self, model: &Path, threads: usize) -> Result<LlamaRun, Error> {
        let output = Command::new(&self.binary)
            .arg(model)
            .arg(threads.to_string())
            .output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "{} failed ({}): {}",
                self.binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        // "prompt: N tokens, time to first token S s, R tok/s", "decode: N tokens, R tok/s",
        // "peak RSS: N MiB".
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .ok_or_else(|| format!("llama-bench printed no {prefix:?} line:\n{text}"))
        };
        let rate = |prefix: &str| -> Result<f64, Error> {
            let l = line(prefix)?;
            let r = l
                .rsplit(", ")
                .next()
                .and_then(|r| r.strip_suffix(" tok/s"))
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| format!("no tok/s in {l:?}"))?;
            Ok(r)
        };
        let rss = line("peak RSS:")?
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .ok_or("no peak RSS figure")?;
        let shown = |l: &&str| !l.starts_with("ids ") && !l.starts_with("greedy ids");
        for l in text.lines().filter(shown) {
            println!("  llama.cpp | {l}");
        }
        Ok(LlamaRun {
            prompt_tok_s: rate("prompt:")?,
            decode_tok_s: rate("decode:")?,
            rss_mib: rss,
        })
    }
}
