//! Scorers: turning one eval case (output, expected, measured facts) into a score.
//!
//! Every scorer here is a pure function of its [`CaseFacts`]. `llm_judge` needs a model call, so
//! the engine scores it; this module only parses the judge's verdict ([`parse_judge_verdict`]).
//! Rates (every scorer but `latency_ms` and `cost`) have values in `0..=1`; budgets carry the
//! measured figure so that aggregates (mean, percentiles) stay in their unit.

mod json;
mod judge;
mod labels;
mod numeric;
mod text;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use judge::{parse_judge_verdict, JudgeScale, JudgeVerdict, JUDGE_SCORER};
pub use labels::{LabelReport, LabelStats, INVALID_COLUMN};
pub use numeric::parse_number;
pub use text::{levenshtein_similarity, token_f1, MAX_LEVENSHTEIN_CHARS, MAX_REGEX_PATTERN_CHARS};

/// What the engine knows about one scored case.
#[derive(Debug, Clone, Copy)]
pub struct CaseFacts<'a> {
    /// The validated output; `None` when the run failed or its answer broke the contract.
    pub output: Option<&'a Json>,
    /// The model's raw answer, when there was one; shown in details of invalid cases.
    pub raw_output: Option<&'a str>,
    /// The dataset's `expected` value for this case.
    pub expected: &'a Json,
    /// Wall-clock time of the run, all attempts included.
    pub latency_ms: u64,
    /// What the run cost, all attempts included.
    pub cost_usd: f64,
}

/// The result of scoring one case with one scorer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// In `0..=1` for rates; the measured figure (ms, USD) for budgets.
    pub value: f64,
    /// Whether this case counts as a success (used by paired comparisons and case listings).
    pub passed: bool,
    /// Why, when the value alone does not say (mismatched fields, a bad pattern, …).
    pub detail: Option<String>,
}

impl Score {
    /// A 1-or-0 score.
    pub fn binary(passed: bool, detail: Option<String>) -> Score {
        Score {
            value: if passed { 1.0 } else { 0.0 },
            passed,
            detail,
        }
    }

    /// A fractional rate, clamped to `0..=1` (NaN becomes 0) so aggregates never see garbage.
    pub fn rate(value: f64, passed: bool, detail: Option<String>) -> Score {
        let value = if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 1.0)
        };
        Score {
            value,
            passed,
            detail,
        }
    }
}

/// Default absolute tolerance of `numeric`: tight enough for money, loose enough for float noise.
pub const DEFAULT_NUMERIC_ABS: f64 = 1e-6;
/// Default absolute tolerance of `json_match` on numbers.
pub const DEFAULT_JSON_TOLERANCE: f64 = 1e-6;
/// Default token F1 from which a `similarity` case counts as passed.
pub const DEFAULT_SIMILARITY_PASS: f64 = 0.8;

/// A pure scorer, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scorer {
    /// Output equals expected: strings after trim, JSON structurally (numbers by value).
    Exact,
    /// The output label equals the expected one after [`crate::output::normalize_label`].
    LabelAccuracy,
    /// The expected text (or each of a list of texts) occurs in the output, ignoring case.
    Contains,
    /// The expected value is a regular expression the output text must match.
    Regex,
    /// The run produced an output that passed its contract.
    JsonValid,
    /// Fraction of the expected object's fields the output matches.
    JsonMatch {
        /// Absolute tolerance for numbers.
        tolerance: f64,
    },
    /// Output and expected as numbers, equal within `abs` or within `rel` of expected.
    Numeric {
        /// Absolute tolerance.
        abs: f64,
        /// Tolerance relative to `|expected|`.
        rel: f64,
    },
    /// Token F1 between output and expected text (Levenshtein similarity in the detail).
    Similarity {
        /// Token F1 from which the case counts as passed.
        pass_at: f64,
    },
    /// Latency of the run in ms; passed within the budget.
    LatencyMs {
        /// Per-case budget in ms.
        budget: u64,
    },
    /// Cost of the run in USD; passed within the budget.
    Cost {
        /// Per-case budget in USD.
        budget_usd: f64,
    },
}

impl Scorer {
    /// The scorer an `[eval] scorers` name stands for, with default parameters.
    ///
    /// Budgets default to unlimited (every case passes, the figure is still recorded); use
    /// [`Scorer::with_gate`] to take the budget from the workflow's gate.
    pub fn parse(name: &str) -> Result<Scorer, String> {
        Ok(match name {
            "exact" => Scorer::Exact,
            "label_accuracy" => Scorer::LabelAccuracy,
            "contains" => Scorer::Contains,
            "regex" => Scorer::Regex,
            "json_valid" => Scorer::JsonValid,
            "json_match" => Scorer::JsonMatch {
                tolerance: DEFAULT_JSON_TOLERANCE,
            },
            "numeric" => Scorer::Numeric {
                abs: DEFAULT_NUMERIC_ABS,
                rel: 0.0,
            },
            "similarity" => Scorer::Similarity {
                pass_at: DEFAULT_SIMILARITY_PASS,
            },
            "latency_ms" => Scorer::LatencyMs { budget: u64::MAX },
            "cost" => Scorer::Cost {
                budget_usd: f64::INFINITY,
            },
            JUDGE_SCORER => {
                return Err(format!(
                    "\"{JUDGE_SCORER}\" needs a model call and is scored by the engine; \
                     core only parses its verdict (parse_judge_verdict)"
                ))
            }
            other => {
                return Err(format!(
                    "unknown scorer \"{other}\"; expected one of: {}",
                    crate::spec::KNOWN_SCORERS.join(", ")
                ))
            }
        })
    }

    /// The name used in `[eval] scorers`.
    pub fn name(&self) -> &'static str {
        match self {
            Scorer::Exact => "exact",
            Scorer::LabelAccuracy => "label_accuracy",
            Scorer::Contains => "contains",
            Scorer::Regex => "regex",
            Scorer::JsonValid => "json_valid",
            Scorer::JsonMatch { .. } => "json_match",
            Scorer::Numeric { .. } => "numeric",
            Scorer::Similarity { .. } => "similarity",
            Scorer::LatencyMs { .. } => "latency_ms",
            Scorer::Cost { .. } => "cost",
        }
    }

    /// Budgets are gated from above (lower is better); rates from below.
    pub fn higher_is_better(&self) -> bool {
        !matches!(self, Scorer::LatencyMs { .. } | Scorer::Cost { .. })
    }

    /// Take a per-case budget from the workflow's gate value; rates are gated on their
    /// aggregate, so they are returned unchanged. Negative or NaN gates become a zero budget.
    pub fn with_gate(self, gate: f64) -> Scorer {
        let gate = if gate.is_nan() { 0.0 } else { gate.max(0.0) };
        match self {
            // `as` saturates, so a huge gate becomes u64::MAX rather than wrapping.
            Scorer::LatencyMs { .. } => Scorer::LatencyMs {
                budget: gate.floor() as u64,
            },
            Scorer::Cost { .. } => Scorer::Cost { budget_usd: gate },
            other => other,
        }
    }

    /// Score one case. Never panics; rates without a valid output score 0.
    pub fn score(&self, case: &CaseFacts) -> Score {
        match *self {
            Scorer::LatencyMs { budget } => {
                return Score {
                    value: case.latency_ms as f64,
                    passed: case.latency_ms <= budget,
                    detail: None,
                }
            }
            Scorer::Cost { budget_usd } => {
                return Score {
                    value: case.cost_usd,
                    // A NaN cost compares false: an unknown cost never passes a budget.
                    passed: case.cost_usd <= budget_usd,
                    detail: None,
                };
            }
            _ => {}
        }
        let Some(output) = case.output else {
            return Score::binary(false, Some(invalid_detail(case.raw_output)));
        };
        match *self {
            Scorer::Exact => text::exact(output, case.expected),
            Scorer::LabelAccuracy => labels::label_accuracy(output, case.expected),
            Scorer::Contains => text::contains(output, case.expected),
            Scorer::Regex => text::regex_match(output, case.expected),
            Scorer::JsonValid => Score::binary(true, None),
            Scorer::JsonMatch { tolerance } => json::json_match(output, case.expected, tolerance),
            Scorer::Numeric { abs, rel } => numeric::numeric(output, case.expected, abs, rel),
            Scorer::Similarity { pass_at } => text::similarity(output, case.expected, pass_at),
            // Handled above; kept so the match stays exhaustive without a wildcard.
            Scorer::LatencyMs { .. } | Scorer::Cost { .. } => Score::binary(false, None),
        }
    }
}

fn invalid_detail(raw: Option<&str>) -> String {
    match raw {
        Some(raw) => format!("no valid output (answer: {:?})", shorten(raw, 80)),
        None => "no valid output".to_string(),
    }
}

/// The text a text scorer looks at: a string as is, any other value as compact JSON.
fn as_text(value: &Json) -> Cow<'_, str> {
    match value {
        Json::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut; details stay readable.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::KNOWN_SCORERS;
    use proptest::prelude::*;
    use serde_json::json;

    fn facts<'a>(output: Option<&'a Json>, expected: &'a Json) -> CaseFacts<'a> {
        CaseFacts {
            output,
            raw_output: None,
            expected,
            latency_ms: 120,
            cost_usd: 0.002,
        }
    }

    fn all_scorers() -> Vec<Scorer> {
        KNOWN_SCORERS
            .iter()
            .filter_map(|n| Scorer::parse(n).ok())
            .collect()
    }

    #[test]
    fn every_known_scorer_but_the_judge_parses_and_round_trips() {
        for name in KNOWN_SCORERS {
            match Scorer::parse(name) {
                Ok(scorer) => assert_eq!(scorer.name(), name),
                Err(e) => {
                    assert_eq!(name, JUDGE_SCORER);
                    assert!(e.contains("engine"), "{e}");
                }
            }
        }
        let err = Scorer::parse("accuracy").unwrap_err();
        assert!(err.contains("label_accuracy"), "{err}");
    }

    #[test]
    fn budgets_come_from_gates() {
        let latency = Scorer::parse("latency_ms").unwrap().with_gate(100.0);
        assert_eq!(latency, Scorer::LatencyMs { budget: 100 });
        let out = json!("x");
        let score = latency.score(&facts(Some(&out), &out));
        assert_eq!((score.value, score.passed), (120.0, false));
        let cost = Scorer::parse("cost").unwrap().with_gate(0.01);
        let score = cost.score(&facts(None, &out));
        assert_eq!((score.value, score.passed), (0.002, true));
        assert_eq!(Scorer::Exact.with_gate(0.5), Scorer::Exact);
        assert!(!cost.higher_is_better() && Scorer::Exact.higher_is_better());
        assert_eq!(
            Scorer::parse("latency_ms").unwrap().with_gate(f64::NAN),
            Scorer::LatencyMs { budget: 0 }
        );
    }

    #[test]
    fn unlimited_budgets_pass_and_record_the_figure() {
        let out = json!("x");
        let case = facts(Some(&out), &out);
        let score = Scorer::parse("latency_ms").unwrap().score(&case);
        assert_eq!((score.value, score.passed), (120.0, true));
        let nan_cost = CaseFacts {
            cost_usd: f64::NAN,
            ..case
        };
        assert!(!Scorer::parse("cost").unwrap().score(&nan_cost).passed);
    }

    #[test]
    fn invalid_outputs_score_zero_on_every_rate() {
        let expected = json!({"a": 1});
        let case = CaseFacts {
            raw_output: Some("I cannot help with that"),
            ..facts(None, &expected)
        };
        for scorer in all_scorers().into_iter().filter(Scorer::higher_is_better) {
            let score = scorer.score(&case);
            assert_eq!((score.value, score.passed), (0.0, false), "{scorer:?}");
            assert!(score.detail.unwrap().contains("cannot help"));
        }
    }

    #[test]
    fn json_valid_is_one_for_any_output() {
        let out = json!(null);
        assert_eq!(Scorer::JsonValid.score(&facts(Some(&out), &out)).value, 1.0);
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("hé", 2), "hé");
    }

    fn any_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|n| json!(n)),
            "\\PC{0,20}".prop_map(Json::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn rates_stay_in_unit_interval_and_never_panic(output in any_json(), expected in any_json(), valid: bool) {
            let case = facts(valid.then_some(&output), &expected);
            for scorer in all_scorers() {
                let score = scorer.score(&case);
                if scorer.higher_is_better() {
                    prop_assert!((0.0..=1.0).contains(&score.value), "{:?}: {}", scorer, score.value);
                    prop_assert_eq!(score.passed && score.value == 0.0, false);
                }
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(output in "\\PC{0,60}", expected in "\\PC{0,60}") {
            let (output, expected) = (Json::String(output), Json::String(expected));
            for scorer in all_scorers() {
                let score = scorer.score(&facts(Some(&output), &expected));
                prop_assert!(!score.value.is_nan());
            }
        }

        #[test]
        fn a_value_scores_perfectly_against_itself(value in any_json()) {
            let case = facts(Some(&value), &value);
            // `contains` is left out: a list expected means "each item", not "this JSON text".
            for name in ["exact", "json_match", "similarity", "json_valid"] {
                let score = Scorer::parse(name).unwrap().score(&case);
                prop_assert_eq!(score.value, 1.0, "{}: {:?}", name, score.detail);
                prop_assert!(score.passed);
            }
        }
    }
}
