//! In-context examples at scale (issue 29): a 10,000-case example file encoded once by the
//! embedded MiniLM, read back from beside the store on the next load, and the retrieval of the
//! k nearest for an input — the search itself and with the input's own encoding.
//!
//! `cargo bench -p shopfloor-engine --bench examples_bench [-- CASES]` (default 10,000).
//! Needs `shopfloor models pull minilm`.

use std::time::{Duration, Instant};

use serde_json::json;
use shopfloor_core::spec::{ExampleSelect, ExamplesSpec, Located, PromptSpec};
use shopfloor_core::template::PromptTemplates;
use shopfloor_engine::{nearest, ExampleSet};

const SUBJECTS: [&str; 8] = [
    "Refund for a double charge",
    "App crashes on start",
    "Cannot log in after reset",
    "Invoice shows wrong VAT",
    "Export to CSV is empty",
    "Add a seat to our plan",
    "Two-factor codes rejected",
    "Where is the API documentation",
];
const QUERIES: usize = 200;

fn main() {
    let cases: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..cases)
        .map(|i| {
            let subject = SUBJECTS[i % SUBJECTS.len()];
            let label = ["billing", "bug", "account", "other"][i % 4];
            json!({
                "id": format!("c{i}"),
                "input": {"text": format!("{subject} (account {i}, ticket #{})", i * 7919 % 100_003)},
                "expected": label,
            })
            .to_string()
        })
        .collect();
    std::fs::write(dir.path().join("examples.jsonl"), lines.join("\n")).unwrap();
    let templates = PromptTemplates::compile(&PromptSpec {
        system: None,
        user: Located::new("Ticket: {{ text }}".to_string(), None),
        assistant_prefix: None,
        examples: None,
    })
    .unwrap();
    let spec = ExamplesSpec {
        from: Located::new("examples.jsonl".to_string(), None),
        k: 4,
        select: ExampleSelect::Similar,
    };
    let load = || ExampleSet::load(dir.path(), "workflows/bench.toml", &spec, &templates).unwrap();
    let input = json!({"text": "I was charged twice this month"});
    let user = "Ticket: I was charged twice this month";

    let set = load();
    let started = Instant::now();
    let first = set.choose(user, &input, false).unwrap();
    let encode_all = started.elapsed();
    assert_eq!(first.len(), 4);
    drop(set);

    let set = load();
    let started = Instant::now();
    set.choose(user, &input, false).unwrap();
    let reload = started.elapsed();

    let mut with_encoding = Vec::with_capacity(QUERIES);
    for i in 0..QUERIES {
        let text = format!("{} again, order {i}", SUBJECTS[i % SUBJECTS.len()]);
        let started = Instant::now();
        set.choose(&format!("Ticket: {text}"), &json!({"text": text}), false)
            .unwrap();
        with_encoding.push(started.elapsed());
    }
    // The search alone: the same dot products over vectors of MiniLM's size.
    let vectors: Vec<Vec<f32>> = (0..cases)
        .map(|i| {
            let v: Vec<f32> = (0..384)
                .map(|j| ((i * 31 + j * 17) % 97) as f32 - 48.0)
                .collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect()
        })
        .collect();
    let mut search = Vec::with_capacity(QUERIES);
    for q in 0..QUERIES {
        let query = &vectors[(q * 7) % cases];
        let started = Instant::now();
        let found = nearest(&vectors, query, 4, |_| true);
        search.push(started.elapsed());
        assert_eq!(found.len(), 4);
    }
    println!("examples bench: {cases} cases, k = 4, {QUERIES} inputs");
    println!(
        "encode every case once (first use, then kept beside the store): {:.1} s ({:.2} ms a case)",
        encode_all.as_secs_f64(),
        encode_all.as_secs_f64() * 1e3 / cases as f64
    );
    println!(
        "next load, vectors read back and one input chosen: {:.1} ms",
        reload.as_secs_f64() * 1e3
    );
    println!(
        "search alone (k nearest of {cases} unit vectors): p50 {:.3} ms, p99 {:.3} ms",
        ms(&mut search, 0.50),
        ms(&mut search, 0.99)
    );
    println!(
        "choose for an input (encode it, then search): p50 {:.3} ms, p99 {:.3} ms",
        ms(&mut with_encoding, 0.50),
        ms(&mut with_encoding, 0.99)
    );
}

fn ms(times: &mut [Duration], q: f64) -> f64 {
    times.sort();
    let at = ((times.len() as f64 - 1.0) * q).round() as usize;
    times[at].as_secs_f64() * 1e3
}
