//! Statistics for eval runs: confidence intervals, paired comparisons of two runs on the same
//! cases, and percentiles. Pure and deterministic: resampling takes an explicit seed and uses a
//! built-in splitmix64, so the same inputs always give the same report.

use serde::{Deserialize, Serialize};

/// The z value of a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;
/// A paired difference is significant when its p-value is below this.
pub const SIGNIFICANCE_LEVEL: f64 = 0.05;
/// Sign-flip resamples of [`paired_continuous`] when exact enumeration is too large.
pub const PERMUTATION_RESAMPLES: usize = 10_000;
/// Bootstrap resamples beyond this add nothing a report can show, only memory and time.
pub const MAX_BOOTSTRAP_RESAMPLES: usize = 100_000;
/// Up to this many non-zero differences, [`paired_continuous`] enumerates every sign pattern
/// (2^16 patterns), so small eval sets get an exact p-value instead of an estimate.
const EXACT_PERMUTATION_MAX: usize = 16;

/// Wilson score interval for a binomial rate; `n = 0` gives `(0, 1)` (nothing is known).
///
/// `successes` above `n` are clamped to `n`; a negative `z` is used as `|z|` and a non-finite one
/// gives `(0, 1)`. The interval always contains `successes / n` and stays within `[0, 1]`.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 || !z.is_finite() {
        return (0.0, 1.0);
    }
    let (k, n) = (successes.min(n) as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z.abs() * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    // Rounding can leave the bound a hair inside p at 0 or 1; the guarantee matters to readers.
    let low = (centre - half).clamp(0.0, 1.0).min(p);
    let high = (centre + half).clamp(0.0, 1.0).max(p);
    (low, high)
}

/// The arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A 95% percentile-bootstrap interval for the mean, deterministic for a seed.
///
/// `None` for no values or any non-finite value. The interval is widened to contain the sample
/// mean when the percentiles alone would miss it (possible with tiny skewed samples), so a report
/// never shows a point outside its own interval. `resamples = 0` gives `(mean, mean)`; more than
/// [`MAX_BOOTSTRAP_RESAMPLES`] are capped.
pub fn bootstrap_mean_interval(values: &[f64], resamples: usize, seed: u64) -> Option<(f64, f64)> {
    if values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let centre = mean(values)?;
    let resamples = resamples.min(MAX_BOOTSTRAP_RESAMPLES);
    if resamples == 0 {
        return Some((centre, centre));
    }
    let mut rng = SplitMix64(seed);
    let n = values.len();
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let last = resamples - 1;
    let low_index = ((resamples as f64 * 0.025).floor() as usize).min(last);
    let high_index = ((resamples as f64 * 0.975).ceil() as usize)
        .saturating_sub(1)
        .min(last);
    Some((means[low_index].min(centre), means[high_index].max(centre)))
}

/// The comparison of two runs over the same cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedResult {
    /// Pairs compared.
    pub n: usize,
    /// Mean of `after - before` (for binary scores: the change in pass rate).
    pub delta: f64,
    /// Two-sided p-value of "no difference".
    pub p_value: f64,
    /// Cases that got better.
    pub improved: usize,
    /// Cases that got worse.
    pub regressed: usize,
}

impl PairedResult {
    /// Whether the difference is significant at [`SIGNIFICANCE_LEVEL`].
    pub fn significant(&self) -> bool {
        is_significant(self.p_value)
    }
}

/// `p < 0.05`; a NaN p-value is never significant.
pub fn is_significant(p_value: f64) -> bool {
    p_value < SIGNIFICANCE_LEVEL
}

/// Paired pass/fail comparison with McNemar's exact test on the discordant pairs.
///
/// Cases are paired by position; if the slices differ in length only the common prefix is
/// compared (`n` says how many).
pub fn paired_binary(before: &[bool], after: &[bool]) -> PairedResult {
    let n = before.len().min(after.len());
    let pairs = before.iter().zip(after);
    let improved = pairs.clone().filter(|(b, a)| !**b && **a).count();
    let regressed = pairs.filter(|(b, a)| **b && !**a).count();
    let delta = if n == 0 {
        0.0
    } else {
        (improved as f64 - regressed as f64) / n as f64
    };
    PairedResult {
        n,
        delta,
        p_value: mcnemar_exact(improved as u64, regressed as u64),
        improved,
        regressed,
    }
}

/// Two-sided exact McNemar p-value: `min(1, 2·P(X ≤ min(b, c)))` for `X ~ Binomial(b + c, ½)`.
///
/// Private because its cost is linear in the counts: through [`paired_binary`] they are bounded
/// by the slices the caller already holds.
fn mcnemar_exact(improved: u64, regressed: u64) -> f64 {
    let discordant = improved.saturating_add(regressed);
    if discordant == 0 {
        return 1.0;
    }
    let k = improved.min(regressed);
    let tail = if discordant <= DIRECT_BINOMIAL_MAX {
        binomial_half_cdf_direct(discordant, k)
    } else {
        binomial_half_cdf_log(discordant, k)
    };
    (2.0 * tail).min(1.0)
}

/// Up to here `2^-d` is a normal f64, so the tail is summed directly and small cases come out
/// exact (0 vs 6 gives exactly 0.03125); beyond it, log space avoids underflow.
const DIRECT_BINOMIAL_MAX: u64 = 1000;

/// `P(X ≤ k)` for `X ~ Binomial(d, ½)`, term by term from `2^-d`.
fn binomial_half_cdf_direct(d: u64, k: u64) -> f64 {
    let mut term = 0.5f64.powi(d as i32);
    let mut sum = term;
    for i in 0..k {
        term *= (d - i) as f64 / (i + 1) as f64;
        sum += term;
    }
    sum
}

/// `P(X ≤ k)` for `X ~ Binomial(d, ½)`, summed in log space for thousands of pairs.
fn binomial_half_cdf_log(d: u64, k: u64) -> f64 {
    let n = d as f64;
    let mut log_choose = 0.0f64;
    let mut log_sum = f64::NEG_INFINITY;
    for i in 0..=k {
        if i > 0 {
            log_choose += (n - (i - 1) as f64).ln() - (i as f64).ln();
        }
        let log_term = log_choose - n * std::f64::consts::LN_2;
        let (high, low) = if log_sum > log_term {
            (log_sum, log_term)
        } else {
            (log_term, log_sum)
        };
        log_sum = high + (low - high).exp().ln_1p();
    }
    log_sum.exp()
}

/// Paired comparison of continuous scores with a sign-flip permutation test on the differences.
///
/// Exact over all sign patterns up to 16 non-zero differences, otherwise estimated from
/// [`PERMUTATION_RESAMPLES`] random flips (deterministic for `seed`, with the `+1` correction
/// so the estimate is never 0). Pairs with a non-finite value are left out; slices of different
/// lengths are compared on their common prefix.
pub fn paired_continuous(before: &[f64], after: &[f64], seed: u64) -> PairedResult {
    let diffs: Vec<f64> = before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.is_finite() && a.is_finite())
        .map(|(b, a)| a - b)
        .collect();
    let improved = diffs.iter().filter(|d| **d > 0.0).count();
    let regressed = diffs.iter().filter(|d| **d < 0.0).count();
    // Zero differences look the same under any sign, so they only dilute the mean.
    let nonzero: Vec<f64> = diffs.iter().copied().filter(|d| *d != 0.0).collect();
    PairedResult {
        n: diffs.len(),
        delta: mean(&diffs).unwrap_or(0.0),
        p_value: sign_flip_p_value(&nonzero, seed),
        improved,
        regressed,
    }
}

fn sign_flip_p_value(diffs: &[f64], seed: u64) -> f64 {
    if diffs.is_empty() {
        return 1.0;
    }
    let observed = diffs.iter().sum::<f64>().abs();
    // Sums of the same numbers in another order can differ in the last bits; a pattern
    // as extreme as the observed one must count even then.
    let slack = 1e-9 * diffs.iter().map(|d| d.abs()).sum::<f64>();
    let extreme = |sum: f64| sum.abs() >= observed - slack;
    if diffs.len() <= EXACT_PERMUTATION_MAX {
        let patterns = 1u32 << diffs.len();
        let hits = (0..patterns)
            .filter(|signs| {
                let sum: f64 = diffs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if signs >> i & 1 == 1 { -d } else { *d })
                    .sum();
                extreme(sum)
            })
            .count();
        return hits as f64 / patterns as f64;
    }
    let mut rng = SplitMix64(seed);
    let mut hits = 0usize;
    for _ in 0..PERMUTATION_RESAMPLES {
        let mut bits = 0u64;
        let mut sum = 0.0;
        for (i, d) in diffs.iter().enumerate() {
            if i % 64 == 0 {
                bits = rng.next_u64();
            }
            sum += if bits >> (i % 64) & 1 == 1 { -d } else { *d };
        }
        hits += usize::from(extreme(sum));
    }
    (hits + 1) as f64 / (PERMUTATION_RESAMPLES + 1) as f64
}

/// Nearest-rank percentile of an ascending slice, `p` in percent (`95.0` for p95, clamped to
/// `0..=100`); `None` for an empty slice or a NaN `p`. p0 is the minimum, p100 the maximum.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() || p.is_nan() {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// splitmix64: tiny, fast, well mixed; enough for resampling, and keeps `rand` out of core.
struct SplitMix64(u64);

/// The `n`-th output (from 1) of splitmix64 started at `seed`, without the generator: any
/// thread can draw from one seed with a shared counter.
pub fn splitmix64(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        let value = splitmix64(self.0, 1);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        value
    }

    /// Uniform in `0..n` by multiply-shift (Lemire); the bias is below 2^-32 for any eval size.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() < eps
    }

    #[test]
    fn wilson_known_values() {
        let (low, high) = wilson_interval(8, 10, 1.959964);
        assert!(
            close(low, 0.4902, 1e-4) && close(high, 0.9433, 1e-4),
            "{low} {high}"
        );
        let (low, high) = wilson_interval(0, 10, Z_95);
        assert!(low == 0.0 && close(high, 0.2775, 1e-4), "{high}");
        let (low, high) = wilson_interval(10, 10, Z_95);
        assert!(close(low, 0.7225, 1e-4) && high == 1.0, "{low}");
        assert_eq!(wilson_interval(0, 0, Z_95), (0.0, 1.0));
        assert_eq!(wilson_interval(3, 10, f64::NAN), (0.0, 1.0));
        assert_eq!(wilson_interval(12, 10, Z_95), wilson_interval(10, 10, Z_95));
    }

    #[test]
    fn mcnemar_known_values() {
        assert_eq!(mcnemar_exact(0, 6), 0.03125);
        assert_eq!(mcnemar_exact(6, 0), 0.03125);
        // d = 10, k = 1: 2 · (1 + 10) / 1024
        assert!(close(mcnemar_exact(1, 9), 22.0 / 1024.0, 1e-12));
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // Large counts stay finite and tiny instead of underflowing to NaN.
        let p = mcnemar_exact(1000, 3000);
        assert!(p > 0.0 && p < 1e-100, "{p}");
        assert!(close(mcnemar_exact(2000, 2000), 1.0, 1e-12));
    }

    #[test]
    fn binomial_tails_agree_across_methods() {
        for (d, k) in [(1, 0), (10, 3), (200, 80), (1000, 470), (1000, 500)] {
            let direct = binomial_half_cdf_direct(d, k);
            let log = binomial_half_cdf_log(d, k);
            assert!(
                (direct - log).abs() <= 1e-9 * direct.max(1e-300),
                "{d} {k}: {direct} {log}"
            );
        }
    }

    #[test]
    fn paired_binary_counts_and_tests() {
        let before = [false; 10];
        let mut after = [false; 10];
        after[..6].fill(true);
        let result = paired_binary(&before, &after);
        assert_eq!((result.n, result.improved, result.regressed), (10, 6, 0));
        assert!(close(result.delta, 0.6, 1e-12));
        assert_eq!(result.p_value, 0.03125);
        assert!(result.significant());
        let same = paired_binary(&[true, false], &[true, false]);
        assert_eq!((same.delta, same.p_value), (0.0, 1.0));
        assert!(!same.significant());
        assert_eq!(paired_binary(&[true], &[]).n, 0);
    }

    #[test]
    fn paired_continuous_exact_and_sampled() {
        // Five equal gains: only all-plus and all-minus are as extreme, p = 2/32.
        let result = paired_continuous(&[0.0; 5], &[0.5; 5], 1);
        assert_eq!(result.p_value, 0.0625);
        assert_eq!((result.improved, result.regressed), (5, 0));
        assert!(close(result.delta, 0.5, 1e-12));
        assert_eq!(paired_continuous(&[0.0; 6], &[1.0; 6], 1).p_value, 0.03125);
        // Zero differences are ignored by the test but count in n and delta.
        let with_ties = paired_continuous(&[0.0, 0.3, 1.0], &[1.0, 0.3, 1.0], 1);
        assert_eq!((with_ties.n, with_ties.p_value), (3, 1.0));
        // 40 equal gains: sampled, and as small as the resample count allows.
        let big = paired_continuous(&[0.2; 40], &[0.9; 40], 7);
        assert_eq!(big.p_value, 1.0 / (PERMUTATION_RESAMPLES + 1) as f64);
        let none = paired_continuous(&[f64::NAN], &[1.0], 7);
        assert_eq!((none.n, none.delta, none.p_value), (0, 0.0, 1.0));
    }

    #[test]
    fn paired_continuous_sees_noise_as_noise() {
        let before: Vec<f64> = (0..100).map(|i| (i % 7) as f64 / 7.0).collect();
        let after: Vec<f64> = (0..100).map(|i| ((i * 3) % 7) as f64 / 7.0).collect();
        let result = paired_continuous(&before, &after, 42);
        assert!(!result.significant(), "{result:?}");
        assert_eq!(result, paired_continuous(&before, &after, 42));
    }

    #[test]
    fn bootstrap_is_deterministic_and_sane() {
        let values: Vec<f64> = (0..50)
            .map(|i| if i % 4 == 0 { 0.0 } else { 1.0 })
            .collect();
        let a = bootstrap_mean_interval(&values, 2000, 9).unwrap();
        assert_eq!(a, bootstrap_mean_interval(&values, 2000, 9).unwrap());
        assert!(a.0 < 0.74 && 0.74 < a.1, "{a:?}");
        // Close to the normal approximation 0.74 ± 1.96·sqrt(0.74·0.26/50) ≈ (0.62, 0.86).
        assert!(close(a.0, 0.62, 0.04) && close(a.1, 0.86, 0.04), "{a:?}");
        assert_eq!(bootstrap_mean_interval(&[0.3; 5], 100, 1), Some((0.3, 0.3)));
        assert_eq!(bootstrap_mean_interval(&[], 100, 1), None);
        assert_eq!(bootstrap_mean_interval(&[1.0, f64::NAN], 100, 1), None);
        assert_eq!(bootstrap_mean_interval(&[1.0, 2.0], 0, 1), Some((1.5, 1.5)));
        let (low, high) = bootstrap_mean_interval(&[0.0, 1.0], usize::MAX, 1).unwrap();
        assert!(low <= 0.5 && 0.5 <= high);
    }

    #[test]
    fn percentile_nearest_rank() {
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 50.0), Some(5));
        assert_eq!(percentile(&ten, 95.0), Some(10));
        assert_eq!(percentile(&ten, 0.0), Some(1));
        assert_eq!(percentile(&ten, 100.0), Some(10));
        assert_eq!(percentile(&ten, 250.0), Some(10));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 95.0), Some(95));
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&ten, f64::NAN), None);
    }

    #[test]
    fn splitmix_is_uniform_enough() {
        let mut rng = SplitMix64(0);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[rng.below(4)] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_500..10_500).contains(c)),
            "{counts:?}"
        );
    }

    proptest! {
        #[test]
        fn wilson_contains_the_rate(k in 0u64..2000, extra in 0u64..2000, z in 0.0f64..4.0) {
            let n = k + extra;
            let (low, high) = wilson_interval(k, n, z);
            prop_assert!((0.0..=1.0).contains(&low) && (0.0..=1.0).contains(&high));
            if n > 0 {
                let p = k as f64 / n as f64;
                prop_assert!(low <= p && p <= high, "{} {} {}", low, p, high);
            }
        }

        #[test]
        fn bootstrap_contains_the_mean(values in prop::collection::vec(0.0f64..=1.0, 1..40), seed: u64) {
            let (low, high) = bootstrap_mean_interval(&values, 200, seed).unwrap();
            let m = mean(&values).unwrap();
            prop_assert!(low <= m && m <= high);
            prop_assert!(low >= 0.0 && high <= 1.0);
        }

        #[test]
        fn mcnemar_is_a_symmetric_probability(b in 0u64..500, c in 0u64..500) {
            let p = mcnemar_exact(b, c);
            prop_assert!(p > 0.0 && p <= 1.0);
            prop_assert_eq!(p, mcnemar_exact(c, b));
        }

        #[test]
        fn paired_tests_are_probabilities(pairs in prop::collection::vec((0.0f64..=1.0, 0.0f64..=1.0), 0..30), seed: u64) {
            let (before, after): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
            let result = paired_continuous(&before, &after, seed);
            prop_assert!(result.p_value > 0.0 && result.p_value <= 1.0);
            prop_assert!(result.improved + result.regressed <= result.n);
            let flipped = paired_continuous(&after, &before, seed);
            prop_assert_eq!(result.p_value, flipped.p_value);
            let same = paired_continuous(&before, &before, seed);
            prop_assert_eq!((same.p_value, same.delta), (1.0, 0.0));
        }

        #[test]
        fn percentile_is_an_element(mut values in prop::collection::vec(any::<u64>(), 1..50), p in -10.0f64..110.0) {
            values.sort_unstable();
            let got = percentile(&values, p).unwrap();
            prop_assert!(values.contains(&got));
        }
    }
}
