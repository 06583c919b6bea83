//! The statistics of drift detection, as pure functions: chi-square test of homogeneity of
//! label counts, Jensen–Shannon distance, PSI, the two-sample Kolmogorov–Smirnov test, the
//! two-proportion z-test and the share of unseen words. The checks built from them (what is
//! compared, thresholds, the minimum window) are in [`checks`].
//!
//! The special functions are our own: the regularised incomplete gamma function (series below
//! `a + 1`, Lentz's continued fraction above) gives the chi-square and normal tails; the
//! Kolmogorov–Smirnov p-value is exact (a lattice-path count) up to [`KS_EXACT_MAX_N`] values a
//! side, as scipy's `ks_2samp(method="auto")` is. Every statistic is pinned against scipy
//! 1.17 in the tests.

pub mod checks;

use std::collections::{BTreeMap, HashSet};

/// Proportion standing in for an empty bin in [`psi`], so `ln(0)` never appears: 1e-4,
/// the value Evidently uses.
pub const PSI_EPSILON: f64 = 1e-4;

/// Up to this many values in the larger sample the KS p-value is exact (scipy's `MAX_AUTO_N`).
pub const KS_EXACT_MAX_N: usize = 10_000;

const GAMMA_EPS: f64 = 1e-15;
const GAMMA_MAX_ITER: usize = 10_000;
const TINY: f64 = 1e-300;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, nine terms; ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the approximation where it is accurate.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// `x^a e^-x / Γ(a)`, the factor both expansions share, in log space.
fn gamma_prefactor(a: f64, x: f64) -> f64 {
    (a * x.ln() - x - ln_gamma(a)).exp()
}

/// `P(a, x)` by its power series; converges fast for `x < a + 1`.
fn gamma_p_series(a: f64, x: f64) -> f64 {
    let mut term = 1.0 / a;
    let mut sum = term;
    let mut denominator = a;
    for _ in 0..GAMMA_MAX_ITER {
        denominator += 1.0;
        term *= x / denominator;
        sum += term;
        if term.abs() < sum.abs() * GAMMA_EPS {
            break;
        }
    }
    sum * gamma_prefactor(a, x)
}

/// `Q(a, x)` by its continued fraction (modified Lentz); converges fast for `x ≥ a + 1`.
fn gamma_q_fraction(a: f64, x: f64) -> f64 {
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut fraction = d;
    for i in 1..GAMMA_MAX_ITER {
        let i = i as f64;
        let an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let step = d * c;
        fraction *= step;
        if (step - 1.0).abs() < GAMMA_EPS {
            break;
        }
    }
    fraction * gamma_prefactor(a, x)
}

/// The regularised lower incomplete gamma function `P(a, x)`, `a > 0`, `x ≥ 0`.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else if x < a + 1.0 {
        gamma_p_series(a, x)
    } else {
        1.0 - gamma_q_fraction(a, x)
    }
}

/// The regularised upper incomplete gamma function `Q(a, x) = 1 − P(a, x)`, computed
/// directly in the tail so small probabilities keep their digits.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        1.0
    } else if x < a + 1.0 {
        1.0 - gamma_p_series(a, x)
    } else {
        gamma_q_fraction(a, x)
    }
}

/// `P(X ≥ x)` for `X ~ χ²(dof)`.
pub fn chi_square_sf(x: f64, dof: f64) -> f64 {
    gamma_q(dof / 2.0, x / 2.0)
}

/// `P(Z ≥ z)` for a standard normal `Z` (`erfc(z/√2)/2 = Q(½, z²/2)/2` for `z ≥ 0`).
pub fn normal_sf(z: f64) -> f64 {
    let tail = 0.5 * gamma_q(0.5, z * z / 2.0);
    if z >= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// A test's statistic and, where it has one, its p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// Counts of two samples over the union of their categories, in one order.
fn aligned(reference: &BTreeMap<String, u64>, current: &BTreeMap<String, u64>) -> Vec<(f64, f64)> {
    let keys: std::collections::BTreeSet<&String> =
        reference.keys().chain(current.keys()).collect();
    keys.into_iter()
        .map(|k| {
            (
                reference.get(k).copied().unwrap_or(0) as f64,
                current.get(k).copied().unwrap_or(0) as f64,
            )
        })
        .collect()
}

/// Chi-square test of homogeneity of two samples of labels (the 2×k contingency table,
/// scipy's `chi2_contingency(correction=False)`): both the reference and the window are
/// samples. Labels neither sample has are left out; with fewer than two labels, or an empty
/// sample, the statistic is 0 and p is 1.
pub fn chi_square_homogeneity(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> TestResult {
    let columns: Vec<(f64, f64)> = aligned(reference, current)
        .into_iter()
        .filter(|(r, c)| r + c > 0.0)
        .collect();
    let n_ref: f64 = columns.iter().map(|(r, _)| r).sum();
    let n_cur: f64 = columns.iter().map(|(_, c)| c).sum();
    if columns.len() < 2 || n_ref == 0.0 || n_cur == 0.0 {
        return TestResult {
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let total = n_ref + n_cur;
    let statistic: f64 = columns
        .iter()
        .map(|(r, c)| {
            let column = r + c;
            let (er, ec) = (n_ref * column / total, n_cur * column / total);
            (r - er).powi(2) / er + (c - ec).powi(2) / ec
        })
        .sum();
    TestResult {
        statistic,
        p_value: chi_square_sf(statistic, (columns.len() - 1) as f64),
    }
}

/// Both samples as proportions over the union of their labels; `None` if either is empty.
fn proportions(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> Option<Vec<(f64, f64)>> {
    let columns = aligned(reference, current);
    let n_ref: f64 = columns.iter().map(|(r, _)| r).sum();
    let n_cur: f64 = columns.iter().map(|(_, c)| c).sum();
    (n_ref > 0.0 && n_cur > 0.0).then(|| {
        columns
            .into_iter()
            .map(|(r, c)| (r / n_ref, c / n_cur))
            .collect()
    })
}

/// Jensen–Shannon distance with base-2 logarithms (in `[0, 1]`; scipy's
/// `jensenshannon(p, q, base=2)`); 0 when either sample is empty.
pub fn js_distance(reference: &BTreeMap<String, u64>, current: &BTreeMap<String, u64>) -> f64 {
    let Some(columns) = proportions(reference, current) else {
        return 0.0;
    };
    let relative = |p: f64, m: f64| if p > 0.0 { p * (p / m).ln() } else { 0.0 };
    let divergence: f64 = columns
        .iter()
        .map(|&(p, q)| {
            let m = (p + q) / 2.0;
            relative(p, m) + relative(q, m)
        })
        .sum::<f64>()
        / 2.0
        / std::f64::consts::LN_2;
    divergence.max(0.0).sqrt()
}

/// Population stability index `Σ (c − r)·ln(c / r)` over label proportions, an empty bin
/// counted as [`PSI_EPSILON`]; 0 when either sample is empty.
pub fn psi(reference: &BTreeMap<String, u64>, current: &BTreeMap<String, u64>) -> f64 {
    let Some(columns) = proportions(reference, current) else {
        return 0.0;
    };
    columns
        .iter()
        .map(|&(r, c)| {
            let (r, c) = (r.max(PSI_EPSILON), c.max(PSI_EPSILON));
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// Two-sample Kolmogorov–Smirnov test, two-sided. The statistic is the largest gap between
/// the empirical distribution functions (ties handled as scipy does). The p-value is exact
/// when the larger sample has at most [`KS_EXACT_MAX_N`] values (the share of lattice paths
/// from (0,0) to (m,n) that leave the band `|i/m − j/n| < D`, scipy's `method="exact"`);
/// above that it is the asymptotic Kolmogorov tail at `√(mn/(m+n))·D`, where scipy (1.17)
/// uses `kstwo.sf(D, round(mn/(m+n)))` instead — the two differ in the fourth digit or so.
/// Empty samples give statistic 0 and p 1.
pub fn ks_two_sample(a: &[u64], b: &[u64]) -> TestResult {
    let (m, n) = (a.len(), b.len());
    if m == 0 || n == 0 {
        return TestResult {
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    let gap = ks_gap(&a, &b);
    let statistic = gap as f64 / (m as f64 * n as f64);
    let p_value = if gap == 0 {
        1.0
    } else if m.max(n) <= KS_EXACT_MAX_N {
        (1.0 - ks_inside_share(m, n, gap)).clamp(0.0, 1.0)
    } else {
        let en = (m as f64 * n as f64) / (m + n) as f64;
        kolmogorov_sf(en.sqrt() * statistic)
    };
    TestResult { statistic, p_value }
}

/// `max |i·n − j·m|` over the values where the step functions change, `i` and `j` counting
/// the values of `a` and `b` at most there: `D·m·n` as an integer, so the band test below has
/// no rounding.
fn ks_gap(a: &[u64], b: &[u64]) -> u128 {
    let (m, n) = (a.len() as i128, b.len() as i128);
    let (mut i, mut j) = (0usize, 0usize);
    let mut gap = 0i128;
    while i < a.len() || j < b.len() {
        let value = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => unreachable!("the loop ends when both are consumed"),
        };
        while a.get(i) == Some(&value) {
            i += 1;
        }
        while b.get(j) == Some(&value) {
            j += 1;
        }
        gap = gap.max((i as i128 * n - j as i128 * m).abs());
    }
    gap as u128
}

/// The share of the `C(m+n, m)` monotone lattice paths from (0,0) to (m,n) that stay strictly
/// inside `|i·n − j·m| < gap`. Row `i` holds `paths(i, j) / C(i+n, i)`, which stays in
/// `[0, 1]`, so nothing overflows: each row scales the one before by `i / (i + n)`.
fn ks_inside_share(m: usize, n: usize, gap: u128) -> f64 {
    let inside = |i: usize, j: usize| {
        let d = (i as i128 * n as i128 - j as i128 * m as i128).unsigned_abs();
        d < gap
    };
    let mut row = vec![0.0f64; n + 1];
    row[0] = 1.0;
    for j in 1..=n {
        row[j] = if inside(0, j) { row[j - 1] } else { 0.0 };
    }
    for i in 1..=m {
        let scale = i as f64 / (i + n) as f64;
        row[0] = if inside(i, 0) { row[0] * scale } else { 0.0 };
        for j in 1..=n {
            row[j] = if inside(i, j) {
                row[j] * scale + row[j - 1]
            } else {
                0.0
            };
        }
    }
    row[n]
}

/// `P(K > x)` for Kolmogorov's limiting distribution: the alternating series for large `x`,
/// Jacobi's form `1 − √(2π)/x · Σ exp(−(2k−1)²π²/(8x²))` for small.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        let pi2 = std::f64::consts::PI.powi(2);
        let cdf: f64 = (1..=20)
            .map(|k| {
                let odd = (2 * k - 1) as f64;
                (-odd * odd * pi2 / (8.0 * x * x)).exp()
            })
            .sum::<f64>()
            * (2.0 * std::f64::consts::PI).sqrt()
            / x;
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let sum: f64 = (1..=100)
        .map(|k| {
            let k = k as f64;
            let sign = if k as u64 % 2 == 1 { 1.0 } else { -1.0 };
            sign * (-2.0 * k * k * x * x).exp()
        })
        .sum();
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Two-sided z-test that two proportions are equal, with the pooled variance
/// (statsmodels' `proportions_ztest`); `z` is positive when the current rate is higher.
/// With an empty sample, or a pooled rate of 0 or 1, z is 0 and p is 1.
pub fn two_proportion_z(
    reference_hits: u64,
    reference_n: u64,
    current_hits: u64,
    current_n: u64,
) -> TestResult {
    let none = TestResult {
        statistic: 0.0,
        p_value: 1.0,
    };
    if reference_n == 0 || current_n == 0 {
        return none;
    }
    let (x1, n1, x2, n2) = (
        reference_hits as f64,
        reference_n as f64,
        current_hits as f64,
        current_n as f64,
    );
    let pooled = (x1 + x2) / (n1 + n2);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if variance <= 0.0 {
        return none;
    }
    let z = (x2 / n2 - x1 / n1) / variance.sqrt();
    TestResult {
        statistic: z,
        p_value: gamma_q(0.5, z * z / 2.0),
    }
}

/// The words of a text, lowercased: runs of letters (digits alone are ids and amounts, which
/// are new in every window, so they do not count as vocabulary).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().any(char::is_alphabetic))
        .map(str::to_lowercase)
}

/// `(unseen, total)`: how many of the words of `texts` the `vocabulary` lacks, of how many.
pub fn unseen_words<'a>(
    vocabulary: &HashSet<String>,
    texts: impl IntoIterator<Item = &'a str>,
) -> (u64, u64) {
    let (mut unseen, mut total) = (0u64, 0u64);
    for text in texts {
        for word in words(text) {
            total += 1;
            unseen += u64::from(!vocabulary.contains(&word));
        }
    }
    (unseen, total)
}

/// The vocabulary of some texts.
pub fn vocabulary<'a>(texts: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    texts.into_iter().flat_map(words).collect()
}

#[cfg(test)]
mod tests;
