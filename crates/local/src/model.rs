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

    #[test]
    #[ignore]
    fn own_matches_candle() {
        let path = std::path::PathBuf::from(std::env::var("HOME").unwrap())
            .join(".cache/shopfloor/models/SmolLM2-135M-Instruct.Q4_1.shopfloor-q8_0.gguf");
        let mut f = std::fs::File::open(&path).unwrap();
        let content = Content::read(&mut f).unwrap();
        let own = Model::Own(llama::Model::from_gguf(&content, &mut f).unwrap());
        let mut f = std::fs::File::open(&path).unwrap();
        let content = Content::read(&mut f).unwrap();
        let candle = Model::Candle(Box::new(
            ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap(),
        ));
        let loaded = crate::convert::load(
            &path.with_file_name("SmolLM2-135M-Instruct.Q4_1.gguf"),
            crate::catalog::known_model("smollm2").unwrap().sha256,
        )
        .unwrap();
        let text = crate::render_chatml(
            &[shopfloor_providers::Message::new(
                shopfloor_providers::Role::User,
                "Count from one to twenty: one, two,",
            )],
            None,
        );
        let mut tokens = loaded.tokenizer.encode(&text).unwrap();
        let (mut a, mut b) = (own.new_cache(10), candle.new_cache(10));
        let one_by_one = |m: &Model| -> Vec<f32> {
            let mut c = m.new_cache(10);
            let mut l = None;
            for (p, &t) in tokens.iter().enumerate() {
                l = Some(m.forward(&[t], p, &mut c).unwrap());
            }
            l.unwrap().to_vec1().unwrap()
        };
        let (oa, ob) = (one_by_one(&own), one_by_one(&candle));
        let d = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let ca: Vec<f32> = own
            .forward(&tokens, 0, &mut own.new_cache(1))
            .unwrap()
            .to_vec1()
            .unwrap();
        let cb: Vec<f32> = candle
            .forward(&tokens, 0, &mut candle.new_cache(1))
            .unwrap()
            .to_vec1()
            .unwrap();
        println!(
            "own chunk vs own 1by1 {}, candle chunk vs 1by1 {}, own vs candle 1by1 {}",
            d(&ca, &oa),
            d(&cb, &ob),
            d(&oa, &ob)
        );
        let mut pos = 0;
        for step in 0..8 {
            let feed = tokens[pos..].to_vec();
            let la: Vec<f32> = own.forward(&feed, pos, &mut a).unwrap().to_vec1().unwrap();
            let lb: Vec<f32> = candle
                .forward(&feed, pos, &mut b)
                .unwrap()
                .to_vec1()
                .unwrap();
            pos = tokens.len();
            let top = |l: &[f32]| {
                let mut idx: Vec<usize> = (0..l.len()).collect();
                idx.sort_by(|&i, &j| l[j].total_cmp(&l[i]));
                idx[..3].iter().map(|&i| (i, l[i])).collect::<Vec<_>>()
            };
            let diff = la
                .iter()
                .zip(&lb)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            println!(
                "step {step}: own {:?} candle {:?} maxdiff {diff}",
                top(&la),
                top(&lb)
            );
            tokens.push(top(&lb)[0].0 as u32);
        }
    }
}
