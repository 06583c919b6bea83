//! llama.cpp's figures and token ids for the embedded model, to hold ours up against.

#[path = "../../benches/common/mod.rs"]
mod common;

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use common::{peak_rss_kib, report_message, system_message};

/// Strings whose ids the tokenizer tests pin; keep in step with crates/local/tests/it/tokenizer.rs.
const SAMPLES: &[&str] = &[
    "<|im_start|>user\nHello, world!<|im_end|>\n",
    "Order 12345 costs $67.89",
    "  leading spaces and trailing   ",
    "naïve café — 日本語 🦀",
    "don't they'll I'm",
    "<|endoftext|>",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: shopfloor-llama-bench MODEL.gguf [THREADS]")?;
    let threads: i32 = args.next().map_or(Ok(2), |t| t.parse())?;
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();

    let start = Instant::now();
    let model = LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default())?;
    let load = start.elapsed();
    let vocab = model.vocab();
    for sample in SAMPLES {
        let ids: Vec<i32> = vocab
            .tokenize(sample.as_bytes(), false, true)
            .iter()
            .map(|t| t.0)
            .collect();
        println!("ids {sample:?} => {ids:?}");
    }

    let prompt_text = bench_prompt();
    let prompt = vocab.tokenize(prompt_text.as_bytes(), false, true);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(&backend, params)?;
    let mut batch = LlamaBatch::new(512, 1);
    let last = prompt.len() - 1;
    for (i, token) in prompt.iter().enumerate() {
        batch.add(*token, i as i32, &[0], i == last)?;
    }
    let start = Instant::now();
    ctx.decode(&mut batch)?;
    let mut next = argmax(ctx.get_logits_ith(batch.n_tokens() - 1));
    let ttft = start.elapsed();

    let decode_tokens = 64;
    let mut text = Vec::new();
    let start = Instant::now();
    let mut pos = prompt.len() as i32;
    for _ in 0..decode_tokens {
        text.push(next.0);
        batch.clear();
        batch.add(next, pos, &[0], true)?;
        pos += 1;
        ctx.decode(&mut batch)?;
        next = argmax(ctx.get_logits_ith(0));
    }
    let decode = start.elapsed();

    println!("llama.cpp, {threads} threads, {path}");
    println!("load: {:.3} s", load.as_secs_f64());
    println!(
        "prompt: {} tokens, time to first token {:.3} s, {:.1} tok/s",
        prompt.len(),
        ttft.as_secs_f64(),
        prompt.len() as f64 / ttft.as_secs_f64()
    );
    println!(
        "decode: {decode_tokens} tokens, {:.1} tok/s",
        decode_tokens as f64 / decode.as_secs_f64()
    );
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    println!("greedy ids: {text:?}");
    Ok(())
}

fn argmax(logits: &[f32]) -> LlamaToken {
    let best = logits
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |acc, (i, &l)| {
                if l > acc.1 {
                    (i, l)
                } else {
                    acc
                }
            },
        );
    LlamaToken(best.0 as i32)
}

/// The chat prompt of crates/local/benches/local_bench.rs, in SmolLM2's template.
fn bench_prompt() -> String {
    format!(
        "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        system_message(0),
        report_message()
    )
}
