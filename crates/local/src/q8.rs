//! Batched Q8_0 matrix products for prompt chunks.
//!
//! candle's `QMatMul` multiplies a Q8_0 weight by each row of the input in turn, and its fast
//! repacked path needs widths that are multiples of 256, which SmolLM2's 576 is not. Here the
//! input rows are quantised to Q8_0 once (as candle does), and each pair of weight rows is
//! loaded once and multiplied against four input rows at a time, so a weight block is read once
//! per four tokens rather than once per token. Weight rows are split across candle's own
//! thread pool. The arithmetic is candle's: per block, an exact `i32` dot product scaled by the
//! product of the two block scales, summed in `f32`.

use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Result;

/// Values per Q8_0 block.
const QK: usize = 32;
/// Bytes per Q8_0 block: an `f16` scale, then 32 `i8` values.
const BLOCK_BYTES: usize = 2 + QK;
/// Input rows multiplied together against each weight block.
const TOKENS: usize = 4;
/// Weight rows multiplied together against each input block.
const ROWS: usize = 2;

/// A Q8_0 weight matrix, read in place from candle's tensor, its block scales widened once.
pub(crate) struct Q8Weights {
    tensor: Arc<QTensor>,
    /// `rows × cols / 32` block scales as `f32`.
    scales: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// Rows of the input quantised to Q8_0: values and per-block scales, split apart.
struct Q8Rows {
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8Weights {
    /// The weights of `tensor` if it is a Q8_0 matrix on whole blocks, else `None`.
    pub(crate) fn new(tensor: Arc<QTensor>) -> Result<Option<Self>> {
        if tensor.dtype() != GgmlDType::Q8_0 {
            return Ok(None);
        }
        let Ok((rows, cols)) = tensor.shape().dims2() else {
            return Ok(None);
        };
        if cols == 0 || !cols.is_multiple_of(QK) {
            return Ok(None);
        }
        let data = tensor.data()?;
        if data.len() != rows * cols / QK * BLOCK_BYTES {
            candle_core::bail!("Q8_0 tensor of {} bytes for {rows}×{cols}", data.len());
        }
        let scales = data
            .chunks_exact(BLOCK_BYTES)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        drop(data);
        Ok(Some(Self {
            tensor,
            scales,
            rows,
            cols,
        }))
    }

    /// `x · Wᵀ` for the `x.len() / cols` rows of `x`: `[token][row]`.
    pub(crate) fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (n, k) = (self.rows, self.cols);
        if !x.len().is_multiple_of(k) {
            candle_core::bail!("input of {} values for {k} columns", x.len());
        }
        let m = x.len() / k;
        let xq = quantize_rows(x, k);
        let data = self.tensor.data()?;
        let row_bytes = k / QK * BLOCK_BYTES;
        // Transposed result, `[row][token]`, so each task writes one contiguous slice.
        let mut out_t = vec![0f32; n * m];
        // candle's barrier pool runs its own products too: sharing it keeps a second set of
        // threads from competing with its spinning workers on a small machine.
        let pool = candle_core::utils::barrier_pool();
        let threads = pool.n_workers() + 1;
        let chunk_rows = n.div_ceil(threads * 8).next_multiple_of(ROWS).max(ROWS);
        let chunks: Vec<Mutex<&mut [f32]>> =
            out_t.chunks_mut(chunk_rows * m).map(Mutex::new).collect();
        pool.execute_chunked(chunks.len(), |range| {
            for c in range {
                let Ok(mut out) = chunks[c].lock() else {
                    continue;
                };
                let r0 = c * chunk_rows;
                let rows = out.len() / m;
                let w = &data[r0 * row_bytes..(r0 + rows) * row_bytes];
                let ws = &self.scales[r0 * k / QK..(r0 + rows) * k / QK];
                rows_times_tokens(w, ws, &xq, k, m, &mut out);
            }
        });
        drop(chunks);
        let mut out = vec![0f32; m * n];
        for (r, col) in out_t.chunks_exact(m).enumerate() {
            for (t, v) in col.iter().enumerate() {
                out[t * n + r] = *v;
            }
        }
        Ok(out)
    }
}

/// Quantise each `k`-long row of `x` to Q8_0 the way candle does: scale `max|x| / 127` (kept
/// at `f16` precision), values rounded to the nearest integer.
fn quantize_rows(x: &[f32], k: usize) -> Q8Rows {
    let mut values = Vec::with_capacity(x.len());
    let mut scales = Vec::with_capacity(x.len() / QK);
    debug_assert!(k.is_multiple_of(QK));
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        scales.push(f16_to_f32(f32_to_f16(d)));
        values.extend(block.iter().map(|v| (v * id).round() as i8));
    }
    Q8Rows { values, scales }
}

/// Products of the weight rows `w` (raw Q8_0 blocks; scales `ws`) with every row of `x`,
/// written to `out` as `[row][token]`.
fn rows_times_tokens(w: &[u8], ws: &[f32], x: &Q8Rows, k: usize, m: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { avx2::rows_times_tokens(w, ws, x, k, m, out) };
        return;
    }
    scalar_rows_times_tokens(w, ws, x, k, m, out);
}

/// Portable version of [`rows_times_tokens`]; the reference the SIMD version is tested against.
fn scalar_rows_times_tokens(w: &[u8], ws: &[f32], x: &Q8Rows, k: usize, m: usize, out: &mut [f32]) {
    let nb = k / QK;
    let row_bytes = nb * BLOCK_BYTES;
    for (r, out) in out.chunks_exact_mut(m).enumerate() {
        let wrow = &w[r * row_bytes..(r + 1) * row_bytes];
        for (t, o) in out.iter_mut().enumerate() {
            let mut acc = 0f32;
            for b in 0..nb {
                let wq = &wrow[b * BLOCK_BYTES + 2..(b + 1) * BLOCK_BYTES];
                let xq = &x.values[t * k + b * QK..t * k + (b + 1) * QK];
                let dot: i32 = wq
                    .iter()
                    .zip(xq)
                    .map(|(a, b)| i32::from(*a as i8) * i32::from(*b))
                    .sum();
                acc += dot as f32 * (ws[r * nb + b] * x.scales[t * nb + b]);
            }
            *o = acc;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Q8Rows, BLOCK_BYTES, QK, ROWS, TOKENS};

    /// AVX2 version of [`super::scalar_rows_times_tokens`].
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA. Every memory access is bounds-checked by slicing
    /// before the unaligned loads in [`tile`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_times_tokens(
        w: &[u8],
        ws: &[f32],
        x: &Q8Rows,
        k: usize,
        m: usize,
        out: &mut [f32],
    ) {
        let nb = k / QK;
        let row_bytes = nb * BLOCK_BYTES;
        let rows = out.len() / m;
        let mut r = 0;
        while r < rows {
            let nr = (rows - r).min(ROWS);
            let mut t = 0;
            while t < m {
                let nt = if m - t >= TOKENS { TOKENS } else { 1 };
                let wr = &w[r * row_bytes..(r + nr) * row_bytes];
                let wsr = &ws[r * nb..(r + nr) * nb];
                let xv = &x.values[t * k..(t + nt) * k];
                let xs = &x.scales[t * nb..(t + nt) * nb];
                // SAFETY: AVX2 and FMA are available (this function's contract).
                let sums = unsafe {
                    match (nr == ROWS, nt == TOKENS) {
                        (true, true) => tile::<ROWS, TOKENS>(wr, wsr, xv, xs, nb),
                        (true, false) => tile::<ROWS, 1>(wr, wsr, xv, xs, nb),
                        (false, true) => tile::<1, TOKENS>(wr, wsr, xv, xs, nb),
                        (false, false) => tile::<1, 1>(wr, wsr, xv, xs, nb),
                    }
                };
                for (i, row) in sums.iter().take(nr).enumerate() {
                    out[(r + i) * m + t..(r + i) * m + t + nt].copy_from_slice(&row[..nt]);
                }
                t += nt;
            }
            r += nr;
        }
    }

    /// Dot products of `R` weight rows with `T` input rows, `nb` blocks each.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA. The slices must hold at least `R` (weights) and `T`
    /// (inputs) rows of `nb` blocks; this is asserted, so the raw loads stay in bounds.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize, const T: usize>(
        w: &[u8],
        ws: &[f32],
        xv: &[i8],
        xs: &[f32],
        nb: usize,
    ) -> [[f32; TOKENS]; ROWS] {
        assert!(R <= ROWS && T <= TOKENS);
        assert!(w.len() >= R * nb * BLOCK_BYTES && ws.len() >= R * nb);
        assert!(xv.len() >= T * nb * QK && xs.len() >= T * nb);
        let k = nb * QK;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            let mut wq = [_mm256_setzero_si256(); R];
            let mut wd = [_mm256_setzero_ps(); R];
            for i in 0..R {
                // SAFETY: block `b` of row `i` ends at (i * nb + b + 1) * BLOCK_BYTES <= w.len();
                // the 32 values start 2 bytes into it.
                wq[i] = unsafe {
                    _mm256_loadu_si256(w.as_ptr().add((i * nb + b) * BLOCK_BYTES + 2).cast())
                };
                wd[i] = _mm256_set1_ps(ws[i * nb + b]);
            }
            for j in 0..T {
                // SAFETY: block `b` of input row `j` is 32 values ending at
                // j * k + (b + 1) * 32 <= xv.len().
                let xq = unsafe { _mm256_loadu_si256(xv.as_ptr().add(j * k + b * QK).cast()) };
                let xd = _mm256_set1_ps(xs[j * nb + b]);
                for i in 0..R {
                    // |w| as unsigned times x with w's sign: the i8 product, as pairs of i16.
                    // Q8_0 values lie in -127..=127, so a pair sum never saturates.
                    let p16 = _mm256_maddubs_epi16(
                        _mm256_sign_epi8(wq[i], wq[i]),
                        _mm256_sign_epi8(xq, wq[i]),
                    );
                    let p32 = _mm256_madd_epi16(p16, ones);
                    let d = _mm256_mul_ps(wd[i], xd);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), d, acc[i][j]);
                }
            }
        }
        let mut sums = [[0f32; TOKENS]; ROWS];
        for i in 0..R {
            for j in 0..T {
                let mut lanes = [0f32; 8];
                // SAFETY: `lanes` holds exactly 8 f32s.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[i][j]) };
                sums[i][j] = lanes.iter().sum();
            }
        }
        sums
    }
}

/// `f16` bits to `f32`.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man × 2⁻²⁴.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// `f32` to `f16` bits, rounding to nearest even (the scales here are finite and non-negative).
fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let a = v.abs();
    if a.is_nan() {
        return sign | 0x7e00;
    }
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    if a < f32::from_bits(0x3880_0000) {
        // Below the smallest normal f16 (2⁻¹⁴): a multiple of 2⁻²⁴, rounded half to even.
        let q = a * f32::from_bits(0x4b80_0000);
        return sign | q.round_ties_even() as u16;
    }
    let abits = a.to_bits();
    let exp = (abits >> 23) as i32 - 127 + 15;
    let man = abits & 0x7f_ffff;
    let mut h = ((exp as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Tensor};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn f16_round_trips() {
        for (v, h) in [
            (0.0, 0),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (6.103_515_6e-5, 0x0400),
            (5.960_464_5e-8, 0x0001),
        ] {
            assert_eq!(f32_to_f16(v), h, "{v}");
            assert_eq!(f16_to_f32(h), v, "{h:#x}");
        }
        assert_eq!(f32_to_f16(0.333_333_34), 0x3555);
        // Halfway between 1 and the next f16 rounds to even (down); just above rounds up.
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 1.5 / 2048.0), 0x3c01);
    }

    /// Random Q8_0 weights of `n × k`, through candle's own quantiser.
    fn weights(n: usize, k: usize) -> Arc<QTensor> {
        let w = Tensor::from_vec(values(n * k, 7), (n, k), &Device::Cpu).unwrap();
        Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap())
    }

    #[test]
    fn simd_matches_scalar_on_ragged_tiles() {
        let (n, k, m) = (7, 96, 6);
        let w = Q8Weights::new(weights(n, k)).unwrap().unwrap();
        let x = quantize_rows(&values(m * k, 3), k);
        let data = w.tensor.data().unwrap();
        let mut simd = vec![0f32; n * m];
        let mut scalar = vec![0f32; n * m];
        rows_times_tokens(&data, &w.scales, &x, k, m, &mut simd);
        scalar_rows_times_tokens(&data, &w.scales, &x, k, m, &mut scalar);
        for (a, b) in simd.iter().zip(&scalar) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn matches_candle_qmatmul() {
        let (n, k, m) = (10, 576, 9);
        let t = weights(n, k);
        let ours = Q8Weights::new(t.clone()).unwrap().unwrap();
        let x = values(m * k, 11);
        let got = ours.forward(&x).unwrap();
        let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
        let theirs = candle_core::quantized::QMatMul::from_arc(t).unwrap();
        let want: Vec<f32> = theirs
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn other_types_are_left_to_candle() {
        let w = Tensor::from_vec(values(4 * 32, 5), (4, 32), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        assert!(Q8Weights::new(Arc::new(q)).unwrap().is_none());
    }
}
