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
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
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
///
/// Stored per case as JSON, `{"value": 1.0, "passed": true, "detail": null}`, with `error` and
/// `cost_usd` only where the judge set them; rows written before those fields existed read the
/// same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// In `0..=1` for rates; the measured figure (ms, USD) for budgets.
    #[serde(deserialize_with = "figure")]
    pub value: f64,
    /// Whether this case counts as a success (used by paired comparisons and case listings).
    pub passed: bool,
    /// Why, when the value alone does not say (mismatched fields, a bad pattern, …).
    #[serde(default)]
    pub detail: Option<String>,
    /// The judge could not grade the case (a failed call or an unparseable verdict); pure
    /// scorers never set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
    /// What scoring the case cost: the judge's model call. `None` for pure scorers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// Every scorer's verdict on one eval case, keyed by scorer name: what the store keeps per case.
pub type CaseScores = BTreeMap<String, Score>;

/// JSON has no NaN: serde_json writes a non-finite figure as `null`, so `null` reads back as NaN
/// rather than as a made-up number.
fn figure<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

impl Score {
    /// A 1-or-0 score.
    pub fn binary(passed: bool, detail: Option<String>) -> Score {
        Score::measured(if passed { 1.0 } else { 0.0 }, passed, detail)
    }

    /// A fractional rate, clamped to `0..=1` (NaN becomes 0) so aggregates never see garbage.
    pub fn rate(value: f64, passed: bool, detail: Option<String>) -> Score {
        let value = if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 1.0)
        };
        Score::measured(value, passed, detail)
    }

    /// A figure as measured (a budget's ms or USD), unclamped.
    pub fn measured(value: f64, passed: bool, detail: Option<String>) -> Score {
        Score {
            value,
            passed,
            detail,
            error: false,
            cost_usd: None,
        }
    }
}

/// Default absolute tolerance of `numeric`: tight enough for money, loose enough for float noise.
pub const DEFAULT_NUMERIC_ABS: f64 = 1e-6;
/// Default absolute tolerance of `json_match` on numbers.
pub const DEFAULT_JSON_TOLERANCE: f64 = 1e-6;
/// Default token F1 from which a `similarity` case counts as passed.
pub const DEFAULT_SIMILARITY_PASS: f64 = 0.8;
/// Default share of key points from which a `coverage` case counts as passed.
pub const DEFAULT_COVERAGE_PASS: f64 = 0.5;

/// How a scorer turns a case into a score.
#[derive(Clone, Copy)]
enum Rule {
    /// A rate of a valid output against the expected value, given the scorer's parameter (a
    /// tolerance or a pass mark; most ignore it). A case without a valid output scores 0.
    Rate(fn(&Json, &Json, f64) -> Score),
    /// A measured figure of the run (ms, USD), passed within a per-case budget (the parameter)
    /// taken from the workflow's gate. Budgets are gated from above: lower is better.
    Budget(fn(&CaseFacts) -> f64),
}

/// One pure scorer: its `[eval] scorers` name, its rule and its parameter's default.
struct Registration {
    name: &'static str,
    rule: Rule,
    default: f64,
}

/// Every pure scorer. A new scorer is its function, in a module of this folder, and one line
/// here; the config check, the engine and the messages all read this table.
const SCORERS: &[Registration] = &[
    rate("exact", |o, e, _| text::exact(o, e), 0.0),
    rate(
        "label_accuracy",
        |o, e, _| labels::label_accuracy(o, e),
        0.0,
    ),
    rate("contains", |o, e, _| text::contains(o, e), 0.0),
    rate("regex", |o, e, _| text::regex_match(o, e), 0.0),
    rate("json_valid", |_, _, _| Score::binary(true, None), 0.0),
    rate("json_match", json::json_match, DEFAULT_JSON_TOLERANCE),
    rate(
        "numeric",
        |o, e, abs| numeric::numeric(o, e, abs, 0.0),
        DEFAULT_NUMERIC_ABS,
    ),
    rate("similarity", text::similarity, DEFAULT_SIMILARITY_PASS),
    rate("coverage", text::coverage, DEFAULT_COVERAGE_PASS),
    // Budgets are unlimited until a gate sets one: every case passes, the figure is kept.
    budget("latency_ms", |case| case.latency_ms as f64),
    budget("cost", |case| case.cost_usd),
];

const fn rate(
    name: &'static str,
    rule: fn(&Json, &Json, f64) -> Score,
    default: f64,
) -> Registration {
    Registration {
        name,
        rule: Rule::Rate(rule),
        default,
    }
}

const fn budget(name: &'static str, figure: fn(&CaseFacts) -> f64) -> Registration {
    Registration {
        name,
        rule: Rule::Budget(figure),
        default: f64::INFINITY,
    }
}

/// Every name an `[eval] scorers` list may hold: the pure scorers, then the judge.
pub fn known_scorers() -> impl Iterator<Item = &'static str> {
    SCORERS.iter().map(|r| r.name).chain([JUDGE_SCORER])
}

/// The message for a scorer name that is not one of [`known_scorers`].
pub fn unknown_scorer(name: &str) -> String {
    format!(
        "unknown scorer \"{name}\"; expected one of: {}",
        known_scorers().collect::<Vec<_>>().join(", ")
    )
}

/// A pure scorer, with its parameter.
#[derive(Clone, Copy)]
pub struct Scorer {
    registration: &'static Registration,
    param: f64,
}

impl PartialEq for Scorer {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.param.to_bits() == other.param.to_bits()
    }
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name(), self.param)
    }
}

impl Scorer {
    /// The scorer an `[eval] scorers` name stands for, with default parameters.
    ///
    /// Budgets default to unlimited (every case passes, the figure is still recorded); use
    /// [`Scorer::with_gate`] to take the budget from the workflow's gate.
    pub fn parse(name: &str) -> Result<Scorer, String> {
        if name == JUDGE_SCORER {
            return Err(format!(
                "\"{JUDGE_SCORER}\" needs a model call and is scored by the engine; \
                 core only parses its verdict (parse_judge_verdict)"
            ));
        }
        SCORERS
            .iter()
            .find(|r| r.name == name)
            .map(|registration| Scorer {
                registration,
                param: registration.default,
            })
            .ok_or_else(|| unknown_scorer(name))
    }

    /// The name used in `[eval] scorers`.
    pub fn name(&self) -> &'static str {
        self.registration.name
    }

    /// Budgets are gated from above (lower is better); rates from below.
    pub fn higher_is_better(&self) -> bool {
        matches!(self.registration.rule, Rule::Rate(_))
    }

    /// A budget's per-case limit; `None` for rates.
    pub fn budget(&self) -> Option<f64> {
        (!self.higher_is_better()).then_some(self.param)
    }

    /// Take a per-case budget from the workflow's gate value; rates are gated on their
    /// aggregate, so they are returned unchanged. Negative or NaN gates become a zero budget.
    pub fn with_gate(self, gate: f64) -> Scorer {
        if self.higher_is_better() {
            return self;
        }
        let gate = if gate.is_nan() { 0.0 } else { gate.max(0.0) };
        Scorer {
            param: gate,
            ..self
        }
    }

    /// Score one case. Never panics; rates without a valid output score 0.
    pub fn score(&self, case: &CaseFacts) -> Score {
        match self.registration.rule {
            Rule::Budget(figure) => {
                let figure = figure(case);
                // A NaN figure compares false: an unknown cost never passes a budget.
                Score::measured(figure, figure <= self.param, None)
            }
            Rule::Rate(rate) => match case.output {
                Some(output) => rate(output, case.expected, self.param),
                None => Score::binary(false, Some(invalid_detail(case.raw_output))),
            },
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
        known_scorers()
            .filter_map(|n| Scorer::parse(n).ok())
            .collect()
    }

    #[test]
    fn every_known_scorer_but_the_judge_parses_and_round_trips() {
        for name in known_scorers() {
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
        assert_eq!(latency.budget(), Some(100.0));
        let out = json!("x");
        let score = latency.score(&facts(Some(&out), &out));
        assert_eq!((score.value, score.passed), (120.0, false));
        let cost = Scorer::parse("cost").unwrap().with_gate(0.01);
        let score = cost.score(&facts(None, &out));
        assert_eq!((score.value, score.passed), (0.002, true));
        let exact = Scorer::parse("exact").unwrap();
        assert_eq!(exact.with_gate(0.5), exact);
        assert!(!cost.higher_is_better() && exact.higher_is_better());
        assert_eq!(
            Scorer::parse("latency_ms")
                .unwrap()
                .with_gate(f64::NAN)
                .budget(),
            Some(0.0)
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
        let json_valid = Scorer::parse("json_valid").unwrap();
        assert_eq!(json_valid.score(&facts(Some(&out), &out)).value, 1.0);
    }

    #[test]
    fn stored_scores_read_back_as_written_and_as_older_rows_wrote_them() {
        let mut scores = CaseScores::new();
        scores.insert("exact".into(), Score::binary(true, None));
        let verdict = JudgeVerdict {
            score: 0.5,
            raw_score: 3.0,
            pass: false,
            reason: "vague".into(),
        };
        scores.insert(JUDGE_SCORER.into(), Score::judged(verdict, 0.25));
        scores.insert("cost".into(), Score::measured(f64::NAN, false, None));
        let text = serde_json::to_string(&scores).unwrap();
        assert_eq!(
            text,
            r#"{"cost":{"value":null,"passed":false,"detail":null},"exact":{"value":1.0,"passed":true,"detail":null},"llm_judge":{"value":0.5,"passed":false,"detail":"vague","cost_usd":0.25}}"#
        );
        let back: CaseScores = serde_json::from_str(&text).unwrap();
        assert!(back["cost"].value.is_nan());
        assert_eq!(back["exact"], scores["exact"]);
        assert_eq!(back[JUDGE_SCORER], scores[JUDGE_SCORER]);

        // As the engine wrote them before scores were typed.
        let old = r#"{"label_accuracy": {"detail": null, "passed": false, "value": 0.0},
            "llm_judge": {"detail": "judge error: timed out", "error": true, "passed": false, "value": 0.0, "cost_usd": 0.0}}"#;
        let old: CaseScores = serde_json::from_str(old).unwrap();
        assert_eq!(old["label_accuracy"], Score::binary(false, None));
        assert_eq!(
            old[JUDGE_SCORER],
            Score::judge_error("judge error: timed out".into(), 0.0)
        );
        // A score without its verdict is refused, never read as 0.
        assert!(serde_json::from_str::<CaseScores>(r#"{"exact": {"value": 1.0}}"#).is_err());
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
