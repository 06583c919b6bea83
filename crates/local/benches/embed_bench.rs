//! Speed of the embedded sentence encoder (all-MiniLM-L6-v2): load time, one sentence's
//! latency, and sentences per second alone and in a batch of 32. `cargo bench -p
//! shopfloor-local --bench embed_bench` (threads: `SHOPFLOOR_THREADS`, default 2).

mod common;

use std::time::{Duration, Instant};

use shopfloor_local::LocalEmbedder;

use common::peak_rss_kib;

/// Support-ticket sized sentences, 9 to 27 tokens each.
const SENTENCES: [&str; 8] = [
    "I was charged twice for my subscription this month.",
    "Please reset my password, I cannot log in.",
    "The quarterly report is due on Friday at 5 pm.",
    "Our warehouse in Rotterdam shipped 1,250 pallets last week.",
    "Refund request: order 55-1193 arrived damaged and the box was open.",
    "Can you send the invoice to the finance team by tomorrow?",
    "The app crashes when I upload a photo from my phone.",
    "GPU prices rose 23% in Q3, according to the vendor's latest invoice.",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "2");
    }
    let start = Instant::now();
    let embedder = LocalEmbedder::shared("minilm")?;
    println!(
        "shopfloor-local embeddings (minilm, {} dimensions), {} threads",
        embedder.dimensions(),
        embedder.threads()
    );
    println!("load: {:.3} s", start.elapsed().as_secs_f64());

    let one = vec![SENTENCES[0].to_owned()];
    let batch: Vec<String> = SENTENCES
        .iter()
        .cycle()
        .take(32)
        .map(|s| s.to_string())
        .collect();
    let tokens: usize = batch
        .iter()
        .map(|s| embedder.tokenize(s).map_or(0, |t| t.len()))
        .sum();
    // Warm-up: first-call allocations are not what a serving process sees.
    embedder.embed_blocking(&batch)?;

    let single = median(50, || embedder.embed_blocking(&one).map(drop))?;
    println!(
        "one sentence ({} tokens): {:.2} ms median of 50, {:.0} sentences/s",
        embedder.tokenize(&one[0])?.len(),
        ms(single),
        1.0 / single.as_secs_f64()
    );
    let batched = median(10, || embedder.embed_blocking(&batch).map(drop))?;
    println!(
        "batch of 32 ({tokens} tokens): {:.1} ms median of 10, {:.0} sentences/s, {:.0} tokens/s",
        ms(batched),
        32.0 / batched.as_secs_f64(),
        tokens as f64 / batched.as_secs_f64()
    );
    let long = vec!["The embedded encoder truncates long inputs at 256 tokens. ".repeat(40)];
    let cut = median(10, || embedder.embed_blocking(&long).map(drop))?;
    println!("one 256-token text: {:.1} ms median of 10", ms(cut));
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median<E>(n: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<Duration, E> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[n / 2])
}
