//! ggml's tensor types: their block layouts, dequantisation to `f32` and quantisation to Q8_0.
//!
//! The arithmetic is ggml's reference code (llama.cpp `ggml-quants.c`), so a tensor converted
//! here holds the very bytes llama.cpp would write: per block of 32 values, an `f16` scale
//! `d = max|x| / 127` and the values `round(x / d)`.

/// Values per block of the legacy quantisations (Q4_0 … Q8_1).
pub(crate) const QK: usize = 32;
/// Bytes per Q8_0 block: an `f16` scale, then 32 `i8` values.
pub(crate) const Q8_0_BYTES: usize = 2 + QK;

/// A tensor's element type, as numbered in GGUF files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    Bf16,
}

impl GgmlType {
    /// The type numbered `id` in a GGUF file, if it is one this crate knows the layout of.
    pub(crate) fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            30 => Self::Bf16,
            _ => return None,
        })
    }

    /// The type's number in a GGUF file.
    pub(crate) fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::Bf16 => 30,
        }
    }

    /// Values per block.
    pub(crate) fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::Bf16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 | Self::Q8_1 => QK,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K | Self::Q8K => 256,
        }
    }

    /// Bytes per block.
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => Q8_0_BYTES,
            Self::Q8_1 => 36,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::Q8K => 292,
        }
    }
}

/// `f16` bits at `b[at..at + 2]` as `f32`.
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The `f32` values of `data`, a whole number of `dtype` blocks; `None` for the k-quants,
/// which this crate does not read.
pub(crate) fn dequantize(dtype: GgmlType, data: &[u8]) -> Option<Vec<f32>> {
    let blocks = data.chunks_exact(dtype.block_bytes());
    let mut out = Vec::with_capacity(blocks.len() * dtype.block_size());
    match dtype {
        GgmlType::F32 => out.extend(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(data.chunks_exact(2).map(|b| f16_at(b, 0))),
        GgmlType::Bf16 => out.extend(
            data.chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
        ),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (min_at, qs_at) = if dtype == GgmlType::Q4_1 {
                (2, 4)
            } else {
                (0, 2)
            };
            for b in blocks {
                let d = f16_at(b, 0);
                let m = (dtype == GgmlType::Q4_1).then(|| f16_at(b, min_at));
                let qs = &b[qs_at..qs_at + QK / 2];
                let value = |q: u8| match m {
                    Some(m) => f32::from(q) * d + m,
                    None => f32::from(i16::from(q) - 8) * d,
                };
                out.extend(qs.iter().map(|q| value(q & 0x0f)));
                out.extend(qs.iter().map(|q| value(q >> 4)));
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let (qh_at, qs_at) = if dtype == GgmlType::Q5_1 {
                (4, 8)
            } else {
                (2, 6)
            };
            for b in blocks {
                let d = f16_at(b, 0);
                let m = (dtype == GgmlType::Q5_1).then(|| f16_at(b, 2));
                let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
                let qs = &b[qs_at..qs_at + QK / 2];
                let value = |q: u32| match m {
                    Some(m) => q as f32 * d + m,
                    None => (q as i32 - 16) as f32 * d,
                };
                let low = qs.iter().enumerate().map(|(j, q)| {
                    let high = ((qh >> j) << 4) & 0x10;
                    value(u32::from(q & 0x0f) | high)
                });
                out.extend(low);
                let high = qs.iter().enumerate().map(|(j, q)| {
                    let high = (qh >> (j + 12)) & 0x10;
                    value(u32::from(q >> 4) | high)
                });
                out.extend(high);
            }
        }
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            let qs_at = if dtype == GgmlType::Q8_1 { 4 } else { 2 };
            for b in blocks {
                let d = f16_at(b, 0);
                out.extend(b[qs_at..qs_at + QK].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        _ => return None,
    }
    Some(out)
}

/// `x` (a whole number of 32-value blocks) as Q8_0 blocks.
pub(crate) fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    debug_assert!(x.len().is_multiple_of(QK));
    let mut out = Vec::with_capacity(x.len() / QK * Q8_0_BYTES);
    for block in x.chunks_exact(QK) {
        let (d, id) = q8_0_scale(block);
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend(block.iter().map(|v| round_to_i8(v * id) as u8));
    }
    out
}

/// `x.round() as i8` (half away from zero, saturating, NaN to 0) in steps the compiler can
/// vectorise: `f32::round` is a library call per value, which reading a prompt made 17 million
/// times. The truncation and the fraction `x - trunc(x)` are exact for any `|x| < 2^23`.
#[inline]
pub(crate) fn round_to_i8(x: f32) -> i8 {
    let t = x as i32;
    let frac = x - t as f32;
    let r = t
        .saturating_add(i32::from(frac >= 0.5))
        .saturating_sub(i32::from(frac <= -0.5));
    r.clamp(-128, 127) as i8
}

/// A Q8_0 block's scale `max|x| / 127` (before rounding to `f16`) and its inverse (0 for an
/// all-zero block), as ggml computes them.
#[inline]
pub(crate) fn q8_0_scale(block: &[f32]) -> (f32, f32) {
    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, id)
}

#[cfg(test)]
#[test]
fn round_to_i8_is_round_then_cast() {
    let mut values = vec![
        0.5, -0.5, 1.5, -1.5, 2.5, 126.5, 127.4, 127.5, -127.5, -128.5, 300.0,
    ];
    values.extend([
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.49999997,
        -0.49999997,
    ]);
    values.extend((0..=2_000_000).map(|i| (i as f32 - 1_000_000.0) / 7_777.0));
    for x in values {
        assert_eq!(round_to_i8(x), x.round() as i8, "{x}");
    }
}

/// `f16` bits to `f32` (exact).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
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

/// `f32` to `f16` bits, rounding to nearest even; out-of-range values become infinities.
pub(crate) fn f32_to_f16(v: f32) -> u16 {
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
        // The largest values that still round into range, and the first that does not.
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn every_f16_survives_the_round_trip() {
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            if v.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16(v), h, "{h:#06x} = {v}");
        }
    }

    #[test]
    fn q8_0_matches_ggml_reference_blocks() {
        let mut x: Vec<f32> = (0..32).map(|i| i as f32 - 12.5).collect();
        x.extend([0.0; 32]);
        let q = quantize_q8_0(&x);
        assert_eq!(q.len(), 2 * Q8_0_BYTES);
        // max |x| = 18.5, d = 18.5 / 127 (stored as f16); -12.5 / d = -85.8 rounds to -86.
        assert_eq!(u16::from_le_bytes([q[0], q[1]]), f32_to_f16(18.5 / 127.0));
        assert_eq!(q[2] as i8, -86);
        assert_eq!(q[2 + 31] as i8, 127);
        // An all-zero block has a zero scale and zero values.
        assert!(q[Q8_0_BYTES..].iter().all(|&b| b == 0));
        let back = dequantize(GgmlType::Q8_0, &q).expect("Q8_0 reads");
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() <= 18.5 / 127.0 / 2.0 + 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn q4_1_dequantizes_low_nibbles_then_high() {
        let mut block = Vec::new();
        block.extend_from_slice(&f32_to_f16(0.5).to_le_bytes());
        block.extend_from_slice(&f32_to_f16(-1.0).to_le_bytes());
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let x = dequantize(GgmlType::Q4_1, &block).expect("Q4_1 reads");
        assert_eq!(x.len(), 32);
        assert_eq!(x[0], -1.0);
        assert_eq!(x[15], 15.0 * 0.5 - 1.0);
        assert_eq!(x[16], 15.0 * 0.5 - 1.0);
        assert_eq!(x[31], -1.0);
    }

    #[test]
    fn q4_0_and_q5_0_are_centred() {
        let mut q4 = f32_to_f16(2.0).to_le_bytes().to_vec();
        q4.extend([0x80u8; 16]);
        let x = dequantize(GgmlType::Q4_0, &q4).expect("Q4_0 reads");
        assert_eq!((x[0], x[16]), (-16.0, 0.0));
        let mut q5 = f32_to_f16(1.0).to_le_bytes().to_vec();
        // The fifth bit set for value 0 only (low half) and value 16 (bit 12 + 0 → high half).
        q5.extend((1u32 | (1 << 16)).to_le_bytes());
        q5.extend([0u8; 16]);
        let x = dequantize(GgmlType::Q5_0, &q5).expect("Q5_0 reads");
        assert_eq!((x[0], x[1], x[16], x[17]), (0.0, -16.0, 0.0, -16.0));
    }

    #[test]
    fn k_quants_are_known_but_not_read() {
        let t = GgmlType::from_id(12).expect("Q4_K is known");
        assert_eq!((t.block_size(), t.block_bytes()), (256, 144));
        assert_eq!(dequantize(t, &[0; 144]), None);
        assert_eq!(GgmlType::from_id(4), None);
    }
}
