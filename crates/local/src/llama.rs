//! Our own llama forward pass over the GGUF tensors, for one sequence at a time.
//!
//! candle's `quantized_llama` concatenates the whole KV cache for every new token and copies it
//! again to repeat the shared key/value heads. Here each sequence appends its keys and values to
//! a growing buffer in place, and attention reads the shared heads where they are. The quantized
//! matrix products are candle's `QMatMul` for single tokens and, for prompt chunks of Q8_0
//! weights, our batched product in [`crate::q8`]; norms, rotary embeddings and attention are
//! plain loops over `f32` slices, which for a model this small costs less than building tensors
//! for them.

use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use rayon::prelude::*;

use crate::kernels::{axpy, dot, rms_norm, silu_mul};
use crate::q8::Q8Weights;

/// Longest context the model runs with (the size of the rotary tables).
pub(crate) const MAX_SEQ_LEN: usize = 4096;

/// Shape of the network, from the GGUF metadata.
#[derive(Debug, Clone, Copy)]
struct Config {
    dim: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f32,
    /// Rotary pairs `(i, i + d/2)` rather than `(2i, 2i + 1)`.
    rope_neox: bool,
}

impl Config {
    fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}

/// Weights that read the same input are stacked into one matrix product (queries, keys and
/// values; gate and up), so each layer synchronises the compute threads four times, not seven.
struct Layer {
    qkv: Linear,
    wo: Linear,
    gate_up: Linear,
    down: Linear,
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
}

struct Inner {
    config: Config,
    embeddings: QMatMul,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: QMatMul,
    /// `cos` and `sin` of position × frequency, `head_dim / 2` per position.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// The model's weights; clones share them.
#[derive(Clone)]
pub(crate) struct Model {
    inner: Arc<Inner>,
}

/// One sequence's keys and values, per layer `[position][kv head][head_dim]`, appended in place.
#[derive(Clone, Default)]
pub(crate) struct Cache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
}

/// Whether prompt chunks use [`Q8Weights`]. Always: the workspace compiles this crate optimised
/// in dev builds too (`[profile.dev.package.shopfloor-local]`), so tests exercise the kernel.
const BATCHED: bool = true;

/// A weight matrix: candle's `QMatMul` for single tokens, and for Q8_0 weights our batched
/// product ([`Q8Weights`]) for prompt chunks, which reuses each weight block across tokens.
struct Linear {
    matmul: QMatMul,
    batched: Option<Q8Weights>,
}

impl Linear {
    fn new(t: QTensor) -> Result<Self> {
        let t = Arc::new(t);
        Ok(Self {
            batched: Q8Weights::new(t.clone())?,
            matmul: QMatMul::from_arc(t)?,
        })
    }

    /// `x · Wᵀ` for the `seq` rows of `x` (each as wide as the weight's columns).
    fn forward(&self, x: &[f32], seq: usize) -> Result<Vec<f32>> {
        match &self.batched {
            Some(b) if BATCHED && seq > 1 => b.forward(x),
            _ => {
                let cols = x.len() / seq;
                to_vec(
                    self.matmul
                        .forward(&Tensor::from_slice(x, (seq, cols), &Device::Cpu)?)?,
                )
            }
        }
    }
}

/// One matrix product for several weights over the same input: their rows stacked in order.
fn stacked(parts: &[QTensor]) -> Result<Linear> {
    let Some(first) = parts.first() else {
        candle_core::bail!("nothing to stack");
    };
    let (dtype, (_, k)) = (first.dtype(), first.shape().dims2()?);
    let mut rows = 0;
    let mut bytes = Vec::new();
    for part in parts {
        let (n, pk) = part.shape().dims2()?;
        if part.dtype() != dtype || pk != k {
            candle_core::bail!(
                "cannot stack {:?} {dtype:?} weights on {k} columns",
                part.shape()
            );
        }
        rows += n;
        bytes.extend_from_slice(&part.data()?);
    }
    Linear::new(qtensor_from_ggml(
        dtype,
        &bytes,
        vec![rows, k],
        &Device::Cpu,
    )?)
}

fn norm_weights(t: &QTensor) -> Result<Vec<f32>> {
    t.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()
}

impl Model {
    /// Load a llama-architecture model from GGUF `content`.
    pub(crate) fn from_gguf<R: Read + Seek>(content: &Content, reader: &mut R) -> Result<Self> {
        let device = Device::Cpu;
        let md = |key: &str| {
            content
                .metadata
                .get(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("cannot find {key} in metadata")))
        };
        let n_head = md("llama.attention.head_count")?.to_u32()? as usize;
        let n_kv_head = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let n_layer = md("llama.block_count")?.to_u32()? as usize;
        let dim = md("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = md("llama.rope.dimension_count")?.to_u32()? as usize;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        let freq_base = md("llama.rope.freq_base")
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);
        let arch = md("general.architecture")?.to_string()?.clone();
        if n_head == 0
            || n_kv_head == 0
            || !n_head.is_multiple_of(n_kv_head)
            || !dim.is_multiple_of(n_head)
        {
            candle_core::bail!("unsupported head counts {n_head}/{n_kv_head} for width {dim}");
        }
        let head_dim = dim / n_head;
        if rope_dim != head_dim || !head_dim.is_multiple_of(2) {
            candle_core::bail!("unsupported rotary dimension {rope_dim} for heads of {head_dim}");
        }
        if content.metadata.contains_key("llama.expert_count") {
            candle_core::bail!("mixture-of-experts models are not supported");
        }
        // llama.cpp's convention per architecture; the llama family is interleaved.
        let rope_neox = matches!(arch.as_str(), "qwen2" | "qwen3" | "phi3" | "stablelm");
        let config = Config {
            dim,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            rope_neox,
        };
        let mut tensor = |name: &str| content.tensor(reader, name, &device);
        let embeddings_q = Arc::new(tensor("token_embd.weight")?);
        let embeddings = QMatMul::from_arc(embeddings_q.clone())?;
        let norm = norm_weights(&tensor("output_norm.weight")?)?;
        let output = match tensor("output.weight") {
            Ok(t) => QMatMul::from_qtensor(t)?,
            Err(_) => QMatMul::from_arc(embeddings_q)?,
        };
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let mut t = |part: &str| tensor(&format!("blk.{i}.{part}.weight"));
            layers.push(Layer {
                qkv: stacked(&[t("attn_q")?, t("attn_k")?, t("attn_v")?])?,
                wo: Linear::new(t("attn_output")?)?,
                gate_up: stacked(&[t("ffn_gate")?, t("ffn_up")?])?,
                down: Linear::new(t("ffn_down")?)?,
                attn_norm: norm_weights(&tensor(&format!("blk.{i}.attn_norm.weight"))?)?,
                ffn_norm: norm_weights(&tensor(&format!("blk.{i}.ffn_norm.weight"))?)?,
            });
        }
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(MAX_SEQ_LEN * half);
        let mut sin = Vec::with_capacity(MAX_SEQ_LEN * half);
        for pos in 0..MAX_SEQ_LEN {
            for i in 0..half {
                let theta = 1.0 / freq_base.powf((2 * i) as f32 / head_dim as f32);
                let angle = pos as f32 * theta;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                embeddings,
                layers,
                norm,
                output,
                cos,
                sin,
            }),
        })
    }

    /// An empty cache for one sequence, with room for `expected` positions before it grows.
    pub(crate) fn new_cache(&self, expected: usize) -> Cache {
        let inner = &self.inner;
        let room = expected.min(MAX_SEQ_LEN) * inner.config.kv_dim();
        let buffers = || {
            (0..inner.layers.len())
                .map(|_| Vec::with_capacity(room))
                .collect()
        };
        Cache {
            keys: buffers(),
            values: buffers(),
        }
    }

    /// Read `tokens` at positions `pos..`, appending to `cache`; the logits after the last one.
    pub(crate) fn forward(&self, tokens: &[u32], pos: usize, cache: &mut Cache) -> Result<Tensor> {
        let inner = &*self.inner;
        let c = inner.config;
        let seq = tokens.len();
        if seq == 0 {
            candle_core::bail!("nothing to read");
        }
        if pos + seq > MAX_SEQ_LEN {
            candle_core::bail!("the context is longer than {MAX_SEQ_LEN} tokens");
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let mut x: Vec<f32> = inner.embeddings.embedding(&ids)?.flatten_all()?.to_vec1()?;
        let mut h = vec![0f32; seq * c.dim];
        let mut attn = vec![0f32; seq * c.dim];
        for (l, layer) in inner.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.eps, &mut h);
            let qkv = layer.qkv.forward(&h, seq)?;
            let [mut q, mut k, v] = split_rows(&qkv, seq, [c.dim, c.kv_dim(), c.kv_dim()]);
            self.rope(&mut q, c.n_head, pos);
            self.rope(&mut k, c.n_kv_head, pos);
            let (keys, values) = (&mut cache.keys[l], &mut cache.values[l]);
            if keys.len() != pos * c.kv_dim() {
                candle_core::bail!("the cache holds {} positions, not {pos}", keys.len());
            }
            keys.extend_from_slice(&k);
            values.extend_from_slice(&v);
            attention(&c, &q, keys, values, pos, &mut attn);
            let o = layer.wo.forward(&attn, seq)?;
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

            rms_norm(&x, &layer.ffn_norm, c.eps, &mut h);
            let gate_up = layer.gate_up.forward(&h, seq)?;
            let width = gate_up.len() / seq / 2;
            let [mut gate, up] = split_rows(&gate_up, seq, [width, width]);
            silu_mul(&mut gate, &up);
            let d = layer.down.forward(&gate, seq)?;
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
        let last = &x[(seq - 1) * c.dim..];
        let mut normed = vec![0f32; c.dim];
        rms_norm(last, &inner.norm, c.eps, &mut normed);
        let last = Tensor::from_vec(normed, (1, c.dim), &Device::Cpu)?;
        inner.output.forward(&last)?.squeeze(0)
    }

    /// Rotate `x` (`[token][head][head_dim]`, tokens at positions `pos..`) in place.
    fn rope(&self, x: &mut [f32], heads: usize, pos: usize) {
        let inner = &*self.inner;
        let hd = inner.config.head_dim;
        let half = hd / 2;
        for (t, token) in x.chunks_exact_mut(heads * hd).enumerate() {
            let at = (pos + t) * half;
            let (cos, sin) = (&inner.cos[at..at + half], &inner.sin[at..at + half]);
            for head in token.chunks_exact_mut(hd) {
                if inner.config.rope_neox {
                    let (a, b) = head.split_at_mut(half);
                    for i in 0..half {
                        let (x0, x1) = (a[i], b[i]);
                        a[i] = x0 * cos[i] - x1 * sin[i];
                        b[i] = x0 * sin[i] + x1 * cos[i];
                    }
                } else {
                    for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                        let (x0, x1) = (pair[0], pair[1]);
                        pair[0] = x0 * cos[i] - x1 * sin[i];
                        pair[1] = x0 * sin[i] + x1 * cos[i];
                    }
                }
            }
        }
    }
}

/// Split each of the `seq` rows of `x` into consecutive column blocks as wide as `widths`.
fn split_rows<const N: usize>(x: &[f32], seq: usize, widths: [usize; N]) -> [Vec<f32>; N] {
    let row: usize = widths.iter().sum();
    let mut out: [Vec<f32>; N] = std::array::from_fn(|i| Vec::with_capacity(seq * widths[i]));
    for r in x.chunks_exact(row) {
        let mut at = 0;
        for (o, w) in out.iter_mut().zip(widths) {
            o.extend_from_slice(&r[at..at + w]);
            at += w;
        }
    }
    out
}

fn to_vec(t: Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1()
}

/// Causal attention of the queries `q` (`[token][head][head_dim]`, tokens at `pos..`) over every
/// cached position up to each token's own; query head `h` reads key/value head `h / group`.
fn attention(c: &Config, q: &[f32], keys: &[f32], values: &[f32], pos: usize, out: &mut [f32]) {
    let hd = c.head_dim;
    let kv_dim = c.kv_dim();
    let group = c.n_head / c.n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    let one = |item: usize, out: &mut [f32], scores: &mut Vec<f32>| {
        let (t, head) = (item / c.n_head, item % c.n_head);
        let kv = (head / group) * hd;
        let query = &q[item * hd..(item + 1) * hd];
        let len = pos + t + 1;
        scores.clear();
        scores.extend((0..len).map(|p| {
            let at = p * kv_dim + kv;
            dot(query, &keys[at..at + hd]) * scale
        }));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        out.fill(0.0);
        for (p, &s) in scores.iter().enumerate() {
            let at = p * kv_dim + kv;
            axpy(s / sum, &values[at..at + hd], out);
        }
    };
    let items = out.len() / hd;
    if items <= c.n_head {
        let mut scores = Vec::with_capacity(pos + 1);
        for (item, o) in out.chunks_exact_mut(hd).enumerate() {
            one(item, o, &mut scores);
        }
    } else {
        out.par_chunks_mut(hd).enumerate().for_each_init(
            || Vec::with_capacity(pos + items / c.n_head),
            |scores, (item, o)| one(item, o, scores),
        );
    }
}
