//! Q8_0 matrix products `x · Wᵀ`: one token at a time while decoding, and prompt chunks.
//!
//! The input rows are quantised to Q8_0 as ggml does (per block of 32, an `f16` scale
//! `max|x| / 127` and the values rounded), then every output is a sum over blocks of an exact
//! integer dot product scaled by the product of the two block scales. On x86 with AVX2 and FMA
//! (checked at run time) the products run on those instructions, with AVX-512 VNNI's byte dot
//! product where the CPU has it ([`Simd`]); elsewhere a portable version computes the very
//! same numbers, lane for lane, and is what the SIMD versions are tested against.
//!
//! Each block's 32 products are summed in eight lanes of four, and each lane accumulates its
//! blocks with a fused multiply-add; the lanes are then added up. Decoding adds them pairwise
//! and prompt chunks one after another: the orders of the products the model's behaviour was
//! pinned with (`crate::pinned`), so its logits are the recorded ones to the bit.
//!
//! A prompt chunk multiplies two weight rows (four with VNNI, whose AVX-512VL has 32 vector
//! registers) against four input rows at a time, so a weight block is read once per four tokens
//! and an input block once per two or four rows; decoding walks four weight rows against the one
//! input row. Weight rows are split across the current rayon pool.

use rayon::prelude::*;

use crate::quant::{f16_to_f32, f32_to_f16, q8_0_scale, round_to_i8, Q8_0_BYTES, QK};

/// Input rows multiplied together against each weight block (prompt chunks).
const TOKENS: usize = 4;
/// Weight rows multiplied together against the one input row (decoding).
const DECODE_ROWS: usize = 4;

/// A Q8_0 weight matrix, its block scales widened once.
pub(crate) struct Q8Weights {
    /// `rows × cols / 32` blocks of [`Q8_0_BYTES`].
    data: Vec<u8>,
    /// The block scales as `f32`.
    scales: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// Rows of the input quantised to Q8_0: values and per-block scales, split apart.
struct Q8Rows {
    values: Vec<i8>,
    scales: Vec<f32>,
}

/// How the eight lanes of a dot product are added up at the end: the one difference between a
/// decoding step's arithmetic and a prompt chunk's. The caller says which, so a row's result
/// never depends on how many rows share the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneSum {
    /// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`: decoding.
    Pairwise,
    /// `l0 + l1 + … + l7`: prompt chunks.
    InOrder,
}

impl Q8Weights {
    /// The weights of `data`, a `rows × cols` matrix of Q8_0 blocks.
    pub(crate) fn new(data: Vec<u8>, rows: usize, cols: usize) -> Result<Self, String> {
        if cols == 0 || !cols.is_multiple_of(QK) {
            return Err(format!("a Q8_0 matrix of {cols} columns, not whole blocks"));
        }
        if data.len() != rows * cols / QK * Q8_0_BYTES {
            return Err(format!(
                "Q8_0 data of {} bytes for {rows}×{cols}",
                data.len()
            ));
        }
        let scales = data
            .chunks_exact(Q8_0_BYTES)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        Ok(Self {
            data,
            scales,
            rows,
            cols,
        })
    }

    /// The number of output rows.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The number of input columns.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r` as `f32` (for embedding lookups): each value times its block's scale.
    pub(crate) fn row(&self, r: usize, out: &mut Vec<f32>) {
        let row_bytes = self.cols / QK * Q8_0_BYTES;
        let blocks = self.data[r * row_bytes..(r + 1) * row_bytes].chunks_exact(Q8_0_BYTES);
        for (b, &d) in blocks.zip(&self.scales[r * self.cols / QK..]) {
            out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d));
        }
    }

    /// `x · Wᵀ` for the `x.len() / cols` rows of `x` (a whole number of them): `[token][row]`,
    /// each sum's lanes added up as `sums` says.
    pub(crate) fn forward(&self, x: &[f32], sums: LaneSum) -> Vec<f32> {
        let (n, k) = (self.rows, self.cols);
        debug_assert!(x.len().is_multiple_of(k));
        let m = x.len() / k;
        let xq = quantize_rows(x);
        let row_bytes = k / QK * Q8_0_BYTES;
        let threads = rayon::current_num_threads();
        let mut out = vec![0f32; m * n];
        let target = Target::new(&mut out, n, m);
        let products = |r0: usize, rows: usize| {
            let w = &self.data[r0 * row_bytes..(r0 + rows) * row_bytes];
            let ws = &self.scales[r0 * k / QK..(r0 + rows) * k / QK];
            rows_times_tokens(w, ws, &xq, k, target.rows(r0, rows), sums);
        };
        let chunk_rows = n
            .div_ceil(threads * 8)
            .next_multiple_of(DECODE_ROWS)
            .max(DECODE_ROWS);
        if threads == 1 || n <= chunk_rows {
            products(0, n);
        } else {
            (0..n.div_ceil(chunk_rows))
                .into_par_iter()
                .for_each(|c| products(c * chunk_rows, chunk_rows.min(n - c * chunk_rows)));
        }
        out
    }
}

/// The `m × n` result, `[token][row]`, written in place by tasks that each own a range of
/// rows: a task's values are strided, so no slice could hand them out, and writing them where
/// they belong spares a transposition (without it a prompt read 17% faster).
#[derive(Clone, Copy)]
struct Target<'a> {
    ptr: *mut f32,
    n: usize,
    m: usize,
    /// The rows this target may write: `first..first + rows`.
    first: usize,
    rows: usize,
    _buffer: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: a `Target` is a handle on rows of a buffer borrowed mutably for `'a`; the tasks that
// share one get disjoint row ranges from `rows`, so no element is written by two threads.
unsafe impl Send for Target<'_> {}
// SAFETY: as for `Send`: writes go only to the target's own rows.
unsafe impl Sync for Target<'_> {}

impl<'a> Target<'a> {
    /// The whole of `out`, an `m × n` matrix.
    fn new(out: &'a mut [f32], n: usize, m: usize) -> Self {
        assert_eq!(out.len(), m * n, "an {m} × {n} result");
        Self {
            ptr: out.as_mut_ptr(),
            n,
            m,
            first: 0,
            rows: n,
            _buffer: std::marker::PhantomData,
        }
    }

    /// Rows `first..first + rows` of this target. The caller hands each range to one task.
    fn rows(&self, first: usize, rows: usize) -> Self {
        assert!(
            first + rows <= self.rows,
            "rows {first}+{rows} of {}",
            self.rows
        );
        Self {
            first: self.first + first,
            rows,
            ..*self
        }
    }

    /// Tokens in the result.
    fn tokens(&self) -> usize {
        self.m
    }

    /// Set row `row` (of this target's rows) of token `token`.
    #[inline]
    fn set(&self, row: usize, token: usize, value: f32) {
        assert!(row < self.rows && token < self.m);
        // SAFETY: `first + row < n` and `token < m`, so the index lies inside the `m × n`
        // buffer, which outlives `'a`; the row is this target's alone (see `rows`).
        unsafe { *self.ptr.add(token * self.n + self.first + row) = value };
    }
}

/// Quantise each row of `x` (whole Q8_0 blocks) as ggml does: scale `max|x| / 127` (used at
/// `f16` precision), values rounded to the nearest integer.
fn quantize_rows(x: &[f32]) -> Q8Rows {
    let mut values = Vec::with_capacity(x.len());
    let mut scales = Vec::with_capacity(x.len() / QK);
    for block in x.chunks_exact(QK) {
        let (d, id) = q8_0_scale(block);
        scales.push(f16_to_f32(f32_to_f16(d)));
        values.extend(block.iter().map(|v| round_to_i8(v * id)));
    }
    Q8Rows { values, scales }
}

/// The instructions the products run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Simd {
    /// Plain Rust, on every target: what the others are tested against.
    Portable,
    /// x86-64 AVX2, FMA and F16C.
    Avx2,
    /// x86-64 AVX2 and FMA, with AVX-512 VNNI's byte dot products on 256-bit registers (and
    /// AVX-512VL's 32 of them).
    Vnni,
}

/// A cap on [`Simd`] set by [`cap_simd`]: 0 for none, else the cap's discriminant plus one.
static SIMD_CAP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Run the products on at most `cap` from now on, or on the fastest again (`None`): how a test
/// forces the portable path. Every path computes the same numbers to the bit, so this changes
/// only the speed, for whatever else the process runs meanwhile too.
#[cfg(test)]
pub(crate) fn cap_simd(cap: Option<Simd>) {
    let value = cap.map_or(0, |s| s as u8 + 1);
    SIMD_CAP.store(value, std::sync::atomic::Ordering::Relaxed);
}

/// The fastest [`Simd`] this CPU runs, capped by `SHOPFLOOR_LOCAL_SIMD` (`portable`, `avx2`
/// or `vnni`: for comparing them, or for a CPU that misreports a feature) and by
/// [`cap_simd`].
pub(crate) fn simd() -> Simd {
    static DETECTED: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    let detected = *DETECTED.get_or_init(|| {
        let cap = match std::env::var("SHOPFLOOR_LOCAL_SIMD").as_deref() {
            Ok("portable") => Simd::Portable,
            Ok("avx2") => Simd::Avx2,
            _ => Simd::Vnni,
        };
        detect().min(cap)
    });
    match SIMD_CAP.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Simd::Portable,
        2 => detected.min(Simd::Avx2),
        _ => detected,
    }
}

fn detect() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") && has!("f16c") {
            if has!("avx512vnni") && has!("avx512vl") {
                return Simd::Vnni;
            }
            return Simd::Avx2;
        }
    }
    Simd::Portable
}

/// Products of the weight rows `w` (raw Q8_0 blocks; scales `ws`) with every row of `x`,
/// written to `out`, each sum's lanes added up as `sums` says.
fn rows_times_tokens(w: &[u8], ws: &[f32], x: &Q8Rows, k: usize, out: Target, sums: LaneSum) {
    match simd() {
        // SAFETY: `simd` says Vnni only where the CPU has AVX2, FMA, F16C, AVX-512 VNNI and VL.
        #[cfg(target_arch = "x86_64")]
        Simd::Vnni => unsafe { simd::vnni::rows_times_tokens(w, ws, x, k, out, sums) },
        // SAFETY: `simd` says Avx2 only where the CPU has AVX2, FMA and F16C.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { simd::avx2::rows_times_tokens(w, ws, x, k, out, sums) },
        _ => portable_rows_times_tokens(w, ws, x, k, out, sums),
    }
}

/// The lane sums a block contributes: lane `l` holds the products of values `4l..4l + 4`.
fn block_lanes(w: &[u8], x: &[i8]) -> [f32; 8] {
    let mut lanes = [0f32; 8];
    for (l, lane) in lanes.iter_mut().enumerate() {
        let sum: i32 = (4 * l..4 * l + 4)
            .map(|j| i32::from(w[j] as i8) * i32::from(x[j]))
            .sum();
        *lane = sum as f32;
    }
    lanes
}

fn sum_lanes(lanes: [f32; 8], order: LaneSum) -> f32 {
    match order {
        LaneSum::Pairwise => {
            let a: [f32; 4] = std::array::from_fn(|i| lanes[i] + lanes[i + 4]);
            (a[0] + a[2]) + (a[1] + a[3])
        }
        LaneSum::InOrder => lanes.iter().sum(),
    }
}

/// Portable version of [`rows_times_tokens`], the same arithmetic in the same order.
fn portable_rows_times_tokens(
    w: &[u8],
    ws: &[f32],
    x: &Q8Rows,
    k: usize,
    out: Target,
    sums: LaneSum,
) {
    let nb = k / QK;
    let row_bytes = nb * Q8_0_BYTES;
    let m = out.tokens();
    for r in 0..out.rows {
        let wrow = &w[r * row_bytes..(r + 1) * row_bytes];
        for t in 0..m {
            let mut acc = [0f32; 8];
            for b in 0..nb {
                let wq = &wrow[b * Q8_0_BYTES + 2..(b + 1) * Q8_0_BYTES];
                let xq = &x.values[t * k + b * QK..t * k + (b + 1) * QK];
                let d = ws[r * nb + b] * x.scales[t * nb + b];
                for (a, q) in acc.iter_mut().zip(block_lanes(wq, xq)) {
                    *a = d.mul_add(q, *a);
                }
            }
            out.set(r, t, sum_lanes(acc, sums));
        }
    }
}

/// The x86-64 products: one body, compiled twice by [`products!`], once for AVX2 and FMA and
/// once with AVX-512 VNNI too. They differ only in how a block's bytes are multiplied (the same
/// 32-bit integers either way) and in how many weight rows a prompt tile holds.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{LaneSum, Q8Rows, Target, DECODE_ROWS, Q8_0_BYTES, QK, TOKENS};

    /// Write the lane sums of a tile, added up as `sums` says, to rows `r + i`, tokens `t + j`
    /// of `out`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn store<const R: usize, const T: usize>(
        acc: [[__m256; T]; R],
        out: Target,
        r: usize,
        t: usize,
        sums: LaneSum,
    ) {
        if sums == LaneSum::Pairwise {
            for (i, row) in acc.iter().enumerate() {
                for (j, a) in row.iter().enumerate() {
                    out.set(r + i, t + j, pairwise(*a));
                }
            }
            return;
        }
        // In order, eight accumulators at a time (accumulator `k` is row `k / T`, token
        // `k % T`): lane `e` of a group's result is its `e`th accumulator's sum.
        for k0 in (0..R * T).step_by(8) {
            let len = (R * T - k0).min(8);
            let mut eight = [_mm256_setzero_ps(); 8];
            for (e, v) in eight.iter_mut().enumerate().take(len) {
                *v = acc[(k0 + e) / T][(k0 + e) % T];
            }
            for (e, sum) in in_order_sums(eight).into_iter().enumerate().take(len) {
                out.set(r + (k0 + e) / T, t + (k0 + e) % T, sum);
            }
        }
    }

    /// `l0 + l1 + … + l7` of each of eight vectors, added in that order (as `Iterator::sum`
    /// does), all eight at once: the vectors are transposed, then the rows added one by one.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn in_order_sums(a: [__m256; 8]) -> [f32; 8] {
        let u = [
            _mm256_unpacklo_ps(a[0], a[1]),
            _mm256_unpackhi_ps(a[0], a[1]),
            _mm256_unpacklo_ps(a[2], a[3]),
            _mm256_unpackhi_ps(a[2], a[3]),
            _mm256_unpacklo_ps(a[4], a[5]),
            _mm256_unpackhi_ps(a[4], a[5]),
            _mm256_unpacklo_ps(a[6], a[7]),
            _mm256_unpackhi_ps(a[6], a[7]),
        ];
        // s[k] holds lane k of a0..a3 in its low half and lane k + 4 in its high half; s[k + 4]
        // the same of a4..a7.
        let s = [
            _mm256_shuffle_ps::<0x44>(u[0], u[2]),
            _mm256_shuffle_ps::<0xEE>(u[0], u[2]),
            _mm256_shuffle_ps::<0x44>(u[1], u[3]),
            _mm256_shuffle_ps::<0xEE>(u[1], u[3]),
            _mm256_shuffle_ps::<0x44>(u[4], u[6]),
            _mm256_shuffle_ps::<0xEE>(u[4], u[6]),
            _mm256_shuffle_ps::<0x44>(u[5], u[7]),
            _mm256_shuffle_ps::<0xEE>(u[5], u[7]),
        ];
        // Row k: lane k of every vector.
        let rows = [
            _mm256_permute2f128_ps::<0x20>(s[0], s[4]),
            _mm256_permute2f128_ps::<0x20>(s[1], s[5]),
            _mm256_permute2f128_ps::<0x20>(s[2], s[6]),
            _mm256_permute2f128_ps::<0x20>(s[3], s[7]),
            _mm256_permute2f128_ps::<0x31>(s[0], s[4]),
            _mm256_permute2f128_ps::<0x31>(s[1], s[5]),
            _mm256_permute2f128_ps::<0x31>(s[2], s[6]),
            _mm256_permute2f128_ps::<0x31>(s[3], s[7]),
        ];
        let mut total = rows[0];
        for row in &rows[1..] {
            total = _mm256_add_ps(total, *row);
        }
        let mut out = [0f32; 8];
        // SAFETY: `out` holds exactly 8 f32s.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), total) };
        out
    }

    /// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))` of the eight lanes of `x`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn pairwise(x: __m256) -> f32 {
        let a = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let b = _mm_add_ps(a, _mm_movehl_ps(a, a));
        _mm_cvtss_f32(_mm_add_ss(b, _mm_movehdup_ps(b)))
    }

    /// Defines `rows_times_tokens` and its `tile` for the target features `$features`, with
    /// `$rows` weight rows per prompt tile and `$dot` the byte products: `$dot!(row w)`
    /// prepares a weight block once per tile, `$dot!(token x)` an input block once per tile,
    /// and `$dot!(pair prepared, w, x)` gives the eight lanes' sums of four byte products.
    macro_rules! products {
        ($features:literal, $dot:ident, $rows:expr) => {
            use std::arch::x86_64::*;

            use super::{
                pairwise, store, LaneSum, Q8Rows, Target, DECODE_ROWS, Q8_0_BYTES, QK, TOKENS,
            };

            /// Weight rows multiplied together against each input block (prompt chunks).
            const ROWS: usize = $rows;

            /// SIMD version of [`super::super::portable_rows_times_tokens`].
            ///
            /// # Safety
            /// The CPU must support the module's features. Every memory access is
            /// bounds-checked by slicing before the unaligned loads in [`tile`].
            #[target_feature(enable = $features)]
            pub(in crate::q8) unsafe fn rows_times_tokens(
                w: &[u8],
                ws: &[f32],
                x: &Q8Rows,
                k: usize,
                out: Target,
                sums: LaneSum,
            ) {
                let nb = k / QK;
                let row_bytes = nb * Q8_0_BYTES;
                let (rows, m) = (out.rows, out.tokens());
                if m == 1 && sums == LaneSum::Pairwise {
                    let mut r = 0;
                    while r < rows {
                        let nr = (rows - r).min(DECODE_ROWS);
                        let wr = &w[r * row_bytes..(r + nr) * row_bytes];
                        let wsr = &ws[r * nb..(r + nr) * nb];
                        // SAFETY: the features are available (this function's contract).
                        let acc = unsafe {
                            match nr {
                                DECODE_ROWS => {
                                    tile::<DECODE_ROWS, 1>(wr, wsr, &x.values, &x.scales, nb)
                                }
                                _ => {
                                    let mut acc = [[_mm256_setzero_ps(); 1]; DECODE_ROWS];
                                    for i in 0..nr {
                                        let wi = &wr[i * row_bytes..(i + 1) * row_bytes];
                                        let wsi = &wsr[i * nb..(i + 1) * nb];
                                        acc[i] = tile::<1, 1>(wi, wsi, &x.values, &x.scales, nb)[0];
                                    }
                                    acc
                                }
                            }
                        };
                        for (i, a) in acc.iter().enumerate().take(nr) {
                            // SAFETY: AVX2 is available.
                            out.set(r + i, 0, unsafe { pairwise(a[0]) });
                        }
                        r += nr;
                    }
                    return;
                }
                let mut r = 0;
                while r < rows {
                    let nr = if rows - r >= ROWS { ROWS } else { 1 };
                    let mut t = 0;
                    while t < m {
                        let nt = if m - t >= TOKENS { TOKENS } else { 1 };
                        let wr = &w[r * row_bytes..(r + nr) * row_bytes];
                        let wsr = &ws[r * nb..(r + nr) * nb];
                        let xv = &x.values[t * k..(t + nt) * k];
                        let xs = &x.scales[t * nb..(t + nt) * nb];
                        // SAFETY: the features are available (this function's contract).
                        unsafe {
                            match (nr == ROWS, nt == TOKENS) {
                                (true, true) => {
                                    store::<ROWS, TOKENS>(tile(wr, wsr, xv, xs, nb), out, r, t, sums)
                                }
                                (true, false) => {
                                    store::<ROWS, 1>(tile(wr, wsr, xv, xs, nb), out, r, t, sums)
                                }
                                (false, true) => {
                                    store::<1, TOKENS>(tile(wr, wsr, xv, xs, nb), out, r, t, sums)
                                }
                                (false, false) => {
                                    store::<1, 1>(tile(wr, wsr, xv, xs, nb), out, r, t, sums)
                                }
                            }
                        }
                        t += nt;
                    }
                    r += nr;
                }
            }

            /// The lane accumulators of `R` weight rows against `T` input rows, `nb` blocks
            /// each.
            ///
            /// # Safety
            /// The CPU must support the module's features. The slices must hold at least `R`
            /// (weights) and `T` (inputs) rows of `nb` blocks; this is asserted, so the raw
            /// loads stay in bounds.
            #[target_feature(enable = $features)]
            unsafe fn tile<const R: usize, const T: usize>(
                w: &[u8],
                ws: &[f32],
                xv: &[i8],
                xs: &[f32],
                nb: usize,
            ) -> [[__m256; T]; R] {
                assert!(w.len() >= R * nb * Q8_0_BYTES && ws.len() >= R * nb);
                assert!(xv.len() >= T * nb * QK && xs.len() >= T * nb);
                let k = nb * QK;
                let mut acc = [[_mm256_setzero_ps(); T]; R];
                for b in 0..nb {
                    let mut wq = [_mm256_setzero_si256(); R];
                    let mut prep = [_mm256_setzero_si256(); R];
                    let mut wd = [_mm256_setzero_ps(); R];
                    for i in 0..R {
                        if T == 1 {
                            // Decoding streams the weights once: ask for the same block of
                            // the next tile's rows now. A hint, never a read: an address past
                            // the matrix is not touched.
                            let ahead = ((2 * R + i) * nb + b) * Q8_0_BYTES;
                            _mm_prefetch::<_MM_HINT_T0>(w.as_ptr().wrapping_add(ahead).cast());
                        }
                        // SAFETY: block `b` of row `i` ends at (i * nb + b + 1) * Q8_0_BYTES
                        // <= w.len(); the 32 values start 2 bytes into it.
                        wq[i] = unsafe {
                            _mm256_loadu_si256(w.as_ptr().add((i * nb + b) * Q8_0_BYTES + 2).cast())
                        };
                        prep[i] = $dot!(row wq[i]);
                        wd[i] = if T == 1 {
                            // Decoding: the block's own f16 scale, in the cache line its values
                            // are in; the widened scales would be a second stream to wait on.
                            let bits = u16::from_le_bytes([
                                w[(i * nb + b) * Q8_0_BYTES],
                                w[(i * nb + b) * Q8_0_BYTES + 1],
                            ]);
                            let scale = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits)));
                            debug_assert_eq!(_mm_cvtss_f32(scale), ws[i * nb + b]);
                            _mm256_broadcastss_ps(scale)
                        } else {
                            _mm256_set1_ps(ws[i * nb + b])
                        };
                    }
                    for j in 0..T {
                        // SAFETY: block `b` of input row `j` is 32 values ending at
                        // j * k + (b + 1) * 32 <= xv.len().
                        let xq = $dot!(token unsafe {
                            _mm256_loadu_si256(xv.as_ptr().add(j * k + b * QK).cast())
                        });
                        let xd = _mm256_set1_ps(xs[j * nb + b]);
                        for i in 0..R {
                            let p32 = $dot!(pair prep[i], wq[i], xq);
                            let d = _mm256_mul_ps(wd[i], xd);
                            acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), d, acc[i][j]);
                        }
                    }
                }
                acc
            }
        };
    }

    /// AVX2: `|w|` as unsigned bytes times `x` with `w`'s sign, as pairs of `i16`, then pairs
    /// of those as `i32`. Q8_0 values lie in -128..=127 and the input's in -127..=127, so a
    /// pair sum never saturates.
    macro_rules! dot_avx2 {
        (row $w:expr) => {
            _mm256_sign_epi8($w, $w)
        };
        (token $x:expr) => {
            $x
        };
        (pair $abs_w:expr, $w:expr, $x:expr) => {
            _mm256_madd_epi16(
                _mm256_maddubs_epi16($abs_w, _mm256_sign_epi8($x, $w)),
                _mm256_set1_epi16(1),
            )
        };
    }

    /// AVX-512 VNNI, which multiplies unsigned bytes by signed ones and adds four products to
    /// each `i32` lane in one instruction: the input shifted to `x + 128` (1..=255, its sign bit
    /// flipped) times `w` is `x · w + 128 · Σw`, so each lane starts from `-128 · Σw` of its
    /// four weights, prepared once per weight block. The same integers as AVX2's.
    macro_rules! dot_vnni {
        (row $w:expr) => {
            _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), $w),
            )
        };
        (token $x:expr) => {
            _mm256_xor_si256($x, _mm256_set1_epi8(-128))
        };
        (pair $minus_128_sum_w:expr, $w:expr, $x:expr) => {
            _mm256_dpbusd_epi32($minus_128_sum_w, $x, $w)
        };
    }

    pub(super) mod avx2 {
        products!("avx2,fma,f16c", dot_avx2, 2);
    }

    pub(super) mod vnni {
        products!("avx2,fma,f16c,avx512f,avx512vnni,avx512vl", dot_vnni, 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn weights(n: usize, k: usize) -> Q8Weights {
        let data = crate::quant::quantize_q8_0(&values(n * k, 7));
        Q8Weights::new(data, n, k).expect("whole blocks")
    }

    /// Each SIMD kernel this CPU runs gives the portable one's numbers exactly, with either
    /// lane sum, for one token and for several, on tiles cut short at both edges (7 rows: a
    /// tile of 4 or 2 and single rows; 6 tokens: a tile of 4 and single tokens).
    #[test]
    fn simd_matches_portable_to_the_bit() {
        let (n, k) = (7, 96);
        let w = weights(n, k);
        for (m, sums) in [1, 6]
            .into_iter()
            .flat_map(|m| [LaneSum::Pairwise, LaneSum::InOrder].map(|sums| (m, sums)))
        {
            let x = quantize_rows(&values(m * k, 3));
            let mut portable = vec![0f32; n * m];
            let target = Target::new(&mut portable, n, m);
            portable_rows_times_tokens(&w.data, &w.scales, &x, k, target, sums);
            #[cfg(target_arch = "x86_64")]
            {
                type Kernel = unsafe fn(&[u8], &[f32], &Q8Rows, usize, Target, LaneSum);
                let kernels: [(Simd, Kernel); 2] = [
                    (Simd::Avx2, simd::avx2::rows_times_tokens),
                    (Simd::Vnni, simd::vnni::rows_times_tokens),
                ];
                for (level, kernel) in kernels {
                    if detect() < level {
                        eprintln!("this CPU lacks {level:?}: not compared");
                        continue;
                    }
                    let mut out = vec![0f32; n * m];
                    let target = Target::new(&mut out, n, m);
                    // SAFETY: the CPU has the kernel's features (checked just above).
                    unsafe { kernel(&w.data, &w.scales, &x, k, target, sums) };
                    assert_eq!(out, portable, "{level:?}, {m} tokens, {sums:?}");
                }
            }
        }
    }

    /// A row's result does not depend on the rows beside it: decoding three tokens in one
    /// product gives each the bits it gets alone.
    #[test]
    fn a_batched_decode_gives_each_row_what_it_gets_alone() {
        let (n, k) = (9, 128);
        let w = weights(n, k);
        let x = values(3 * k, 21);
        let batched = w.forward(&x, LaneSum::Pairwise);
        for t in 0..3 {
            let alone = w.forward(&x[t * k..(t + 1) * k], LaneSum::Pairwise);
            assert_eq!(batched[t * n..(t + 1) * n], alone[..], "token {t}");
        }
    }

    /// Against a plain sum over blocks of exact integer dot products: the same up to the
    /// rounding of the additions.
    #[test]
    fn products_are_blockwise_integer_dots() {
        let (n, k, m) = (10, 576, 9);
        let w = weights(n, k);
        let x = values(m * k, 11);
        let xq = quantize_rows(&x);
        let nb = k / QK;
        let (one, all) = (
            w.forward(&x[..k], LaneSum::Pairwise),
            w.forward(&x, LaneSum::InOrder),
        );
        for (m_used, got) in [(1, one), (m, all)] {
            assert_eq!(got.len(), m_used * n);
            for t in 0..m_used {
                for r in 0..n {
                    let mut want = 0f64;
                    for b in 0..nb {
                        let wb = &w.data[(r * nb + b) * Q8_0_BYTES + 2..][..QK];
                        let xb = &xq.values[t * k + b * QK..][..QK];
                        let dot: i32 = wb
                            .iter()
                            .zip(xb)
                            .map(|(a, b)| i32::from(*a as i8) * i32::from(*b))
                            .sum();
                        let d = w.scales[r * nb + b] * xq.scales[t * nb + b];
                        want += f64::from(dot) * f64::from(d);
                    }
                    let got = got[t * n + r];
                    assert!((f64::from(got) - want).abs() <= 1e-4 * want.abs().max(1.0));
                }
            }
        }
    }

    #[test]
    fn rows_split_across_threads_give_the_same_result() {
        let (n, k) = (203, 64);
        let w = weights(n, k);
        let x = values(3 * k, 5);
        let pool = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
        };
        for x in [&x[..k], &x[..]] {
            let one = pool(1).install(|| w.forward(x, LaneSum::InOrder));
            let three = pool(3).install(|| w.forward(x, LaneSum::InOrder));
            assert_eq!(one, three);
        }
    }

    #[test]
    fn rows_read_back_as_their_blocks_times_scales() {
        let w = weights(3, 64);
        let mut row = Vec::new();
        w.row(2, &mut row);
        let want = crate::quant::dequantize(crate::quant::GgmlType::Q8_0, &w.data[2 * 68..])
            .expect("Q8_0");
        assert_eq!(row, want);
        assert!(Q8Weights::new(vec![0; 34], 1, 16).is_err());
        assert!(Q8Weights::new(vec![0; 33], 1, 32).is_err());
    }
}
