//! Turning per-case scores into an eval's summary: means with 95% intervals, invalid rate,
//! latency, cost, the label report, the worst cases, gates and the baseline comparison.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_core::scorers::{LabelReport, Score};
use shopfloor_core::spec::EvalSpec;
use shopfloor_core::stats::{
    bootstrap_mean_interval, mean, paired_binary, paired_continuous, percentile, wilson_interval,
    Z_95,
};
use shopfloor_store::{EvalCaseRecord, RunStatus};

use crate::EngineError;

/// Bootstrap resamples for non-binary scores; fixed seed so reports are reproducible.
const BOOTSTRAP_RESAMPLES: usize = 1000;
const SEED: u64 = 0x5EED;
/// Cases listed as the worst of an eval.
pub const WORST_CASES: usize = 5;

/// One scorer's aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub scorer: String,
    pub mean: f64,
    /// 95% interval: Wilson for pass/fail scores, bootstrap of the mean otherwise.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Share of cases that passed this scorer.
    pub pass_rate: f64,
    pub higher_is_better: bool,
}

shopfloor_core::text_enum! {
    /// What a gate compares.
    pub enum GateKind {
        /// `[eval] gate`: the mean against a fixed threshold.
        Absolute => "absolute",
        /// `[eval] max_regression`: the drop against the baseline.
        Regression => "regression",
    }
}

/// A gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub scorer: String,
    pub kind: GateKind,
    pub threshold: f64,
    /// The measured mean (absolute) or the drop against the baseline (regression).
    pub actual: Option<f64>,
    pub passed: bool,
    /// A regression gate with nothing to compare with: it passes (a first eval must be able
    /// to), and says so as its own state rather than as a plain pass.
    #[serde(default)]
    pub no_baseline: bool,
    pub message: String,
}

/// One scorer compared with the baseline on the cases both evals share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreDelta {
    pub scorer: String,
    pub baseline: f64,
    pub current: f64,
    pub delta: f64,
    /// 95% interval of the paired difference (a bootstrap of the per-case differences).
    #[serde(default)]
    pub delta_low: f64,
    #[serde(default)]
    pub delta_high: f64,
    pub p_value: f64,
    pub significant: bool,
    pub improved: usize,
    pub regressed: usize,
}

/// The comparison with the workflow's baseline eval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    pub baseline_id: String,
    pub baseline_version: String,
    /// Cases present in both evals (paired by case id).
    pub paired_cases: usize,
    pub scores: Vec<ScoreDelta>,
    /// Case ids that passed the first scorer in the baseline and fail it now (up to 20).
    pub regressed_cases: Vec<String>,
    /// Case ids that failed before and pass now (up to 20).
    pub improved_cases: Vec<String>,
}

/// A case among the worst of the eval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstCase {
    pub case_id: String,
    pub line: u64,
    pub score: f64,
    pub expected: Value,
    pub output: Option<Value>,
    pub raw_output: Option<String>,
    pub status: String,
}

/// Everything an eval run concluded; stored as its summary and printed as its scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub eval_id: String,
    pub workflow: String,
    pub version: String,
    pub dataset: String,
    pub model_override: Option<String>,
    pub cases: u64,
    pub cached_cases: u64,
    pub scores: Vec<ScoreSummary>,
    pub invalid: u64,
    pub failed: u64,
    pub invalid_rate: f64,
    pub invalid_rate_ci: (f64, f64),
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub labels: Option<LabelReport>,
    pub worst: Vec<WorstCase>,
    pub gates: Vec<GateResult>,
    pub baseline: Option<BaselineComparison>,
    /// Cases the judge could not grade (failed call or unparseable verdict); never passes.
    #[serde(default)]
    pub judge_errors: u64,
    /// What the judge model cost.
    #[serde(default)]
    pub judge_cost_usd: f64,
    /// Every gate passed (true when there are no gates).
    pub passed: bool,
    /// Stopped before every case ran.
    pub interrupted: bool,
    /// The cases that came from review decisions (`source: review`), scored on their own:
    /// how a change does on what people corrected.
    #[serde(default)]
    pub review_slice: Option<SliceSummary>,
    /// Cases left out because their `expected` is still to be filled in.
    #[serde(default)]
    pub unanswered_cases: u64,
    /// How many examples the cases were shown, for a workflow with `[prompt] examples`
    /// (cases answered from the cache are not counted: their runs were not re-read).
    #[serde(default)]
    pub examples: Option<ExampleCounts>,
}

/// How many examples each case of an eval was shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExampleCounts {
    /// Cases counted (those that ran).
    pub cases: u64,
    pub min: u64,
    pub max: u64,
    /// Examples shown over all counted cases.
    pub total: u64,
}

impl ExampleCounts {
    /// The mean per counted case.
    pub fn mean(&self) -> f64 {
        if self.cases == 0 {
            0.0
        } else {
            self.total as f64 / self.cases as f64
        }
    }
}

/// The scores of one slice of an eval's cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceSummary {
    /// The tag that selects the slice.
    pub tag: String,
    pub cases: u64,
    /// Per scorer: its mean and pass rate over the slice.
    pub scores: Vec<SliceScore>,
}

/// A scorer's figures on a slice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceScore {
    pub scorer: String,
    pub mean: f64,
    pub pass_rate: f64,
}

/// What the aggregation needs to know of a scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub higher_is_better: bool,
}

/// Per-case facts kept in memory while an eval runs: small, fixed-size per case, so a
/// 100,000-case eval stays flat (outputs themselves stream to the store).
#[derive(Default)]
pub struct Accumulator {
    scorers: Vec<Metric>,
    labels: bool,
    values: Vec<Vec<f64>>,
    passed: Vec<Vec<bool>>,
    case_index: HashMap<String, usize>,
    latencies: Vec<u64>,
    /// Positions of the cases from review decisions.
    review_cases: Vec<usize>,
    label_pairs: Vec<(String, Option<String>)>,
    worst: Vec<WorstCase>,
    pub cases: u64,
    pub cached: u64,
    pub invalid: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub judge_errors: u64,
    pub judge_cost_usd: f64,
    pub examples: Option<ExampleCounts>,
}

impl Accumulator {
    /// A case that ran was shown `n` examples.
    pub fn examples_shown(&mut self, n: usize) {
        let n = n as u64;
        let counts = self.examples.get_or_insert(ExampleCounts {
            min: n,
            max: n,
            ..ExampleCounts::default()
        });
        counts.cases += 1;
        counts.total += n;
        counts.min = counts.min.min(n);
        counts.max = counts.max.max(n);
    }

    pub fn new(scorers: &[Metric]) -> Self {
        Self {
            labels: scorers.iter().any(|m| m.name == "label_accuracy"),
            scorers: scorers.to_vec(),
            values: vec![Vec::new(); scorers.len()],
            passed: vec![Vec::new(); scorers.len()],
            ..Self::default()
        }
    }

    /// Take in one scored case; it must carry a score of every scorer of the eval.
    pub fn add(&mut self, case: &EvalCaseRecord) -> Result<(), EngineError> {
        let scores = self
            .scorers
            .iter()
            .map(|scorer| {
                case.scores
                    .get(&scorer.name)
                    .ok_or_else(|| EngineError::Unscored {
                        case: case.case_id.clone(),
                        scorer: scorer.name.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index = self.latencies.len();
        self.case_index.insert(case.case_id.clone(), index);
        self.cases += 1;
        self.cached += u64::from(case.cached);
        if case
            .tags
            .iter()
            .any(|t| t == shopfloor_core::dataset::REVIEW_SOURCE_TAG)
        {
            self.review_cases.push(index);
        }
        match case.status {
            RunStatus::Invalid => self.invalid += 1,
            RunStatus::Failed | RunStatus::Refused => self.failed += 1,
            RunStatus::Ok | RunStatus::Held | RunStatus::Rejected => {}
        }
        self.latencies.push(case.latency_ms);
        self.prompt_tokens += case.prompt_tokens;
        self.completion_tokens += case.completion_tokens;
        self.cost_usd += case.cost_usd;
        for (i, score) in scores.iter().enumerate() {
            self.values[i].push(score.value);
            self.passed[i].push(score.passed);
            self.judge_errors += u64::from(score.error);
            self.judge_cost_usd += score.cost_usd.unwrap_or_default();
        }
        if self.labels {
            let expected = case.expected.as_str().unwrap_or_default().to_string();
            let predicted = case
                .output
                .as_ref()
                .and_then(Value::as_str)
                .map(String::from);
            self.label_pairs.push((expected, predicted));
        }
        if let Some(first) = scores.first() {
            self.track_worst(case, first.value);
        }
        Ok(())
    }

    /// `score` is the case's value on the first scorer.
    fn track_worst(&mut self, case: &EvalCaseRecord, score: f64) {
        let higher = self.scorers[0].higher_is_better;
        let badness = if higher { -score } else { score };
        let entry = WorstCase {
            case_id: case.case_id.clone(),
            line: case.line,
            score,
            expected: case.expected.clone(),
            output: case.output.clone(),
            raw_output: case.raw_output.clone(),
            status: case.status.as_str().to_string(),
        };
        let key = |w: &WorstCase| {
            if higher {
                -w.score
            } else {
                w.score
            }
        };
        if self.worst.len() < WORST_CASES {
            self.worst.push(entry);
        } else if let Some((i, least_bad)) = self
            .worst
            .iter()
            .enumerate()
            .min_by(|a, b| key(a.1).total_cmp(&key(b.1)))
        {
            if badness > key(least_bad) {
                self.worst[i] = entry;
            }
        }
    }

    /// Per-scorer aggregates.
    /// The review-derived cases' figures, when there are any.
    pub fn review_slice(&self) -> Option<SliceSummary> {
        if self.review_cases.is_empty() {
            return None;
        }
        let n = self.review_cases.len() as f64;
        let scores = self
            .scorers
            .iter()
            .enumerate()
            .map(|(i, scorer)| SliceScore {
                scorer: scorer.name.clone(),
                mean: self
                    .review_cases
                    .iter()
                    .map(|&c| self.values[i][c])
                    .sum::<f64>()
                    / n,
                pass_rate: self
                    .review_cases
                    .iter()
                    .filter(|&&c| self.passed[i][c])
                    .count() as f64
                    / n,
            })
            .collect();
        Some(SliceSummary {
            tag: shopfloor_core::dataset::REVIEW_SOURCE_TAG.to_string(),
            cases: self.review_cases.len() as u64,
            scores,
        })
    }

    pub fn scores(&self) -> Vec<ScoreSummary> {
        self.scorers
            .iter()
            .enumerate()
            .map(|(i, scorer)| {
                let values = &self.values[i];
                let passes = self.passed[i].iter().filter(|p| **p).count() as u64;
                let n = values.len() as u64;
                let binary = values.iter().all(|v| *v == 0.0 || *v == 1.0);
                let mean = mean(values).unwrap_or(0.0);
                let (ci_low, ci_high) = if binary && scorer.higher_is_better {
                    wilson_interval(values.iter().filter(|v| **v == 1.0).count() as u64, n, Z_95)
                } else {
                    bootstrap_mean_interval(values, BOOTSTRAP_RESAMPLES, SEED)
                        .unwrap_or((mean, mean))
                };
                ScoreSummary {
                    scorer: scorer.name.clone(),
                    mean,
                    ci_low,
                    ci_high,
                    pass_rate: if n == 0 {
                        0.0
                    } else {
                        passes as f64 / n as f64
                    },
                    higher_is_better: scorer.higher_is_better,
                }
            })
            .collect()
    }

    /// The label report, when `label_accuracy` is a scorer.
    pub fn label_report(&self) -> Option<LabelReport> {
        if self.label_pairs.is_empty() {
            return None;
        }
        Some(LabelReport::from_pairs(
            self.label_pairs
                .iter()
                .map(|(e, p)| (e.as_str(), p.as_deref())),
        ))
    }

    /// Latency percentiles (0–100) of the cases, sorting once.
    pub fn latency_percentiles(&self, ps: &[f64]) -> Vec<Option<u64>> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        ps.iter().map(|p| percentile(&sorted, *p)).collect()
    }

    pub fn worst(&self) -> Vec<WorstCase> {
        let mut worst = self.worst.clone();
        let higher = self.scorers.first().is_none_or(|m| m.higher_is_better);
        worst.sort_by(|a, b| {
            if higher {
                a.score.total_cmp(&b.score)
            } else {
                b.score.total_cmp(&a.score)
            }
        });
        worst
    }

    /// Compare with the baseline's cases (values and passes by scorer name, keyed by case id).
    pub fn compare(
        &self,
        baseline_id: &str,
        baseline_version: &str,
        baseline: &[EvalCaseRecord],
    ) -> BaselineComparison {
        let mut pairs: Vec<(usize, &EvalCaseRecord)> = Vec::new();
        for case in baseline {
            if let Some(&i) = self.case_index.get(&case.case_id) {
                pairs.push((i, case));
            }
        }
        let mut scores = Vec::new();
        let mut regressed_cases = Vec::new();
        let mut improved_cases = Vec::new();
        for (s, scorer) in self.scorers.iter().enumerate() {
            let name = scorer.name.as_str();
            // Paired only where the baseline scored this scorer too: a scorer added since
            // has nothing to be compared with.
            let scored: Vec<(usize, &EvalCaseRecord, &Score)> = pairs
                .iter()
                .filter_map(|&(i, c)| c.scores.get(name).map(|score| (i, c, score)))
                .collect();
            if scored.is_empty() {
                continue;
            }
            let before_values: Vec<f64> = scored.iter().map(|(_, _, b)| b.value).collect();
            let after_values: Vec<f64> = scored.iter().map(|(i, ..)| self.values[s][*i]).collect();
            let binary = before_values
                .iter()
                .chain(&after_values)
                .all(|v| *v == 0.0 || *v == 1.0);
            let result = if binary {
                let before: Vec<bool> = scored.iter().map(|(_, _, b)| b.passed).collect();
                let after: Vec<bool> = scored.iter().map(|(i, ..)| self.passed[s][*i]).collect();
                if s == 0 {
                    for (k, (b, a)) in before.iter().zip(&after).enumerate() {
                        let id = &scored[k].1.case_id;
                        if *b && !*a && regressed_cases.len() < 20 {
                            regressed_cases.push(id.clone());
                        } else if !*b && *a && improved_cases.len() < 20 {
                            improved_cases.push(id.clone());
                        }
                    }
                }
                paired_binary(&before, &after)
            } else {
                paired_continuous(&before_values, &after_values, SEED)
            };
            let differences: Vec<f64> = after_values
                .iter()
                .zip(&before_values)
                .map(|(a, b)| a - b)
                .collect();
            let (delta_low, delta_high) =
                bootstrap_mean_interval(&differences, BOOTSTRAP_RESAMPLES, SEED)
                    .unwrap_or((result.delta, result.delta));
            scores.push(ScoreDelta {
                scorer: name.to_string(),
                baseline: mean(&before_values).unwrap_or(0.0),
                current: mean(&after_values).unwrap_or(0.0),
                delta: result.delta,
                delta_low,
                delta_high,
                p_value: result.p_value,
                significant: result.significant(),
                improved: result.improved,
                regressed: result.regressed,
            });
        }
        BaselineComparison {
            baseline_id: baseline_id.to_string(),
            baseline_version: baseline_version.to_string(),
            paired_cases: pairs.len(),
            scores,
            regressed_cases,
            improved_cases,
        }
    }
}

/// Apply `[eval] gate` (absolute) and `max_regression` (against the baseline).
pub fn gates(
    spec: Option<&EvalSpec>,
    scores: &[ScoreSummary],
    baseline: Option<&BaselineComparison>,
) -> Vec<GateResult> {
    let Some(spec) = spec else { return Vec::new() };
    let mut out = Vec::new();
    for (scorer, threshold) in &spec.gate {
        let summary = scores.iter().find(|s| &s.scorer == scorer);
        let (actual, passed) = match summary {
            Some(s) if s.higher_is_better => (Some(s.mean), s.mean >= *threshold),
            Some(s) => (Some(s.mean), s.mean <= *threshold),
            None => (None, false),
        };
        let relation = if summary.is_none_or(|s| s.higher_is_better) {
            "at least"
        } else {
            "at most"
        };
        out.push(GateResult {
            scorer: scorer.clone(),
            kind: GateKind::Absolute,
            threshold: *threshold,
            actual,
            passed,
            no_baseline: false,
            message: match actual {
                Some(a) => format!("{scorer} = {a:.4}, required {relation} {threshold}"),
                None => format!("{scorer} was not scored"),
            },
        });
    }
    for (scorer, max_drop) in &spec.max_regression {
        let delta = baseline.and_then(|b| b.scores.iter().find(|s| &s.scorer == scorer));
        let higher = scores
            .iter()
            .find(|s| &s.scorer == scorer)
            .is_none_or(|s| s.higher_is_better);
        // What decides: the drop of the mean against the baseline, on the cases both evals
        // share, is at most `max_drop`. The paired test is reported beside it, not used: a
        // significant drop within the allowance passes, an insignificant one past it fails.
        let (actual, passed, message) = match delta {
            None => (None, true, format!("{scorer}: no baseline to compare with (set one with `shopfloor evals baseline EVAL_ID`)")),
            Some(d) => {
                let drop = if higher { d.baseline - d.current } else { d.current - d.baseline };
                (
                    Some(drop),
                    drop <= *max_drop,
                    format!(
                        "{scorer} moved from {:.4} to {:.4} against the baseline (allowed regression {max_drop}; paired test p = {:.3}{}, reported, not deciding)",
                        d.baseline,
                        d.current,
                        d.p_value,
                        if d.significant { ", significant" } else { "" }
                    ),
                )
            }
        };
        out.push(GateResult {
            scorer: scorer.clone(),
            kind: GateKind::Regression,
            threshold: *max_drop,
            actual,
            passed,
            no_baseline: delta.is_none(),
            message,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EvalSpec {
        EvalSpec {
            dataset: None,
            scorers: vec!["label_accuracy".into()],
            gate: Vec::new(),
            max_regression: vec![("label_accuracy".into(), 0.05)],
            judge: None,
            min_cases: None,
        }
    }

    fn comparison(baseline: f64, current: f64, significant: bool) -> BaselineComparison {
        BaselineComparison {
            baseline_id: "b".into(),
            baseline_version: "v0".into(),
            paired_cases: 100,
            scores: vec![ScoreDelta {
                scorer: "label_accuracy".into(),
                baseline,
                current,
                delta: current - baseline,
                delta_low: current - baseline - 0.02,
                delta_high: current - baseline + 0.02,
                p_value: if significant { 0.01 } else { 0.4 },
                significant,
                improved: 0,
                regressed: 0,
            }],
            regressed_cases: Vec::new(),
            improved_cases: Vec::new(),
        }
    }

    #[test]
    fn the_drop_decides_a_regression_gate_and_no_baseline_is_its_own_state() {
        let spec = spec();
        let none = gates(Some(&spec), &[], None);
        assert!(none[0].passed && none[0].no_baseline, "{none:?}");
        // A significant drop within the allowance passes; an insignificant one past it fails.
        let within = gates(Some(&spec), &[], Some(&comparison(0.80, 0.77, true)));
        assert!(within[0].passed && !within[0].no_baseline, "{within:?}");
        assert!(
            within[0].message.contains("p = 0.010, significant"),
            "{within:?}"
        );
        let past = gates(Some(&spec), &[], Some(&comparison(0.80, 0.70, false)));
        assert!(!past[0].passed, "{past:?}");
    }
}
