//! Our own BERT encoder forward pass (all-MiniLM-L6-v2's shape), in plain `f32`.
//!
//! Sentences are not padded to a common length: the linear layers run over every token of the
//! batch at once (one matrix product per weight, [`crate::matmul`]), and attention runs per
//! sentence over its own tokens only, which is what BERT computes for a padded batch with an
//! attention mask, without computing the padding. The sentence vector is the mean of the last
//! hidden states over the sentence's tokens, scaled to unit length, as sentence-transformers'
//! `Pooling(mean)` and `Normalize` modules do.

use std::path::Path;

use rayon::prelude::*;

use crate::kernels::{axpy, dot};
use crate::matmul::{linear, Kernel};
use crate::safetensors::SafeTensors;
use crate::LocalError;

/// all-MiniLM-L6-v2's shape (its `config.json`); loading checks every tensor against it.
#[derive(Debug, Clone, Copy)]
struct Config {
    vocab: usize,
    max_positions: usize,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    layers: usize,
    eps: f32,
}

const MINILM: Config = Config {
    vocab: 30_522,
    max_positions: 512,
    hidden: 384,
    heads: 12,
    intermediate: 1536,
    layers: 6,
    eps: 1e-12,
};

/// A weight matrix `[out][in]` with its bias.
struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Linear {
    fn read(st: &SafeTensors, name: &str, out: usize, inputs: usize) -> Result<Self, LocalError> {
        Ok(Self {
            weight: st.f32(&format!("{name}.weight"), &[out, inputs])?,
            bias: st.f32(&format!("{name}.bias"), &[out])?,
            inputs,
        })
    }

    /// Queries, keys and values read the same input: one stacked product, not three.
    fn stacked(parts: [Linear; 3]) -> Self {
        let inputs = parts[0].inputs;
        let mut weight = Vec::new();
        let mut bias = Vec::new();
        for part in parts {
            weight.extend(part.weight);
            bias.extend(part.bias);
        }
        Self {
            weight,
            bias,
            inputs,
        }
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    fn forward(&self, kernel: Kernel, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len() / self.inputs * self.outputs()];
        linear(kernel, x, &self.weight, &self.bias, self.inputs, &mut out);
        out
    }
}

/// A layer norm's scale and shift.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Norm {
    fn read(st: &SafeTensors, name: &str, dim: usize) -> Result<Self, LocalError> {
        Ok(Self {
            weight: st.f32(&format!("{name}.weight"), &[dim])?,
            bias: st.f32(&format!("{name}.bias"), &[dim])?,
        })
    }

    /// `x = norm(x + residual)`, row by row.
    fn add_and_apply(&self, x: &mut [f32], residual: &[f32], eps: f32) {
        let dim = self.weight.len();
        for (row, res) in x.chunks_exact_mut(dim).zip(residual.chunks_exact(dim)) {
            for (v, r) in row.iter_mut().zip(res) {
                *v += r;
            }
            self.apply_row(row, eps);
        }
    }

    fn apply_row(&self, row: &mut [f32], eps: f32) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// The loaded encoder.
pub(crate) struct Bert {
    config: Config,
    kernel: Kernel,
    word: Vec<f32>,
    position: Vec<f32>,
    /// Token type 0's row: every input is a single segment.
    segment: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

impl Bert {
    /// Read the weights from a sentence-transformers safetensors file.
    pub(crate) fn load(path: &Path) -> Result<Self, LocalError> {
        let st = SafeTensors::read(path)?;
        let c = MINILM;
        let h = c.hidden;
        let mut layers = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            let p = format!("encoder.layer.{l}");
            let qkv = Linear::stacked([
                Linear::read(&st, &format!("{p}.attention.self.query"), h, h)?,
                Linear::read(&st, &format!("{p}.attention.self.key"), h, h)?,
                Linear::read(&st, &format!("{p}.attention.self.value"), h, h)?,
            ]);
            layers.push(Layer {
                qkv,
                attn_out: Linear::read(&st, &format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: Norm::read(&st, &format!("{p}.attention.output.LayerNorm"), h)?,
                up: Linear::read(&st, &format!("{p}.intermediate.dense"), c.intermediate, h)?,
                down: Linear::read(&st, &format!("{p}.output.dense"), h, c.intermediate)?,
                out_norm: Norm::read(&st, &format!("{p}.output.LayerNorm"), h)?,
            });
        }
        let segments = st.f32("embeddings.token_type_embeddings.weight", &[2, h])?;
        Ok(Self {
            config: c,
            kernel: Kernel::detect(),
            word: st.f32("embeddings.word_embeddings.weight", &[c.vocab, h])?,
            position: st.f32(
                "embeddings.position_embeddings.weight",
                &[c.max_positions, h],
            )?,
            segment: segments[..h].to_vec(),
            embed_norm: Norm::read(&st, "embeddings.LayerNorm", h)?,
            layers,
        })
    }

    /// Width of the sentence vectors.
    pub(crate) fn dimensions(&self) -> usize {
        self.config.hidden
    }

    /// Longest input, in tokens, the position table covers.
    pub(crate) fn max_positions(&self) -> usize {
        self.config.max_positions
    }

    /// One unit-length vector per sentence of token ids (each non-empty, at most
    /// [`Bert::max_positions`] long, every id below the vocabulary size: the caller's
    /// tokenizer guarantees both, and they are checked here again).
    pub(crate) fn embed(&self, sentences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, LocalError> {
        let c = self.config;
        let h = c.hidden;
        for ids in sentences {
            if ids.is_empty() || ids.len() > c.max_positions {
                return Err(LocalError::Inference(format!(
                    "a sentence of {} tokens; the encoder reads 1 to {}",
                    ids.len(),
                    c.max_positions
                )));
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= c.vocab) {
                return Err(LocalError::Inference(format!(
                    "token id {id} is outside the vocabulary of {}",
                    c.vocab
                )));
            }
        }
        let lengths: Vec<usize> = sentences.iter().map(Vec::len).collect();
        let total: usize = lengths.iter().sum();
        let mut x = Vec::with_capacity(total * h);
        for ids in sentences {
            for (pos, &id) in ids.iter().enumerate() {
                let (word, position) = (id as usize * h, pos * h);
                let start = x.len();
                x.extend(
                    self.word[word..word + h]
                        .iter()
                        .zip(&self.position[position..position + h])
                        .zip(&self.segment)
                        .map(|((w, p), s)| w + p + s),
                );
                self.embed_norm.apply_row(&mut x[start..], c.eps);
            }
        }
        for layer in &self.layers {
            self.layer(layer, &mut x, &lengths);
        }
        let mut out = Vec::with_capacity(sentences.len());
        let mut start = 0;
        for &len in &lengths {
            let mut mean = vec![0f32; h];
            for row in x[start * h..(start + len) * h].chunks_exact(h) {
                axpy(1.0, row, &mut mean);
            }
            let norm = dot(&mean, &mean).sqrt().max(1e-12);
            mean.iter_mut().for_each(|v| *v /= norm);
            out.push(mean);
            start += len;
        }
        Ok(out)
    }

    fn layer(&self, layer: &Layer, x: &mut [f32], lengths: &[usize]) {
        let c = self.config;
        let qkv = layer.qkv.forward(self.kernel, x);
        let context = attention(&qkv, lengths, c.hidden, c.heads);
        let attended = layer.attn_out.forward(self.kernel, &context);
        layer.attn_norm.add_and_apply(x, &attended, c.eps);
        let mut up = layer.up.forward(self.kernel, x);
        up.par_chunks_mut(4096)
            .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = gelu(*v)));
        let down = layer.down.forward(self.kernel, &up);
        layer.out_norm.add_and_apply(x, &down, c.eps);
    }
}

/// Scaled dot-product attention of each sentence over its own tokens; `qkv` holds each token's
/// queries, keys and values side by side. Returns each token's context, `hidden` wide.
fn attention(qkv: &[f32], lengths: &[usize], hidden: usize, heads: usize) -> Vec<f32> {
    let head_dim = hidden / heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let width = 3 * hidden;
    let mut starts = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        starts.push(start);
        start += len;
    }
    let mut context = vec![0f32; start * hidden];
    // Each sentence writes only its own rows: split the output at sentence boundaries.
    let mut pieces = Vec::with_capacity(lengths.len());
    let mut rest = &mut context[..];
    for &len in lengths {
        let (piece, tail) = rest.split_at_mut(len * hidden);
        pieces.push(piece);
        rest = tail;
    }
    pieces
        .into_par_iter()
        .zip(starts.par_iter().zip(lengths))
        .for_each(|(out, (&start, &len))| {
            let rows = &qkv[start * width..(start + len) * width];
            let mut scores = vec![0f32; len];
            for head in 0..heads {
                let q_at = head * head_dim;
                let k_at = hidden + q_at;
                let v_at = 2 * hidden + q_at;
                for i in 0..len {
                    let q = &rows[i * width + q_at..i * width + q_at + head_dim];
                    for (j, s) in scores.iter_mut().enumerate() {
                        *s = dot(q, &rows[j * width + k_at..j * width + k_at + head_dim]) * scale;
                    }
                    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for s in scores.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    let ctx = &mut out[i * hidden + q_at..i * hidden + q_at + head_dim];
                    for (j, s) in scores.iter().enumerate() {
                        let v = &rows[j * width + v_at..j * width + v_at + head_dim];
                        axpy(s / sum, v, ctx);
                    }
                }
            }
        });
    context
}

/// BERT's GELU, `x · Φ(x)` with the exact normal CDF (not the tanh approximation).
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function to about 1e-7 (Abramowitz and Stegun 7.1.26), in `f64` inside.
fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    (if x < 0.0 { -y } else { y }) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf(0.5), erf(1), erf(2), rounded to f32 precision.
        for (x, e) in [
            (0.0, 0.0),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
        ] {
            assert!((erf(x) - e).abs() < 3e-7, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + e).abs() < 3e-7);
        }
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
    }

    /// Attention over a sentence of one token returns that token's values, whatever the
    /// queries and keys.
    #[test]
    fn attention_over_one_token_is_its_values() {
        let (hidden, heads) = (4, 2);
        let qkv: Vec<f32> = (0..2 * 3 * hidden).map(|i| i as f32 * 0.1).collect();
        let ctx = attention(&qkv, &[1, 1], hidden, heads);
        assert_eq!(ctx[..4], qkv[8..12]);
        assert_eq!(ctx[4..], qkv[20..24]);
    }
}
