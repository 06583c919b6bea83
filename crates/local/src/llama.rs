//! Our own llama forward pass over the GGUF tensors, for one sequence at a time.
//!
//! Each sequence appends its keys and values to a growing buffer in place, and attention reads
//! the shared key/value heads where they are, rather than concatenating and repeating them for
//! every token. The matrix products are [`crate::q8`]'s for Q8_0 weights (what the loader
//! converts the published file to); a weight of another type is widened to `f32` once at load
//! and multiplied by [`crate::matmul`]. Norms, rotary embeddings and attention are plain loops
//! over `f32` slices, which for a model this small costs less than building tensors for them.

use std::io::{Read, Seek};
use std::sync::Arc;

use rayon::prelude::*;

use crate::gguf::{Gguf, Tensor};
use crate::kernels::{axpy, dot, rms_norm, silu_mul};
use crate::matmul::{linear, Kernel};
use crate::q8::{LaneSum, Q8Weights};
use crate::quant::{dequantize, GgmlType};
use crate::LocalError;

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
    embeddings: Arc<Linear>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// The embeddings themselves where the model ties the two (SmolLM2 does).
    output: Arc<Linear>,
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

/// A weight matrix: Q8_0 blocks multiplied as they are, or another type widened to `f32` once.
enum Linear {
    Q8(Q8Weights),
    F32 {
        /// `rows × cols`, row after row.
        values: Vec<f32>,
        cols: usize,
        /// A zero per row: [`linear`] adds a bias.
        zeros: Vec<f32>,
        kernel: Kernel,
    },
}

impl Linear {
    fn new(t: Tensor) -> Result<Self, String> {
        let (rows, cols) = t.matrix()?;
        if t.dtype == GgmlType::Q8_0 {
            return Ok(Self::Q8(Q8Weights::new(t.data, rows, cols)?));
        }
        let values = dequantize(t.dtype, &t.data)
            .ok_or_else(|| format!("{:?} weights are not supported", t.dtype))?;
        Ok(Self::F32 {
            values,
            cols,
            zeros: vec![0.0; rows],
            kernel: Kernel::detect(),
        })
    }

    /// Output rows (the width of the product).
    fn rows(&self) -> usize {
        match self {
            Self::Q8(w) => w.rows(),
            Self::F32 { zeros, .. } => zeros.len(),
        }
    }

    /// Input columns.
    fn cols(&self) -> usize {
        match self {
            Self::Q8(w) => w.cols(),
            Self::F32 { cols, .. } => *cols,
        }
    }

    /// An error unless the matrix is `rows × cols`.
    fn expect(&self, rows: usize, cols: usize) -> Result<(), String> {
        if (self.rows(), self.cols()) == (rows, cols) {
            Ok(())
        } else {
            Err(format!(
                "a {}×{} matrix where the model's shape needs {rows}×{cols}",
                self.rows(),
                self.cols()
            ))
        }
    }

    /// `x · Wᵀ` for the rows of `x` (each as wide as the weight's columns): `[token][row]`.
    /// `sums` matters to Q8_0 weights only.
    fn forward(&self, x: &[f32], sums: LaneSum) -> Vec<f32> {
        match self {
            Self::Q8(w) => w.forward(x, sums),
            Self::F32 {
                values,
                cols,
                zeros,
                kernel,
            } => {
                let mut out = vec![0f32; x.len() / cols * zeros.len()];
                linear(*kernel, x, values, zeros, *cols, &mut out);
                out
            }
        }
    }

    /// Rows `ids` as `f32`, one after another: an embedding lookup.
    fn lookup(&self, ids: &[u32]) -> Result<Vec<f32>, LocalError> {
        let mut out = Vec::new();
        for &id in ids {
            let r = id as usize;
            if r >= self.rows() {
                return Err(LocalError::Inference(format!(
                    "token id {id} is outside the vocabulary of {}",
                    self.rows()
                )));
            }
            match self {
                Self::Q8(w) => w.row(r, &mut out),
                Self::F32 { values, cols, .. } => {
                    out.extend_from_slice(&values[r * cols..(r + 1) * cols]);
                }
            }
        }
        Ok(out)
    }
}

/// One matrix product for several weights over the same input: their rows stacked in order.
fn stacked(parts: Vec<Tensor>) -> Result<Linear, String> {
    let Some(first) = parts.first() else {
        return Err("nothing to stack".to_owned());
    };
    let (dtype, (_, cols)) = (first.dtype, first.matrix()?);
    let mut rows = 0;
    let mut data = Vec::new();
    for part in parts {
        let (n, pk) = part.matrix()?;
        if part.dtype != dtype || pk != cols {
            return Err(format!(
                "cannot stack {:?} {:?} weights with {dtype:?} ones of {cols} columns",
                part.dims, part.dtype
            ));
        }
        rows += n;
        data.extend_from_slice(&part.data);
    }
    Linear::new(Tensor {
        dtype,
        dims: vec![rows, cols],
        data,
    })
}

fn norm_weights(t: Tensor) -> Result<Vec<f32>, String> {
    dequantize(t.dtype, &t.data)
        .ok_or_else(|| format!("{:?} norm weights are not supported", t.dtype))
}

impl Model {
    /// Load a llama-architecture model described by `file`, its tensors read from `reader`.
    /// The message of an error says what in the file is wrong.
    pub(crate) fn from_gguf<R: Read + Seek>(file: &Gguf, reader: &mut R) -> Result<Self, String> {
        let md = |key: &str| {
            file.get(key)
                .ok_or_else(|| format!("the metadata has no {key}"))
        };
        let count = |key: &str| {
            md(key)?
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| format!("{key} is not a count"))
        };
        let n_head = count("llama.attention.head_count")?;
        let n_kv_head = count("llama.attention.head_count_kv")?;
        let n_layer = count("llama.block_count")?;
        let dim = count("llama.embedding_length")?;
        let rope_dim = count("llama.rope.dimension_count")?;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?
            .as_f32()
            .ok_or("llama.attention.layer_norm_rms_epsilon is not a number")?;
        let freq_base = file
            .get("llama.rope.freq_base")
            .and_then(|v| v.as_f32())
            .unwrap_or(10_000.0);
        let arch = md("general.architecture")?
            .as_str()
            .ok_or("general.architecture is not a string")?
            .to_owned();
        if n_head == 0
            || n_kv_head == 0
            || !n_head.is_multiple_of(n_kv_head)
            || !dim.is_multiple_of(n_head)
        {
            return Err(format!(
                "unsupported head counts {n_head}/{n_kv_head} for width {dim}"
            ));
        }
        let head_dim = dim / n_head;
        if rope_dim != head_dim || !head_dim.is_multiple_of(2) {
            return Err(format!(
                "unsupported rotary dimension {rope_dim} for heads of {head_dim}"
            ));
        }
        if file.get("llama.expert_count").is_some() {
            return Err("mixture-of-experts models are not supported".to_owned());
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
        let mut tensor = |name: &str| file.tensor(reader, name);
        let named = |name: &'static str| move |e: String| format!("{name}: {e}");
        let embeddings = Arc::new(
            Linear::new(tensor("token_embd.weight")?).map_err(named("token_embd.weight"))?,
        );
        let norm =
            norm_weights(tensor("output_norm.weight")?).map_err(named("output_norm.weight"))?;
        let output = if file.tensors.iter().any(|t| t.name == "output.weight") {
            Arc::new(Linear::new(tensor("output.weight")?).map_err(named("output.weight"))?)
        } else {
            embeddings.clone()
        };
        let vocab = embeddings.rows();
        embeddings
            .expect(vocab, dim)
            .map_err(named("token_embd.weight"))?;
        output.expect(vocab, dim).map_err(named("output.weight"))?;
        if norm.len() != dim {
            return Err(format!(
                "output_norm.weight has {} values, not {dim}",
                norm.len()
            ));
        }
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let mut t = |part: &str| tensor(&format!("blk.{i}.{part}.weight"));
            let at = |part: &'static str| move |e: String| format!("blk.{i}.{part}: {e}");
            let layer = Layer {
                qkv: stacked(vec![t("attn_q")?, t("attn_k")?, t("attn_v")?])
                    .map_err(at("attn_qkv"))?,
                wo: Linear::new(t("attn_output")?).map_err(at("attn_output"))?,
                gate_up: stacked(vec![t("ffn_gate")?, t("ffn_up")?]).map_err(at("ffn_gate_up"))?,
                down: Linear::new(t("ffn_down")?).map_err(at("ffn_down"))?,
                attn_norm: norm_weights(t("attn_norm")?).map_err(at("attn_norm"))?,
                ffn_norm: norm_weights(t("ffn_norm")?).map_err(at("ffn_norm"))?,
            };
            let ff = layer.down.cols();
            layer
                .qkv
                .expect(dim + 2 * config.kv_dim(), dim)
                .map_err(at("attn_q/k/v"))?;
            layer.wo.expect(dim, dim).map_err(at("attn_output"))?;
            layer
                .gate_up
                .expect(2 * ff, dim)
                .map_err(at("ffn_gate/up"))?;
            layer.down.expect(dim, ff).map_err(at("ffn_down"))?;
            if layer.attn_norm.len() != dim || layer.ffn_norm.len() != dim {
                return Err(format!("blk.{i}: norm weights are not {dim} wide"));
            }
            layers.push(layer);
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

    /// A new cache holding the first `positions` of `from`, with room for `expected` in all.
    pub(crate) fn cache_prefix(&self, from: &Cache, positions: usize, expected: usize) -> Cache {
        let mut cache = self.new_cache(expected.max(positions));
        let len = positions * self.inner.config.kv_dim();
        for (to, from) in [
            (&mut cache.keys, &from.keys),
            (&mut cache.values, &from.values),
        ] {
            for (to, from) in to.iter_mut().zip(from) {
                to.extend_from_slice(&from[..len.min(from.len())]);
            }
        }
        cache
    }

    /// Read `tokens` at positions `pos..`, appending to `cache`; the logits after the last one.
    /// One token is read as a decoding step, more as a prompt chunk ([`LaneSum`]).
    pub(crate) fn forward(
        &self,
        tokens: &[u32],
        pos: usize,
        cache: &mut Cache,
    ) -> Result<Vec<f32>, LocalError> {
        let sums = if tokens.len() == 1 {
            LaneSum::Pairwise
        } else {
            LaneSum::InOrder
        };
        let pass = Pass {
            positions: (pos..pos + tokens.len()).collect(),
            seen: Seen::Causal((0..tokens.len()).collect()),
            sums,
        };
        let x = self.layers(
            tokens,
            &pass,
            &mut After::One {
                cache,
                pos,
                append: true,
            },
        )?;
        let last = &x[(tokens.len() - 1) * self.inner.config.dim..];
        Ok(self.logits(last, LaneSum::Pairwise))
    }

    /// The logits after each row of `hidden` (the last layer's states, `[token][dim]`):
    /// the final norm, then the output product.
    fn logits(&self, hidden: &[f32], sums: LaneSum) -> Vec<f32> {
        let mut normed = vec![0f32; hidden.len()];
        rms_norm(hidden, &self.inner.norm, self.inner.config.eps, &mut normed);
        self.inner.output.forward(&normed, sums)
    }

    /// One decoding step for each of several sequences in one pass: `steps[i]` reads its token
    /// after the positions its cache holds and appends to it. Row `i` of the logits
    /// (`[sequence][vocabulary]`) is, to the bit, what [`Model::forward`] gives that sequence
    /// alone: every product adds its lanes the decoding way whatever rows share it, and each
    /// row attends to its own cache. The weights are read once for all of them.
    pub(crate) fn forward_batch(
        &self,
        steps: &mut [(u32, &mut Cache)],
    ) -> Result<Vec<f32>, LocalError> {
        let kv_dim = self.inner.config.kv_dim();
        let tokens: Vec<u32> = steps.iter().map(|(t, _)| *t).collect();
        let positions: Vec<usize> = steps
            .iter()
            .map(|(_, cache)| cache.keys.first().map_or(0, Vec::len) / kv_dim)
            .collect();
        let pass = Pass {
            positions,
            seen: Seen::Causal(vec![0]),
            sums: LaneSum::Pairwise,
        };
        let mut caches: Vec<&mut Cache> = steps.iter_mut().map(|(_, c)| &mut **c).collect();
        let x = self.layers(&tokens, &pass, &mut After::Each(&mut caches))?;
        Ok(self.logits(&x, LaneSum::Pairwise))
    }

    /// Read a tree of continuations after the `pos` positions `cache` holds, leaving the cache
    /// as it is: node `i` is `tokens[i]`, and `paths[i]` lists the nodes from its root down to
    /// itself (indexes into `tokens`), so it sits at position `pos + paths[i].len() - 1` and
    /// attends to the cached positions and that path, as if its path alone had been read after
    /// the cache. Read as a prompt chunk is. The logits after each node, `[node][vocabulary]`.
    pub(crate) fn forward_tree(
        &self,
        tokens: &[u32],
        paths: &[Vec<usize>],
        pos: usize,
        cache: &mut Cache,
    ) -> Result<Vec<f32>, LocalError> {
        let well_formed = paths.len() == tokens.len()
            && paths
                .iter()
                .enumerate()
                .all(|(i, path)| path.last() == Some(&i) && path.iter().all(|&j| j < tokens.len()));
        if !well_formed {
            return Err(LocalError::Inference(
                "a tree pass needs one root-to-node path per token, ending at that token"
                    .to_owned(),
            ));
        }
        let pass = Pass {
            positions: paths.iter().map(|p| pos + p.len() - 1).collect(),
            seen: Seen::Paths(paths),
            sums: LaneSum::InOrder,
        };
        let after = &mut After::One {
            cache,
            pos,
            append: false,
        };
        let x = self.layers(tokens, &pass, after)?;
        Ok(self.logits(&x, LaneSum::InOrder))
    }

    /// The hidden states after the last layer, `[token][dim]`, for `tokens` read after what
    /// `after` holds.
    fn layers(
        &self,
        tokens: &[u32],
        pass: &Pass,
        after: &mut After,
    ) -> Result<Vec<f32>, LocalError> {
        let inner = &*self.inner;
        let c = inner.config;
        let seq = tokens.len();
        let fail = |message: String| Err(LocalError::Inference(message));
        if seq == 0 {
            return fail("nothing to read".to_owned());
        }
        if pass.positions.iter().any(|&p| p >= MAX_SEQ_LEN) {
            return fail(format!("the context is longer than {MAX_SEQ_LEN} tokens"));
        }
        let mut x = inner.embeddings.lookup(tokens)?;
        let mut h = vec![0f32; seq * c.dim];
        let mut attn = vec![0f32; seq * c.dim];
        for (l, layer) in inner.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.eps, &mut h);
            let qkv = layer.qkv.forward(&h, pass.sums);
            let [mut q, mut k, v] = split_rows(&qkv, seq, [c.dim, c.kv_dim(), c.kv_dim()]);
            self.rope(&mut q, c.n_head, &pass.positions);
            self.rope(&mut k, c.n_kv_head, &pass.positions);
            after.attend(l, &c, pass, (&q, &k, &v), &mut attn)?;
            let o = layer.wo.forward(&attn, pass.sums);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);

            rms_norm(&x, &layer.ffn_norm, c.eps, &mut h);
            let gate_up = layer.gate_up.forward(&h, pass.sums);
            let width = gate_up.len() / seq / 2;
            let [mut gate, up] = split_rows(&gate_up, seq, [width, width]);
            silu_mul(&mut gate, &up);
            let d = layer.down.forward(&gate, pass.sums);
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
        Ok(x)
    }

    /// Rotate `x` (`[token][head][head_dim]`, token `t` at position `positions[t]`) in place.
    fn rope(&self, x: &mut [f32], heads: usize, positions: &[usize]) {
        let inner = &*self.inner;
        let hd = inner.config.head_dim;
        let half = hd / 2;
        for (token, &pos) in x.chunks_exact_mut(heads * hd).zip(positions) {
            let at = pos * half;
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

/// Where the tokens of one pass sit, which of them each attends to besides its cache, and
/// how its products add up their lanes.
struct Pass<'a> {
    /// Each token's position.
    positions: Vec<usize>,
    seen: Seen<'a>,
    sums: LaneSum,
}

/// What a pass's tokens follow, and where their keys and values go.
enum After<'c, 'm> {
    /// One sequence: the pass follows the `pos` positions of `cache`, and is appended to it
    /// if `append`.
    One {
        cache: &'c mut Cache,
        pos: usize,
        append: bool,
    },
    /// One token per sequence: token `i` follows, and is appended to, the `i`th cache.
    Each(&'m mut [&'c mut Cache]),
}

impl After<'_, '_> {
    /// Layer `l`'s attention for the pass's queries, keys and values (`qkv`, each
    /// `[token][...]`), into `out`; the keys and values are appended where they belong first.
    fn attend(
        &mut self,
        l: usize,
        c: &Config,
        pass: &Pass,
        (q, k, v): (&[f32], &[f32], &[f32]),
        out: &mut [f32],
    ) -> Result<(), LocalError> {
        let kv_dim = c.kv_dim();
        let held = |cache: &Cache, pos: usize| {
            let have = cache.keys[l].len();
            if have == pos * kv_dim {
                Ok(())
            } else {
                Err(LocalError::Inference(format!(
                    "the cache holds {} positions, not {pos}",
                    have / kv_dim
                )))
            }
        };
        match self {
            After::One { cache, pos, append } => {
                held(cache, *pos)?;
                let prior = *pos * kv_dim;
                let (keys, values) = (&mut cache.keys[l], &mut cache.values[l]);
                if *append {
                    keys.extend_from_slice(k);
                    values.extend_from_slice(v);
                }
                let cached = (&keys[..prior], &values[..prior]);
                attention(c, q, cached, (k, v), &pass.seen, out);
            }
            After::Each(caches) => {
                let (dim, hd) = (c.dim, c.head_dim);
                debug_assert_eq!(caches.len() * dim, out.len());
                for (i, cache) in caches.iter_mut().enumerate() {
                    let pos = pass.positions[i];
                    held(cache, pos)?;
                    let (ki, vi) = (&k[i * kv_dim..][..kv_dim], &v[i * kv_dim..][..kv_dim]);
                    cache.keys[l].extend_from_slice(ki);
                    cache.values[l].extend_from_slice(vi);
                    let prior = pos * kv_dim;
                    let cached = (&cache.keys[l][..prior], &cache.values[l][..prior]);
                    let (qi, oi) = (&q[i * dim..][..dim], &mut out[i * dim..][..dim]);
                    attention(c, qi, cached, (ki, vi), &pass.seen, oi);
                    debug_assert_eq!(oi.len() / hd, c.n_head);
                }
            }
        }
        Ok(())
    }
}

/// Which tokens of its own pass a token attends to (besides every cached position).
enum Seen<'a> {
    /// Consecutive tokens: token `t` sees tokens `0..=t` (the list holds `0..seq`).
    Causal(Vec<usize>),
    /// A tree: token `t` sees the nodes on its path from the root, itself last.
    Paths(&'a [Vec<usize>]),
}

impl Seen<'_> {
    fn of(&self, t: usize) -> &[usize] {
        match self {
            Seen::Causal(all) => &all[..=t],
            Seen::Paths(paths) => &paths[t],
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

/// Attention of the queries `q` (`[token][head][head_dim]`) over every cached position, then
/// over the tokens of their own pass that `seen` lets each see, in that order; query head `h`
/// reads key/value head `h / group`. `cached` and `fresh` are keys and values, `[position][kv
/// head][head_dim]`.
fn attention(
    c: &Config,
    q: &[f32],
    cached: (&[f32], &[f32]),
    fresh: (&[f32], &[f32]),
    seen: &Seen,
    out: &mut [f32],
) {
    let hd = c.head_dim;
    let kv_dim = c.kv_dim();
    let group = c.n_head / c.n_kv_head;
    let scale = 1.0 / (hd as f32).sqrt();
    let prior = cached.0.len() / kv_dim;
    let one = |item: usize, out: &mut [f32], scores: &mut Vec<f32>| {
        let (t, head) = (item / c.n_head, item % c.n_head);
        let kv = (head / group) * hd;
        let query = &q[item * hd..(item + 1) * hd];
        let own = seen.of(t);
        let key = |keys: &[f32], p: usize| dot(query, &keys[p * kv_dim + kv..][..hd]) * scale;
        scores.clear();
        scores.extend((0..prior).map(|p| key(cached.0, p)));
        scores.extend(own.iter().map(|&p| key(fresh.0, p)));
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        out.fill(0.0);
        let (before, after) = scores.split_at(prior);
        for (p, &s) in before.iter().enumerate() {
            axpy(s / sum, &cached.1[p * kv_dim + kv..][..hd], out);
        }
        for (&p, &s) in own.iter().zip(after) {
            axpy(s / sum, &fresh.1[p * kv_dim + kv..][..hd], out);
        }
    };
    let items = out.len() / hd;
    // Only a few heads over a few positions are not worth handing to other threads. A
    // decoding step's heads are: at 4096 here, decoding after a 180-token prompt ran 84–87
    // tok/s on 2 threads; at 256, 99–103 (64 gained nothing more).
    if items * (prior + 1) < 256 {
        let mut scores = Vec::with_capacity(prior + 1);
        for (item, o) in out.chunks_exact_mut(hd).enumerate() {
            one(item, o, &mut scores);
        }
    } else {
        out.par_chunks_mut(hd).enumerate().for_each_init(
            || Vec::with_capacity(prior + items / c.n_head),
            |scores, (item, o)| one(item, o, scores),
        );
    }
}
