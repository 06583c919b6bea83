//! Which forward pass runs: ours ([`crate::llama`], the default) or candle's `quantized_llama`.
//!
//! Ours keeps a preallocated KV cache, reads shared KV heads without copying and fuses the
//! q/k/v and gate/up products (fewer thread syncs per layer): decode ≈ 60 tok/s against
//! candle's ≈ 48 on 2 threads. `SHOPFLOOR_LOCAL_FORWARD=candle` at load time selects candle's,
//! kept as a reference. Both read the same GGUF tensors; their logits differ by up to about one
//! unit (as much as candle's own prompt-at-once and token-by-token results differ), which can flip
//! a greedy token where the top two are that close.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Result, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

use crate::llama;

/// Environment variable that picks the forward pass at load time.
const FORWARD_VAR: &str = "SHOPFLOOR_LOCAL_FORWARD";

/// Loaded weights; clones share them.
#[derive(Clone)]
pub(crate) enum Model {
    Own(llama::Model),
    Candle(Box<ModelWeights>),
}

/// One sequence's KV cache.
#[derive(Clone)]
pub(crate) enum Cache {
    Own(llama::Cache),
    /// candle keeps the cache inside its (cheaply cloned) weights.
    Candle(Box<ModelWeights>),
}

impl Model {
    /// Load from GGUF `content` with our forward pass, or candle's if `SHOPFLOOR_LOCAL_FORWARD=candle`.
    pub(crate) fn from_gguf<R: Read + Seek>(content: Content, reader: &mut R) -> Result<Self> {
        match std::env::var(FORWARD_VAR).as_deref() {
            Ok("candle") => Ok(Self::Candle(Box::new(ModelWeights::from_gguf(
                content,
                reader,
                &Device::Cpu,
            )?))),
            _ => Ok(Self::Own(llama::Model::from_gguf(&content, reader)?)),
        }
    }

    /// An empty cache for one sequence expected to reach `expected` positions.
    pub(crate) fn new_cache(&self, expected: usize) -> Cache {
        match self {
            Self::Own(m) => Cache::Own(m.new_cache(expected)),
            Self::Candle(w) => Cache::Candle(w.clone()),
        }
    }

    /// Read `tokens` at positions `pos..` into `cache`; the logits after the last one.
    pub(crate) fn forward(&self, tokens: &[u32], pos: usize, cache: &mut Cache) -> Result<Tensor> {
        match (self, cache) {
            (Self::Own(m), Cache::Own(c)) => m.forward(tokens, pos, c),
            (Self::Candle(_), Cache::Candle(w)) => {
                let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
                w.forward(&input, pos)?.squeeze(0)
            }
            _ => candle_core::bail!("a cache used with another forward pass"),
        }
    }
}

#[cfg(test)]
mod compare {
    use super::*;

    /// The largest difference between two logit vectors.
    fn max_diff(x: &[f32], y: &[f32]) -> f32 {
        x.iter()
            .zip(y)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    }

    /// The ids of the `n` highest logits, highest first.
    fn top(logits: &[f32], n: usize) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        ids.sort_by(|&i, &j| logits[j].total_cmp(&logits[i]));
        ids.truncate(n);
        ids
    }

    /// Ours and candle's forward pass over the same pulled weights (`SHOPFLOOR_MODEL_DIR`) agree
    /// to within the rounding the module documentation allows: about one unit of logit, so a
    /// greedy token may flip only between near-equal candidates.
    #[test]
    fn own_matches_candle() {
        let weights = crate::pulled_path("smollm2").unwrap_or_else(|| {
            panic!(
                "this test needs the real model in {}: run `shopfloor models pull smollm2`",
                crate::model_dir().display()
            )
        });
        let loaded =
            crate::convert::load(&weights, crate::known_model("smollm2").unwrap().sha256).unwrap();
        let path = crate::convert::cache_path(&weights);
        let mut f = std::fs::File::open(&path).unwrap();
        let content = Content::read(&mut f).unwrap();
        let own = Model::Own(llama::Model::from_gguf(&content, &mut f).unwrap());
        let mut f = std::fs::File::open(&path).unwrap();
        let content = Content::read(&mut f).unwrap();
        let candle = Model::Candle(Box::new(
            ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap(),
        ));
        let text = crate::render_chatml(
            &[shopfloor_providers::Message::new(
                shopfloor_providers::Role::User,
                "Count from one to twenty: one, two,",
            )],
            None,
        );
        let mut tokens = loaded.tokenizer.encode(&text).unwrap();

        // Ours, the prompt at once against token by token.
        let logits = |l: Tensor| -> Vec<f32> { l.to_vec1().unwrap() };
        let mut cache = own.new_cache(10);
        let mut one_by_one = None;
        for (p, &t) in tokens.iter().enumerate() {
            one_by_one = Some(own.forward(&[t], p, &mut cache).unwrap());
        }
        let chunk = logits(own.forward(&tokens, 0, &mut own.new_cache(1)).unwrap());
        let chunk_vs_steps = max_diff(&chunk, &logits(one_by_one.unwrap()));
        assert!(
            chunk_vs_steps < 2.0,
            "ours, chunk vs one by one: {chunk_vs_steps}"
        );

        // Greedy decoding on both, fed candle's choice.
        let (mut a, mut b) = (own.new_cache(10), candle.new_cache(10));
        let mut pos = 0;
        for step in 0..4 {
            let feed = tokens[pos..].to_vec();
            let ours = logits(own.forward(&feed, pos, &mut a).unwrap());
            let theirs = logits(candle.forward(&feed, pos, &mut b).unwrap());
            pos = tokens.len();
            let diff = max_diff(&ours, &theirs);
            println!(
                "step {step}: ours {:?} candle {:?} max diff {diff}",
                top(&ours, 3),
                top(&theirs, 3)
            );
            assert!(diff < 2.5, "step {step}: logits differ by {diff}");
            let chosen = top(&theirs, 1)[0];
            assert!(
                top(&ours, 3).contains(&chosen),
                "step {step}: candle's token {chosen} is not among ours {:?}",
                top(&ours, 3)
            );
            tokens.push(chosen as u32);
        }
    }
}
