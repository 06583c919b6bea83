//! Always-valid inference for experiments (issue 28): a confidence sequence for the difference
//! of two arms' means of outcomes in [0, 1] (accepted unchanged or not, invalid or not). It
//! holds at every look at once, so an experiment's status can be read every day without the
//! false positives that repeated fixed-sample tests accumulate.
//!
//! The boundary is the normal-mixture asymptotic confidence sequence of Waudby-Smith, Arbour,
//! Sinha, Kennedy and Ramdas ("Time-uniform central limit theory and asymptotic confidence
//! sequences", 2021), the form sequential A/B testing tools use: with `N` runs so far, `s²` the
//! variance of the difference scaled to one run and `ρ` tuned for the planned number of runs,
//!
//! ```text
//! half-width = sqrt( 2 (N s² ρ² + 1) / (N² ρ²) · ln( sqrt(N s² ρ² + 1) / α ) )
//! ```
//!
//! [`simulate`] runs this on simulated A/A and A/B data, to show what it promises holds here.

use crate::stats::{splitmix64, Z_95};

/// The running sums of one arm's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Arm {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Arm {
    pub fn push(&mut self, outcome: f64) {
        self.n += 1;
        self.sum += outcome;
        self.sum_sq += outcome * outcome;
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// The sample variance (n − 1).
    pub fn variance(&self) -> f64 {
        let n = self.n as f64;
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
    }
}

/// An estimate and its interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Whether zero lies outside: the arms differ.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// The mixing parameter `ρ` that makes the sequence tightest around `planned` total runs.
pub fn mixing(planned: u64, alpha: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / planned.max(1) as f64).sqrt()
}

/// The `1 − alpha` confidence sequence's interval for `mean(b) − mean(a)` after the runs so
/// far; `None` while an arm has fewer than two.
pub fn difference(a: &Arm, b: &Arm, alpha: f64, rho: f64) -> Option<Interval> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let estimate = b.mean() - a.mean();
    let n = (a.n + b.n) as f64;
    let scaled = n * (a.variance() / a.n as f64 + b.variance() / b.n as f64);
    let v = n * scaled * rho * rho;
    let half = (2.0 * (v + 1.0) / (n * n * rho * rho) * ((v + 1.0).sqrt() / alpha).ln()).sqrt();
    Some(Interval {
        estimate,
        low: estimate - half,
        high: estimate + half,
    })
}

/// What one simulated experiment is: its arms' true rates, runs and looks.
#[derive(Debug, Clone, Copy)]
pub struct Simulation {
    pub experiments: u32,
    /// Runs per experiment, alternating between the arms.
    pub runs: u64,
    /// Looks, evenly spaced; the experiment stops at the first that excludes zero.
    pub looks: u32,
    /// The control arm's rate.
    pub base: f64,
    /// The variant's rate minus the control's (0 for A/A).
    pub lift: f64,
    pub alpha: f64,
    pub seed: u64,
}

/// The share of simulated experiments in which some look's interval excluded zero: the
/// false-positive rate for `lift = 0` (it must stay at most `alpha` however many looks), the
/// power otherwise. With `naive`, each look is a fixed-sample 95% z-interval instead (what
/// peeking at a plain test does).
pub fn simulate(simulation: &Simulation, naive: bool) -> f64 {
    let Simulation {
        experiments,
        runs,
        looks,
        base,
        lift,
        alpha,
        seed,
    } = *simulation;
    let rho = mixing(runs, alpha);
    let looks = u64::from(looks.max(1));
    let mut rejected = 0u32;
    let mut draw = 0u64;
    for experiment in 0..experiments {
        let stream = splitmix64(seed, u64::from(experiment) + 1);
        let (mut a, mut b) = (Arm::default(), Arm::default());
        let mut next_look = 1;
        for run in 0..runs {
            draw += 1;
            let uniform = (splitmix64(stream, draw) >> 11) as f64 / (1u64 << 53) as f64;
            if run % 2 == 0 {
                a.push(f64::from(u8::from(uniform < base)));
            } else {
                b.push(f64::from(u8::from(uniform < base + lift)));
            }
            if run + 1 == runs * next_look / looks {
                next_look += 1;
                let interval = if naive {
                    fixed_sample(&a, &b)
                } else {
                    difference(&a, &b, alpha, rho)
                };
                if interval.is_some_and(|i| i.excludes_zero()) {
                    rejected += 1;
                    break;
                }
            }
        }
    }
    f64::from(rejected) / f64::from(experiments.max(1))
}

/// A fixed-sample 95% z-interval for the difference: valid at one planned look only.
fn fixed_sample(a: &Arm, b: &Arm) -> Option<Interval> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let estimate = b.mean() - a.mean();
    let se = (a.variance() / a.n as f64 + b.variance() / b.n as f64).sqrt();
    Some(Interval {
        estimate,
        low: estimate - Z_95 * se,
        high: estimate + Z_95 * se,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aa(experiments: u32, runs: u64, looks: u32) -> Simulation {
        Simulation {
            experiments,
            runs,
            looks,
            base: 0.5,
            lift: 0.0,
            alpha: 0.05,
            seed: 20261207,
        }
    }

    #[test]
    fn looking_often_keeps_false_positives_under_alpha_where_a_plain_test_does_not() {
        let simulation = aa(600, 1000, 30);
        let sequential = simulate(&simulation, false);
        let peeking = simulate(&simulation, true);
        assert!(sequential <= 0.05, "A/A false positives {sequential}");
        assert!(peeking > 0.08, "peeking at a plain test: {peeking}");
    }

    #[test]
    fn a_real_lift_is_found_and_more_often_with_more_runs() {
        let lift = |runs| {
            simulate(
                &Simulation {
                    lift: 0.1,
                    ..aa(200, runs, 20)
                },
                false,
            )
        };
        let (small, large) = (lift(400), lift(4000));
        assert!(large > 0.95, "power at 4000 runs: {large}");
        assert!(small < large, "{small} vs {large}");
    }

    #[test]
    fn the_interval_narrows_as_runs_come_in_and_holds_the_estimate() {
        let (mut a, mut b) = (Arm::default(), Arm::default());
        let rho = mixing(2000, 0.05);
        let mut widths = Vec::new();
        for i in 0..2000u64 {
            a.push(f64::from(u8::from(i % 2 == 0)));
            b.push(f64::from(u8::from(i % 3 != 0)));
            if (i + 1) % 500 == 0 {
                let interval = difference(&a, &b, 0.05, rho).unwrap();
                assert!(interval.low < interval.estimate && interval.estimate < interval.high);
                widths.push(interval.high - interval.low);
            }
        }
        assert!(widths.windows(2).all(|w| w[1] < w[0]), "{widths:?}");
        assert!(difference(&Arm::default(), &b, 0.05, rho).is_none());
    }
}
