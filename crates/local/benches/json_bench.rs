//! Constrained JSON decoding on the 30-case extraction dataset (`benches/data`): the share of
//! valid answers, field accuracy, and decode speed with the mask on and off, side by side in
//! one run. `cargo bench -p shopfloor-local --bench json_bench` (threads: `SHOPFLOOR_THREADS`,
//! default 2). "valid" with the mask means the whole answer parses and validates; without it,
//! that the first JSON object found in the answer does (as the workflow runner reads free text).

#[path = "extraction/mod.rs"]
mod extraction;

use std::time::{Duration, Instant};

use futures::StreamExt;
use shopfloor_local::LocalProvider;
use shopfloor_providers::{ChatRequest, Provider, StreamEvent};

use extraction::{cases, field_correct, nothing, request, schema, valid, valid_within, FIELDS};

/// Enough for every answer of the dataset; the mask makes the answer finish within it.
const MAX_TOKENS: u32 = 160;

#[derive(Default)]
struct Tally {
    valid: usize,
    correct: [usize; FIELDS.len()],
    decode_tokens: u64,
    decode_time: Duration,
    ttft: Duration,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "2");
    }
    let verbose = std::env::args().any(|a| a == "--verbose");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let provider = LocalProvider::shared("smollm2")?;
    let cases = cases();
    let validator = jsonschema::validator_for(&schema())?;
    println!(
        "shopfloor-local json_bench: {} cases, {} threads, max_tokens {MAX_TOKENS}",
        cases.len(),
        provider.threads()
    );

    runtime.block_on(async {
        // The first constrained request compiles the schema and builds the vocabulary trie.
        let start = Instant::now();
        provider.complete(&request(&cases[0], true, 8)).await.ok();
        println!(
            "first constrained call (schema compile + vocabulary trie + 8 tokens): {:.3} s",
            start.elapsed().as_secs_f64()
        );
        let mut on = Tally::default();
        let mut off = Tally::default();
        // Interleaved, so that both see the same machine load.
        for (i, case) in cases.iter().enumerate() {
            for (constrained, tally) in [(true, &mut on), (false, &mut off)] {
                let (answer, run) =
                    stream(&provider, &request(case, constrained, MAX_TOKENS)).await?;
                // The mask's answers must be exactly JSON; free text gets the runner's leniency.
                let parsed = if constrained {
                    valid(&validator, &answer)
                } else {
                    valid_within(&validator, &answer)
                };
                tally.valid += usize::from(parsed.is_some());
                let got = parsed.unwrap_or_else(nothing);
                for (f, field) in FIELDS.iter().enumerate() {
                    tally.correct[f] += usize::from(field_correct(field, &got, &case.expected));
                }
                tally.decode_tokens += run.0;
                tally.decode_time += run.1;
                tally.ttft += run.2;
                if verbose {
                    println!(
                        "case {i} mask {}: {answer}",
                        if constrained { "on " } else { "off" }
                    );
                }
            }
        }
        let n = cases.len();
        println!("{:<28} {:>10} {:>10}", "", "mask on", "mask off");
        let share = |k: usize| format!("{:.0}% ({k}/{n})", 100.0 * k as f64 / n as f64);
        println!(
            "{:<28} {:>10} {:>10}",
            "valid answers",
            share(on.valid),
            share(off.valid)
        );
        for (f, field) in FIELDS.iter().enumerate() {
            println!(
                "{:<28} {:>10} {:>10}",
                format!("field accuracy: {field}"),
                share(on.correct[f]),
                share(off.correct[f])
            );
        }
        let all = |t: &Tally| {
            let total: usize = t.correct.iter().sum();
            format!("{:.1}%", 100.0 * total as f64 / (n * FIELDS.len()) as f64)
        };
        println!(
            "{:<28} {:>10} {:>10}",
            "field accuracy: all",
            all(&on),
            all(&off)
        );
        let tok_s = |t: &Tally| t.decode_tokens as f64 / t.decode_time.as_secs_f64();
        println!(
            "{:<28} {:>10.1} {:>10.1}",
            "decode tok/s",
            tok_s(&on),
            tok_s(&off)
        );
        println!(
            "{:<28} {:>10} {:>10}",
            "decode tokens", on.decode_tokens, off.decode_tokens
        );
        println!(
            "{:<28} {:>10.3} {:>10.3}",
            "mean time to first token s",
            on.ttft.as_secs_f64() / n as f64,
            off.ttft.as_secs_f64() / n as f64
        );
        println!(
            "mask cost: {:.1}% of decode speed",
            100.0 * (1.0 - tok_s(&on) / tok_s(&off))
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// The answer, and (decode tokens, decode time, time to first token): the first token comes
/// with the prompt, the rest are pure decode.
async fn stream(
    provider: &LocalProvider,
    request: &ChatRequest,
) -> Result<(String, (u64, Duration, Duration)), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut events = provider.stream(request).await?;
    let mut first = None;
    let mut text = String::new();
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::Delta(piece) => {
                first.get_or_insert_with(Instant::now);
                text.push_str(&piece);
            }
            StreamEvent::ToolCall(_) => {}
            StreamEvent::Done { usage, .. } => {
                let end = Instant::now();
                let first = first.unwrap_or(end);
                let tokens = usage
                    .unwrap_or_default()
                    .completion_tokens
                    .saturating_sub(1);
                return Ok((text, (u64::from(tokens), end - first, first - start)));
            }
        }
    }
    Err("the stream ended without Done".into())
}
