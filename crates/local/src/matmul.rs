//! `f32` matrix products `x · Wᵀ + b` for the sentence encoder ([`crate::bert`]).
//!
//! Weights are PyTorch's `[out][in]` rows, so every output is a dot product of two contiguous
//! rows. Four input rows are multiplied by two weight rows at a time: each weight chunk loaded
//! serves four tokens and each input chunk two outputs, eight independent accumulators. On x86
//! with AVX2 and FMA (checked at run time, so the binary still runs on machines without them)
//! the tile uses those instructions; elsewhere a portable version of the same tile, which the
//! compiler vectorises with what the target has. Blocks of tokens are split across the current
//! rayon pool.

use rayon::prelude::*;

/// Input rows multiplied together.
const TOKENS: usize = 4;
/// Lanes summed independently in the portable tile.
const LANES: usize = 8;

/// Which tile computes the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// The portable tile, on every target.
    Portable,
    /// AVX2 and FMA intrinsics (x86_64 only; never chosen where the CPU lacks them).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The fastest tile this CPU runs.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }
}

/// `out[t][o] = bias[o] + Σ_i x[t][i] · w[o][i]` for `x` of `m × k` and `w` of `n × k`, where
/// `n = bias.len()`; `out` is `m × n`.
pub(crate) fn linear(
    kernel: Kernel,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    k: usize,
    out: &mut [f32],
) {
    let n = bias.len();
    assert!(
        k > 0 && x.len().is_multiple_of(k) && w.len() == n * k && out.len() == x.len() / k * n,
        "linear: {} inputs, {} weights, {} biases, {} outputs for width {k}",
        x.len(),
        w.len(),
        n,
        out.len()
    );
    out.par_chunks_mut(TOKENS * n)
        .zip(x.par_chunks(TOKENS * k))
        .for_each(|(out, x)| block(kernel, x, w, bias, k, out));
}

/// Up to [`TOKENS`] rows of `x` against every row of `w`.
fn block(kernel: Kernel, x: &[f32], w: &[f32], bias: &[f32], k: usize, out: &mut [f32]) {
    let rows = x.len() / k;
    // A short last block is padded with zero rows, so one tile shape serves every block.
    let padded;
    let x = if rows < TOKENS {
        let mut p = vec![0f32; TOKENS * k];
        p[..x.len()].copy_from_slice(x);
        padded = p;
        &padded[..]
    } else {
        x
    };
    let n = bias.len();
    let pairs = n / 2 * 2;
    let mut tile = [[0f32; 2]; TOKENS];
    for o in (0..pairs).step_by(2) {
        let (w0, w1) = (&w[o * k..(o + 1) * k], &w[(o + 1) * k..(o + 2) * k]);
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Avx2` is only made by `detect` on a CPU that has AVX2 and FMA.
            Kernel::Avx2 if k.is_multiple_of(8) => unsafe { tile_avx2(x, w0, w1, k, &mut tile) },
            _ => tile_portable(x, w0, w1, k, &mut tile),
        }
        for (t, sums) in tile.iter().enumerate().take(rows) {
            out[t * n + o] = sums[0] + bias[o];
            out[t * n + o + 1] = sums[1] + bias[o + 1];
        }
    }
    if pairs < n {
        let wl = &w[pairs * k..];
        for t in 0..rows {
            out[t * n + pairs] = crate::kernels::dot(&x[t * k..(t + 1) * k], wl) + bias[pairs];
        }
    }
}

/// Dot products of four rows of `x` with `w0` and `w1`, in portable code.
fn tile_portable(x: &[f32], w0: &[f32], w1: &[f32], k: usize, tile: &mut [[f32; 2]; TOKENS]) {
    let mut acc = [[[0f32; LANES]; 2]; TOKENS];
    let whole = k / LANES * LANES;
    for i in (0..whole).step_by(LANES) {
        let (a0, a1) = (&w0[i..i + LANES], &w1[i..i + LANES]);
        for (t, acc) in acc.iter_mut().enumerate() {
            let xv = &x[t * k + i..t * k + i + LANES];
            for l in 0..LANES {
                acc[0][l] += xv[l] * a0[l];
                acc[1][l] += xv[l] * a1[l];
            }
        }
    }
    for (t, sums) in tile.iter_mut().enumerate() {
        for (j, w) in [w0, w1].into_iter().enumerate() {
            let tail: f32 = (whole..k).map(|i| x[t * k + i] * w[i]).sum();
            sums[j] = acc[t][j].iter().sum::<f32>() + tail;
        }
    }
}

/// [`tile_portable`] with AVX2 and FMA; `k` is a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(x: &[f32], w0: &[f32], w1: &[f32], k: usize, tile: &mut [[f32; 2]; TOKENS]) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= TOKENS * k && w0.len() == k && w1.len() == k);
    let (xp, p0, p1) = (x.as_ptr(), w0.as_ptr(), w1.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 2 * TOKENS];
    let mut i = 0;
    while i < k {
        // SAFETY (all loads): i + 8 <= k, and x holds TOKENS rows of k values.
        let a0 = _mm256_loadu_ps(p0.add(i));
        let a1 = _mm256_loadu_ps(p1.add(i));
        for t in 0..TOKENS {
            let xv = _mm256_loadu_ps(xp.add(t * k + i));
            acc[2 * t] = _mm256_fmadd_ps(xv, a0, acc[2 * t]);
            acc[2 * t + 1] = _mm256_fmadd_ps(xv, a1, acc[2 * t + 1]);
        }
        i += 8;
    }
    for (t, sums) in tile.iter_mut().enumerate() {
        for (j, sum) in sums.iter_mut().enumerate() {
            let v = acc[2 * t + j];
            let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
            let one = _mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1));
            *sum = _mm_cvtss_f32(one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product as a plain triple loop in `f64`.
    fn reference(x: &[f32], w: &[f32], bias: &[f32], k: usize) -> Vec<f32> {
        let n = bias.len();
        let m = x.len() / k;
        let mut out = vec![0f32; m * n];
        for t in 0..m {
            for o in 0..n {
                let s: f64 = (0..k)
                    .map(|i| f64::from(x[t * k + i]) * f64::from(w[o * k + i]))
                    .sum();
                out[t * n + o] = (s + f64::from(bias[o])) as f32;
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn check(kernel: Kernel, m: usize, n: usize, k: usize) {
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let mut out = vec![f32::NAN; m * n];
        linear(kernel, &x, &w, &b, k, &mut out);
        let expected = reference(&x, &w, &b, k);
        for (i, (a, e)) in out.iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() < 1e-3,
                "{kernel:?} {m}×{n}×{k}: output {i} is {a}, expected {e}"
            );
        }
    }

    /// Odd sizes cover the padded last block of tokens, an unpaired weight row and a width
    /// that is not a multiple of the lanes.
    #[test]
    fn portable_tile_matches_the_reference() {
        for (m, n, k) in [(1, 2, 8), (5, 7, 19), (8, 6, 384), (3, 1, 3)] {
            check(Kernel::Portable, m, n, k);
        }
    }

    #[test]
    fn detected_tile_matches_the_reference() {
        for (m, n, k) in [(1, 2, 8), (5, 7, 19), (8, 6, 384), (13, 33, 40)] {
            check(Kernel::detect(), m, n, k);
        }
    }
}
