//! Experiments (issue 28): a variant of a workflow takes a share of its production traffic,
//! and the numbers say whether it earns the rest or is cut.
//!
//! Everything here is pure: which arm a subject falls in ([`assign`]), the figures of an arm
//! ([`ArmFigures`]), whether a guardrail is breached ([`Guardrail::breach`]) and what the
//! always-valid interval on the metric recommends ([`recommend`]). The store counts the
//! figures; the engine acts on what this module decides.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sequential::{self, Interval};

/// The name of the workflow's own arm in every experiment.
pub const CONTROL: &str = "control";
/// The α of every experiment's confidence sequence.
pub const ALPHA: f64 = 0.05;
/// Runs each arm needs before its guardrails are read: the first window.
pub const GUARDRAIL_WINDOW: u64 = 20;

crate::text_enum! {
    /// What an experiment measures, per arm.
    pub enum Metric {
        /// Reviewed outputs approved as the model wrote them, of all reviewed (higher is better).
        AcceptanceRate => "acceptance_rate",
        /// Runs whose answer broke the output contract, of all runs (lower is better).
        InvalidRate => "invalid_rate",
        /// Cost of the arm's runs per run (lower is better).
        CostPerRun => "cost_per_run",
        /// Cost of the arm's runs per output accepted unchanged (lower is better).
        CostPerAccepted => "cost_per_accepted",
        /// The 95th percentile of the arm's run latency (lower is better).
        P95LatencyMs => "p95_latency_ms",
    }
}

impl Metric {
    /// The metric named `text`, or a message listing them.
    pub fn from_text(text: &str) -> Result<Metric, String> {
        Metric::parse(text).ok_or_else(|| {
            format!(
                "unknown metric \"{text}\"; expected one of: {}",
                Metric::expected()
            )
        })
    }

    /// Whether more is better.
    pub fn higher_is_better(self) -> bool {
        self == Metric::AcceptanceRate
    }

    /// Whether the metric is a mean of per-run outcomes, which the confidence sequence can
    /// test; a ratio of sums or a percentile can only be a guardrail.
    pub fn testable(self) -> bool {
        matches!(
            self,
            Metric::AcceptanceRate | Metric::InvalidRate | Metric::CostPerRun
        )
    }

    /// The minimum detectable effect when the experiment names none: 5 points for a rate,
    /// a tenth of the control's value otherwise.
    pub fn default_mde(self, control: Option<f64>) -> f64 {
        match self {
            Metric::AcceptanceRate | Metric::InvalidRate => 0.05,
            _ => control.map_or(0.0, |c| c.abs() / 10.0),
        }
    }
}

/// A limit a guardrail holds the variant to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Limit {
    /// The variant's value itself (`invalid_rate:0.1`).
    Absolute(f64),
    /// A multiple of the control's value (`cost_per_accepted:1.5x`).
    Relative(f64),
}

/// A metric the variant must not make worse than its limit; breached, the variant's traffic
/// stops at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    pub metric: Metric,
    pub limit: Limit,
}

impl Guardrail {
    /// `METRIC:LIMIT`, the limit a number or a multiple of the control's value (`3x`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (metric, limit) = text.split_once(':').ok_or_else(|| {
            format!("guardrail \"{text}\": expected METRIC:LIMIT, e.g. cost_per_accepted:1.5x or invalid_rate:0.1")
        })?;
        let metric = Metric::parse(metric.trim()).ok_or_else(|| {
            format!(
                "guardrail \"{text}\": unknown metric \"{metric}\"; expected one of: {}",
                Metric::expected()
            )
        })?;
        let limit = limit.trim();
        let (number, relative) = match limit.strip_suffix('x') {
            Some(number) => (number, true),
            None => (limit, false),
        };
        let value: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                format!("guardrail \"{text}\": limit \"{limit}\" is not a number ≥ 0 (or a multiple such as 1.5x)")
            })?;
        Ok(Self {
            metric,
            limit: if relative {
                Limit::Relative(value)
            } else {
                Limit::Absolute(value)
            },
        })
    }

    /// The guardrail as `parse` reads it.
    pub fn text(&self) -> String {
        match self.limit {
            Limit::Absolute(v) => format!("{}:{v}", self.metric),
            Limit::Relative(v) => format!("{}:{v}x", self.metric),
        }
    }

    /// Why the variant breaches this guardrail, once both arms have a full first window;
    /// `None` while it holds or cannot be read yet.
    pub fn breach(&self, control: &ArmFigures, variant: &ArmFigures) -> Option<String> {
        if control.runs < GUARDRAIL_WINDOW || variant.runs < GUARDRAIL_WINDOW {
            return None;
        }
        let value = variant.value(self.metric)?;
        let bound = match self.limit {
            Limit::Absolute(v) => v,
            Limit::Relative(v) => control.value(self.metric)? * v,
        };
        let breached = if self.metric.higher_is_better() {
            value < bound
        } else {
            value > bound
        };
        breached.then(|| {
            let side = if self.metric.higher_is_better() {
                "below"
            } else {
                "above"
            };
            let of_control = match self.limit {
                Limit::Relative(v) => format!(
                    " ({v}× the control's {})",
                    format_value(self.metric, control.value(self.metric).unwrap_or(0.0))
                ),
                Limit::Absolute(_) => String::new(),
            };
            format!(
                "guardrail {}: the variant's {} is {}, {side} its limit {}{of_control}, after {} runs",
                self.text(),
                self.metric,
                format_value(self.metric, value),
                format_value(self.metric, bound),
                variant.runs
            )
        })
    }
}

/// A metric's value as people read it.
pub fn format_value(metric: Metric, value: f64) -> String {
    match metric {
        Metric::AcceptanceRate | Metric::InvalidRate => format!("{:.1}%", value * 100.0),
        Metric::CostPerRun | Metric::CostPerAccepted => format!("${value:.6}"),
        Metric::P95LatencyMs => format!("{value:.0} ms"),
    }
}

/// The arm a subject falls in: the variant when the hash of (experiment, subject) is below
/// the variant's share. The same on every replica and at every call, so one person sees one
/// variant.
pub fn assign(experiment_id: &str, subject: &str, share: f64) -> bool {
    let digest = Sha256::new()
        .chain_update(experiment_id.as_bytes())
        .chain_update([0])
        .chain_update(subject.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let point = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    point < share
}

/// What one arm's runs add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmFigures {
    pub runs: u64,
    /// Runs whose answer broke the output contract.
    pub invalid: u64,
    /// Runs a reviewer decided (approved, edited or rejected).
    pub reviewed: u64,
    /// Of those, approved as the model wrote them.
    pub accepted: u64,
    pub cost_usd: f64,
    /// The sum of each run's cost squared, for the variance of the cost per run.
    pub cost_sq: f64,
    pub p95_latency_ms: Option<u64>,
}

impl ArmFigures {
    /// The arm's value of `metric`; `None` while it has nothing to divide by.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        let ratio = |a: f64, b: u64| (b > 0).then(|| a / b as f64);
        match metric {
            Metric::AcceptanceRate => ratio(self.accepted as f64, self.reviewed),
            Metric::InvalidRate => ratio(self.invalid as f64, self.runs),
            Metric::CostPerRun => ratio(self.cost_usd, self.runs),
            Metric::CostPerAccepted => ratio(self.cost_usd, self.accepted),
            Metric::P95LatencyMs => self.p95_latency_ms.map(|ms| ms as f64),
        }
    }

    /// The per-run outcomes of a testable metric, as the confidence sequence reads them.
    pub fn outcomes(&self, metric: Metric) -> Option<sequential::Arm> {
        let (n, sum, sum_sq) = match metric {
            Metric::AcceptanceRate => (self.reviewed, self.accepted as f64, self.accepted as f64),
            Metric::InvalidRate => (self.runs, self.invalid as f64, self.invalid as f64),
            Metric::CostPerRun => (self.runs, self.cost_usd, self.cost_sq),
            Metric::CostPerAccepted | Metric::P95LatencyMs => return None,
        };
        Some(sequential::Arm { n, sum, sum_sq })
    }
}

crate::text_enum! {
    /// What the numbers say to do with the variant.
    pub enum Verdict {
        /// Not enough evidence yet either way.
        Continue => "continue",
        /// The variant is better on the metric: give it the workflow's traffic.
        Keep => "keep",
        /// The variant is worse, or the lift it was meant to show is ruled out.
        Cut => "cut",
    }
}

/// A recommendation with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub verdict: Verdict,
    /// The variant's value minus the control's, with its always-valid interval; `None` while
    /// an arm has fewer than two outcomes.
    pub difference: Option<Interval>,
    /// Why, in words, with the figures.
    pub reason: String,
}

/// What an experiment's numbers recommend, read at any time: keep when the always-valid
/// interval on the difference lies wholly on the better side of zero, cut when wholly on the
/// worse side, or when, after the planned runs in each arm, it rules out a gain of `mde`.
pub fn recommend(
    metric: Metric,
    control: &ArmFigures,
    variant: &ArmFigures,
    planned_runs: u64,
    mde: f64,
) -> Recommendation {
    let (Some(a), Some(b)) = (control.outcomes(metric), variant.outcomes(metric)) else {
        return Recommendation {
            verdict: Verdict::Continue,
            difference: None,
            reason: format!("{metric} cannot be tested; it can only be a guardrail"),
        };
    };
    let rho = sequential::mixing(planned_runs.saturating_mul(2), ALPHA);
    let Some(interval) = sequential::difference(&a, &b, ALPHA, rho) else {
        return Recommendation {
            verdict: Verdict::Continue,
            difference: None,
            reason: format!(
                "waiting for outcomes: {} control, {} variant (at least 2 each)",
                a.n, b.n
            ),
        };
    };
    let show = |v: f64| format_difference(metric, v);
    let range = format!(
        "{} (95% always-valid interval {} to {})",
        show(interval.estimate),
        show(interval.low),
        show(interval.high)
    );
    // The gain: positive when the variant is better, whichever way the metric points.
    let sign = if metric.higher_is_better() { 1.0 } else { -1.0 };
    let (gain_low, gain_high) = if sign > 0.0 {
        (interval.low, interval.high)
    } else {
        (-interval.high, -interval.low)
    };
    let counts = format!("{} control and {} variant outcomes", a.n, b.n);
    let (verdict, reason) = if gain_low > 0.0 {
        (
            Verdict::Keep,
            format!("the variant is better on {metric}: {range}, from {counts}"),
        )
    } else if gain_high < 0.0 {
        (
            Verdict::Cut,
            format!("the variant is worse on {metric}: {range}, from {counts}"),
        )
    } else if a.n >= planned_runs && b.n >= planned_runs && gain_high < mde {
        (
            Verdict::Cut,
            format!(
                "after the planned {planned_runs} outcomes per arm a gain of {} is ruled out: {range}",
                show(mde)
            ),
        )
    } else {
        (
            Verdict::Continue,
            format!("no difference shown yet on {metric}: {range}, from {counts}"),
        )
    };
    Recommendation {
        verdict,
        difference: Some(interval),
        reason,
    }
}

/// A difference of a metric as people read it (points for rates).
fn format_difference(metric: Metric, value: f64) -> String {
    match metric {
        Metric::AcceptanceRate | Metric::InvalidRate => format!("{:+.1} points", value * 100.0),
        Metric::CostPerRun | Metric::CostPerAccepted => format!("{value:+.6} USD"),
        Metric::P95LatencyMs => format!("{value:+.0} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(runs: u64, reviewed: u64, accepted: u64) -> ArmFigures {
        ArmFigures {
            runs,
            reviewed,
            accepted,
            ..ArmFigures::default()
        }
    }

    #[test]
    fn assignment_is_sticky_and_splits_by_share() {
        let in_variant = (0..10_000)
            .filter(|i| assign("exp-1", &format!("user-{i}"), 0.1))
            .count();
        assert!((900..1100).contains(&in_variant), "{in_variant}");
        for i in 0..100 {
            let subject = format!("user-{i}");
            assert_eq!(
                assign("exp-1", &subject, 0.3),
                assign("exp-1", &subject, 0.3)
            );
        }
        // Another experiment draws its own split.
        let same = (0..1000)
            .filter(|i| {
                let s = format!("user-{i}");
                assign("exp-1", &s, 0.5) == assign("exp-2", &s, 0.5)
            })
            .count();
        assert!((400..600).contains(&same), "{same}");
        assert!(!assign("exp-1", "anyone", 0.0));
        assert!(assign("exp-1", "anyone", 1.0));
    }

    #[test]
    fn guardrails_parse_and_name_their_problems() {
        let g = Guardrail::parse("cost_per_accepted:1.5x").unwrap();
        assert_eq!(g.metric, Metric::CostPerAccepted);
        assert_eq!(g.limit, Limit::Relative(1.5));
        assert_eq!(g.text(), "cost_per_accepted:1.5x");
        assert_eq!(
            Guardrail::parse("invalid_rate: 0.1").unwrap().limit,
            Limit::Absolute(0.1)
        );
        let err = Guardrail::parse("speed:2").unwrap_err();
        assert!(err.contains("unknown metric \"speed\""), "{err}");
        assert!(err.contains("acceptance_rate"), "{err}");
        let err = Guardrail::parse("invalid_rate").unwrap_err();
        assert!(err.contains("METRIC:LIMIT"), "{err}");
        let err = Guardrail::parse("invalid_rate:lots").unwrap_err();
        assert!(err.contains("\"lots\" is not a number"), "{err}");
    }

    #[test]
    fn a_guardrail_reads_only_a_full_window_and_names_the_figures() {
        let cost = |runs: u64, per_run: f64| ArmFigures {
            runs,
            accepted: runs / 2,
            reviewed: runs,
            cost_usd: per_run * runs as f64,
            ..ArmFigures::default()
        };
        let g = Guardrail::parse("cost_per_accepted:2x").unwrap();
        assert_eq!(g.breach(&cost(100, 0.001), &cost(10, 0.003)), None);
        let why = g.breach(&cost(100, 0.001), &cost(20, 0.003)).unwrap();
        assert!(
            why.contains("$0.006000, above its limit $0.004000"),
            "{why}"
        );
        assert_eq!(g.breach(&cost(100, 0.001), &cost(20, 0.0019)), None);
        // Higher is better: an acceptance floor.
        let floor = Guardrail::parse("acceptance_rate:0.5").unwrap();
        assert!(floor
            .breach(&rates(40, 40, 30), &rates(40, 40, 19))
            .is_some());
        assert!(floor
            .breach(&rates(40, 40, 30), &rates(40, 40, 20))
            .is_none());
    }

    #[test]
    fn recommendations_follow_the_interval() {
        // A clear lift in acceptance: keep.
        let keep = recommend(
            Metric::AcceptanceRate,
            &rates(2000, 2000, 1000),
            &rates(2000, 2000, 1400),
            1000,
            0.05,
        );
        assert_eq!(keep.verdict, Verdict::Keep, "{}", keep.reason);
        assert!(keep.reason.contains("+20.0 points"), "{}", keep.reason);
        // The same difference on a lower-is-better metric: cut.
        let worse = recommend(
            Metric::InvalidRate,
            &ArmFigures {
                runs: 2000,
                invalid: 100,
                ..ArmFigures::default()
            },
            &ArmFigures {
                runs: 2000,
                invalid: 300,
                ..ArmFigures::default()
            },
            1000,
            0.05,
        );
        assert_eq!(worse.verdict, Verdict::Cut, "{}", worse.reason);
        // No difference: continue until the planned runs, then cut for want of the lift.
        let early = recommend(
            Metric::AcceptanceRate,
            &rates(200, 200, 100),
            &rates(200, 200, 100),
            1000,
            0.05,
        );
        assert_eq!(early.verdict, Verdict::Continue);
        let late = recommend(
            Metric::AcceptanceRate,
            &rates(20_000, 20_000, 10_000),
            &rates(20_000, 20_000, 10_000),
            1000,
            0.05,
        );
        assert_eq!(late.verdict, Verdict::Cut, "{}", late.reason);
        assert!(late.reason.contains("ruled out"), "{}", late.reason);
        // A ratio cannot be tested.
        let ratio = recommend(
            Metric::CostPerAccepted,
            &rates(10, 10, 5),
            &rates(10, 10, 5),
            100,
            0.0,
        );
        assert_eq!(ratio.verdict, Verdict::Continue);
        assert!(!Metric::CostPerAccepted.testable());
    }
}
