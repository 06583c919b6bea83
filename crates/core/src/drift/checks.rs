//! The drift checks: what a window is compared with, by which test, against which threshold,
//! and when a check may alert. The engine gathers the windows from the store; this decides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    chi_square_homogeneity, js_distance, ks_two_sample, psi, two_proportion_z, unseen_words,
    vocabulary,
};

/// Runs a window needs before any check of it may alert (`[monitoring] min_runs`).
pub const DEFAULT_MIN_RUNS: u64 = 200;
/// Up to this many reference labels the chi-square test decides; above it, the
/// Jensen–Shannon distance (a test on thousands of runs finds shifts too small to matter).
pub const CHI_SQUARE_MAX_REFERENCE: u64 = 1000;
/// Significance level of every test with a p-value.
pub const P_THRESHOLD: f64 = 0.05;
/// Jensen–Shannon distance (base 2) from which the label mix has drifted (Evidently's).
pub const JS_THRESHOLD: f64 = 0.1;
/// PSI from which the label mix is worth a look (Evidently's "warn").
pub const PSI_WARN: f64 = 0.1;
/// PSI from which the label mix has drifted (Evidently's "alert").
pub const PSI_ALERT: f64 = 0.25;
/// Share of the window's input words the reference never had, from which inputs have drifted.
pub const UNSEEN_THRESHOLD: f64 = 0.2;
/// Current p95 latency over the reference's from which latency has drifted.
pub const LATENCY_RATIO: f64 = 1.5;
/// Label shifts listed with an alert.
pub const TOP_SHIFTS: usize = 3;

/// How drift is judged (`[monitoring]` in `shopfloor.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DriftSettings {
    /// Runs a window needs before it may alert.
    pub min_runs: u64,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            min_runs: DEFAULT_MIN_RUNS,
        }
    }
}

/// Counts of one window's runs by what happened to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCounts {
    pub runs: u64,
    /// Answers that broke the output contract.
    pub invalid: u64,
    /// Runs policy refused to send anywhere.
    pub refused: u64,
    /// Runs answered by a model other than the first one tried.
    pub fallbacks: u64,
    /// Runs whose output reached the caller (status `ok`: released, or approved after review).
    pub accepted: u64,
}

/// What is known of a window (or of the reference).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowData {
    /// Runs in the window (cases, for an eval reference).
    pub runs: u64,
    /// Output label → count.
    pub labels: BTreeMap<String, u64>,
    /// `None` for an eval reference, which has labels only.
    pub rates: Option<RateCounts>,
    pub latency_p95_ms: Option<u64>,
    /// Prompt tokens of the answering attempt, for a bounded sample of runs.
    pub input_tokens: Vec<u64>,
    /// Completion tokens of the answering attempt, for the same sample.
    pub output_tokens: Vec<u64>,
    /// The inputs' text, for the same sample.
    pub inputs: Vec<String>,
}

/// The test behind a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftTest {
    ChiSquare,
    JensenShannon,
    Psi,
    KolmogorovSmirnov,
    UnseenShare,
    TwoProportionZ,
    P95Ratio,
}

impl DriftTest {
    /// The name shown in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftTest::ChiSquare => "chi_square",
            DriftTest::JensenShannon => "jensen_shannon",
            DriftTest::Psi => "psi",
            DriftTest::KolmogorovSmirnov => "kolmogorov_smirnov",
            DriftTest::UnseenShare => "unseen_share",
            DriftTest::TwoProportionZ => "two_proportion_z",
            DriftTest::P95Ratio => "p95_ratio",
        }
    }
}

/// How one label's share moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelShift {
    pub label: String,
    pub reference_share: f64,
    pub current_share: f64,
    /// `current_share − reference_share`.
    pub change: f64,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    pub name: String,
    pub test: DriftTest,
    pub statistic: f64,
    pub p_value: Option<f64>,
    pub threshold: f64,
    pub n_reference: u64,
    pub n_current: u64,
    /// The check alerts.
    pub drift: bool,
    /// Past the warning level but not the alert's (PSI only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warn: bool,
    /// Why a check that looks drifted does not alert (too few runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The biggest label shifts, with a label check that alerts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shifts: Vec<LabelShift>,
}

impl DriftCheck {
    fn new(name: &str, test: DriftTest, statistic: f64, threshold: f64, n: (u64, u64)) -> Self {
        Self {
            name: name.into(),
            test,
            statistic,
            p_value: None,
            threshold,
            n_reference: n.0,
            n_current: n.1,
            drift: false,
            warn: false,
            note: None,
            shifts: Vec::new(),
        }
    }

    /// A test with a p-value: drifted when `p < threshold`.
    fn tested(name: &str, test: DriftTest, result: super::TestResult, n: (u64, u64)) -> Self {
        let mut check = Self::new(name, test, result.statistic, P_THRESHOLD, n);
        check.p_value = Some(result.p_value);
        check.drift = result.p_value < P_THRESHOLD;
        check
    }

    /// A distance: drifted when `statistic ≥ threshold`.
    fn measured(
        name: &str,
        test: DriftTest,
        statistic: f64,
        threshold: f64,
        n: (u64, u64),
    ) -> Self {
        let mut check = Self::new(name, test, statistic, threshold, n);
        check.drift = statistic >= threshold;
        check
    }
}

/// Every check of `current` against `reference` that both have the data for. A window with
/// fewer than `settings.min_runs` runs never alerts: its checks say why in `note`.
pub fn evaluate(
    reference: &WindowData,
    current: &WindowData,
    settings: &DriftSettings,
) -> Vec<DriftCheck> {
    let mut checks = label_checks(&reference.labels, &current.labels);
    checks.extend(length_checks(reference, current));
    checks.extend(vocabulary_check(reference, current));
    if let (Some(r), Some(c)) = (&reference.rates, &current.rates) {
        checks.extend(rate_checks(r, c));
    }
    checks.extend(latency_check(reference, current));
    if current.runs < settings.min_runs {
        for check in checks.iter_mut().filter(|c| c.drift || c.warn) {
            check.drift = false;
            check.warn = false;
            check.shifts.clear();
            check.note = Some(format!(
                "{} runs in the window; no alert before {}",
                current.runs, settings.min_runs
            ));
        }
    }
    checks
}

/// The label mix: chi-square or Jensen–Shannon by the reference's size, and PSI.
fn label_checks(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> Vec<DriftCheck> {
    let n = (
        reference.values().sum::<u64>(),
        current.values().sum::<u64>(),
    );
    if n.0 == 0 || n.1 == 0 {
        return Vec::new();
    }
    let mut mix = if n.0 <= CHI_SQUARE_MAX_REFERENCE {
        let result = chi_square_homogeneity(reference, current);
        DriftCheck::tested("output_labels", DriftTest::ChiSquare, result, n)
    } else {
        let distance = js_distance(reference, current);
        DriftCheck::measured(
            "output_labels",
            DriftTest::JensenShannon,
            distance,
            JS_THRESHOLD,
            n,
        )
    };
    let index = psi(reference, current);
    let mut stability =
        DriftCheck::measured("output_labels_psi", DriftTest::Psi, index, PSI_ALERT, n);
    stability.warn = (PSI_WARN..PSI_ALERT).contains(&index);
    for check in [&mut mix, &mut stability] {
        if check.drift {
            check.shifts = label_shifts(reference, current);
        }
    }
    vec![mix, stability]
}

/// The labels whose share moved most, biggest first (ties by label).
pub fn label_shifts(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> Vec<LabelShift> {
    let share = |counts: &BTreeMap<String, u64>, label: &str| {
        let total = counts.values().sum::<u64>().max(1) as f64;
        counts.get(label).copied().unwrap_or(0) as f64 / total
    };
    let labels: std::collections::BTreeSet<&String> =
        reference.keys().chain(current.keys()).collect();
    let mut shifts: Vec<LabelShift> = labels
        .into_iter()
        .map(|label| {
            let (r, c) = (share(reference, label), share(current, label));
            LabelShift {
                label: label.clone(),
                reference_share: r,
                current_share: c,
                change: c - r,
            }
        })
        .collect();
    shifts.sort_by(|a, b| b.change.abs().total_cmp(&a.change.abs()));
    shifts.truncate(TOP_SHIFTS);
    shifts
}

fn length_checks(reference: &WindowData, current: &WindowData) -> Vec<DriftCheck> {
    let pairs = [
        (
            "input_length",
            &reference.input_tokens,
            &current.input_tokens,
        ),
        (
            "output_length",
            &reference.output_tokens,
            &current.output_tokens,
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, r, c)| !r.is_empty() && !c.is_empty())
        .map(|(name, r, c)| {
            let n = (r.len() as u64, c.len() as u64);
            DriftCheck::tested(name, DriftTest::KolmogorovSmirnov, ks_two_sample(r, c), n)
        })
        .collect()
}

fn vocabulary_check(reference: &WindowData, current: &WindowData) -> Option<DriftCheck> {
    if reference.inputs.is_empty() || current.inputs.is_empty() {
        return None;
    }
    let known = vocabulary(reference.inputs.iter().map(String::as_str));
    let (unseen, total) = unseen_words(&known, current.inputs.iter().map(String::as_str));
    let share = if total == 0 {
        0.0
    } else {
        unseen as f64 / total as f64
    };
    let n = (reference.inputs.len() as u64, current.inputs.len() as u64);
    Some(DriftCheck::measured(
        "vocabulary",
        DriftTest::UnseenShare,
        share,
        UNSEEN_THRESHOLD,
        n,
    ))
}

fn rate_checks(reference: &RateCounts, current: &RateCounts) -> Vec<DriftCheck> {
    type Hits = fn(&RateCounts) -> u64;
    let rates: [(&str, Hits); 4] = [
        ("invalid_rate", |r| r.invalid),
        ("refusal_rate", |r| r.refused),
        ("fallback_rate", |r| r.fallbacks),
        ("acceptance_rate", |r| r.accepted),
    ];
    let n = (reference.runs, current.runs);
    rates
        .into_iter()
        .map(|(name, hits)| {
            let result = two_proportion_z(hits(reference), n.0, hits(current), n.1);
            DriftCheck::tested(name, DriftTest::TwoProportionZ, result, n)
        })
        .collect()
}

fn latency_check(reference: &WindowData, current: &WindowData) -> Option<DriftCheck> {
    let (r, c) = (reference.latency_p95_ms?, current.latency_p95_ms?);
    let ratio = if r == 0 {
        if c == 0 {
            1.0
        } else {
            f64::INFINITY
        }
    } else {
        c as f64 / r as f64
    };
    let n = (
        reference.rates.map_or(0, |x| x.runs),
        current.rates.map_or(0, |x| x.runs),
    );
    Some(DriftCheck::measured(
        "latency_p95",
        DriftTest::P95Ratio,
        ratio,
        LATENCY_RATIO,
        n,
    ))
}

/// Whether any check alerts.
pub fn alerts(checks: &[DriftCheck]) -> bool {
    checks.iter().any(|c| c.drift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn window(runs: u64, pairs: &[(&str, u64)]) -> WindowData {
        WindowData {
            runs,
            labels: labels(pairs),
            ..WindowData::default()
        }
    }

    #[test]
    fn a_small_reference_is_tested_by_chi_square_a_large_by_js() {
        let current = window(300, &[("billing", 150), ("bug", 150)]);
        let small = window(500, &[("billing", 250), ("bug", 250)]);
        let checks = evaluate(&small, &current, &DriftSettings::default());
        assert_eq!(checks[0].test, DriftTest::ChiSquare);
        assert!(!checks[0].drift);
        let large = window(2000, &[("billing", 1000), ("bug", 1000)]);
        let checks = evaluate(&large, &current, &DriftSettings::default());
        assert_eq!(checks[0].test, DriftTest::JensenShannon);
        assert_eq!(checks[1].test, DriftTest::Psi);
    }

    #[test]
    fn a_shifted_mix_alerts_with_its_biggest_shifts() {
        let reference = window(400, &[("billing", 200), ("bug", 100), ("other", 100)]);
        let current = window(300, &[("billing", 60), ("bug", 140), ("other", 100)]);
        let checks = evaluate(&reference, &current, &DriftSettings::default());
        let mix = &checks[0];
        assert!(mix.drift && mix.p_value.unwrap() < 1e-6, "{mix:?}");
        assert_eq!(mix.shifts[0].label, "billing");
        assert!((mix.shifts[0].change - (0.2 - 0.5)).abs() < 1e-12);
        assert_eq!(mix.shifts[1].label, "bug");
        assert!(checks[1].drift, "PSI alerts too: {:?}", checks[1]);
    }

    #[test]
    fn no_alert_before_the_window_has_enough_runs() {
        let reference = window(400, &[("billing", 200), ("bug", 200)]);
        let current = window(150, &[("billing", 20), ("bug", 130)]);
        let checks = evaluate(&reference, &current, &DriftSettings::default());
        assert!(!alerts(&checks));
        assert_eq!(
            checks[0].note.as_deref(),
            Some("150 runs in the window; no alert before 200")
        );
        let fewer = DriftSettings { min_runs: 100 };
        assert!(alerts(&evaluate(&reference, &current, &fewer)));
    }

    #[test]
    fn psi_between_warn_and_alert_warns() {
        // PSI of 50/50 → 64/36 is 0.0787; 50/50 → 67/33 is 0.1182.
        let reference = window(2000, &[("a", 1000), ("b", 1000)]);
        let current = window(1000, &[("a", 670), ("b", 330)]);
        let checks = evaluate(&reference, &current, &DriftSettings::default());
        let psi = checks
            .iter()
            .find(|c| c.name == "output_labels_psi")
            .unwrap();
        assert!(psi.warn && !psi.drift, "{psi:?}");
    }

    #[test]
    fn rates_lengths_vocabulary_and_latency_are_checked_when_both_sides_have_them() {
        let rates = |runs, invalid, accepted| RateCounts {
            runs,
            invalid,
            refused: 0,
            fallbacks: 0,
            accepted,
        };
        let reference = WindowData {
            runs: 1000,
            labels: labels(&[("a", 1000)]),
            rates: Some(rates(1000, 20, 950)),
            latency_p95_ms: Some(800),
            input_tokens: (0..300).map(|i| 40 + i % 10).collect(),
            output_tokens: vec![1; 300],
            inputs: vec!["refund my card".into(); 10],
        };
        let current = WindowData {
            runs: 1000,
            labels: labels(&[("a", 1000)]),
            rates: Some(rates(1000, 60, 900)),
            latency_p95_ms: Some(1300),
            input_tokens: (0..300).map(|i| 60 + i % 10).collect(),
            output_tokens: vec![1; 300],
            inputs: vec!["kündigung vertrag sofort".into(); 10],
        };
        let checks = evaluate(&reference, &current, &DriftSettings::default());
        let drifted: Vec<&str> = checks
            .iter()
            .filter(|c| c.drift)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            drifted,
            [
                "input_length",
                "vocabulary",
                "invalid_rate",
                "acceptance_rate",
                "latency_p95"
            ]
        );
        let quiet: Vec<&str> = checks
            .iter()
            .filter(|c| !c.drift)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            quiet,
            [
                "output_labels",
                "output_labels_psi",
                "output_length",
                "refusal_rate",
                "fallback_rate"
            ]
        );
    }

    /// Draws `n` labels from `mix` (label, weight) with the seeded splitmix64 stream at `*draw`.
    fn draw(mix: &[(&str, f64)], n: u64, seed: u64, draw: &mut u64) -> BTreeMap<String, u64> {
        let total: f64 = mix.iter().map(|(_, w)| w).sum();
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            *draw += 1;
            let u = (crate::stats::splitmix64(seed, *draw) >> 11) as f64 / (1u64 << 53) as f64;
            let mut acc = 0.0;
            let label = mix
                .iter()
                .find(|(_, w)| {
                    acc += w / total;
                    u < acc
                })
                .unwrap_or(&mix[mix.len() - 1])
                .0;
            *counts.entry(label.to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// Alerts of the label check (`output_labels`) on 200 windows of 300 runs each.
    fn label_alerts(reference_runs: u64, window_mix: &[(&str, f64)], seed: u64) -> usize {
        let mix = [
            ("billing", 0.45),
            ("bug", 0.3),
            ("account", 0.15),
            ("other", 0.1),
        ];
        let mut n = 0;
        let reference = WindowData {
            runs: reference_runs,
            labels: draw(&mix, reference_runs, seed, &mut n),
            ..WindowData::default()
        };
        (0..200)
            .filter(|_| {
                let current = WindowData {
                    runs: 300,
                    labels: draw(window_mix, 300, seed, &mut n),
                    ..WindowData::default()
                };
                let checks = evaluate(&reference, &current, &DriftSettings::default());
                checks
                    .iter()
                    .any(|c| c.name.starts_with("output_labels") && c.drift)
            })
            .count()
    }

    #[test]
    fn unshifted_windows_rarely_alert_and_a_shifted_mix_always_does() {
        let same = [
            ("billing", 0.45),
            ("bug", 0.3),
            ("account", 0.15),
            ("other", 0.1),
        ];
        let shifted = [
            ("billing", 0.3),
            ("bug", 0.45),
            ("account", 0.15),
            ("other", 0.1),
        ];
        for (reference_runs, seed) in [(600, 20_261_202), (5000, 7)] {
            let false_alarms = label_alerts(reference_runs, &same, seed);
            eprintln!("reference {reference_runs}: {false_alarms} alerts in 200 unshifted windows");
            assert!(false_alarms <= 10, "{false_alarms} of 200 > 5%");
            let alarms = label_alerts(reference_runs, &shifted, seed);
            eprintln!("reference {reference_runs}: {alarms} alerts in 200 shifted windows");
            assert!(
                alarms >= 190,
                "a shifted mix alerted only {alarms} of 200 times"
            );
        }
    }

    #[test]
    fn an_eval_reference_has_labels_only() {
        let reference = window(40, &[("a", 20), ("b", 20)]);
        let mut current = window(300, &[("a", 150), ("b", 150)]);
        current.rates = Some(RateCounts {
            runs: 300,
            ..RateCounts::default()
        });
        current.latency_p95_ms = Some(10);
        let names: Vec<String> = evaluate(&reference, &current, &DriftSettings::default())
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["output_labels", "output_labels_psi"]);
    }
}
