//! The strict parser for an LLM judge's verdict. The model call itself is the engine's.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::Score;
use crate::output::extract_json;

/// The scorer name whose model call the engine makes.
pub const JUDGE_SCORER: &str = "llm_judge";

/// The range a judge's `score` must lie in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JudgeScale {
    /// `0..=1`.
    Unit,
    /// `1..=5`, a Likert-style rating.
    FivePoint,
}

impl JudgeScale {
    /// The scale's bounds, inclusive.
    pub fn bounds(self) -> (f64, f64) {
        match self {
            JudgeScale::Unit => (0.0, 1.0),
            JudgeScale::FivePoint => (1.0, 5.0),
        }
    }

    /// A raw score on this scale mapped linearly onto `0..=1`, so every judge aggregates alike.
    pub fn normalize(self, raw: f64) -> f64 {
        let (low, high) = self.bounds();
        ((raw - low) / (high - low)).clamp(0.0, 1.0)
    }
}

/// A judge's verdict on one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeVerdict {
    /// The score mapped onto `0..=1`.
    pub score: f64,
    /// The score as the judge gave it, on its scale.
    pub raw_score: f64,
    /// The judge's own pass/fail.
    pub pass: bool,
    /// Why, in the judge's words.
    pub reason: String,
}

/// Parse a judge's answer: exactly one JSON object `{"score", "pass", "reason"}` (bare, fenced or
/// embedded in prose), with a number `score` within `scale`, a boolean `pass` and a non-empty
/// string `reason`. Anything else is an error, which the engine counts as a judge error — never a
/// pass — so a judge that rambles cannot inflate a score.
pub fn parse_judge_verdict(text: &str, scale: JudgeScale) -> Result<JudgeVerdict, String> {
    let value = extract_json(text).ok_or("the judge's answer contains no JSON object")?;
    let Json::Object(fields) = value else {
        return Err("the judge's answer is JSON but not an object".into());
    };
    if let Some(extra) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "score" | "pass" | "reason"))
    {
        return Err(format!(
            "the verdict has an unexpected field \"{extra}\"; expected exactly score, pass, reason"
        ));
    }
    let raw_score = match fields.get("score") {
        Some(Json::Number(n)) => n.as_f64().filter(|s| s.is_finite()),
        _ => None,
    }
    .ok_or("the verdict's \"score\" must be a number")?;
    let (low, high) = scale.bounds();
    if !(low..=high).contains(&raw_score) {
        return Err(format!(
            "the verdict's score {raw_score} is outside the scale {low}..={high}"
        ));
    }
    let Some(Json::Bool(pass)) = fields.get("pass") else {
        return Err("the verdict's \"pass\" must be true or false".into());
    };
    let reason = match fields.get("reason") {
        Some(Json::String(r)) if !r.trim().is_empty() => r.trim().to_string(),
        _ => return Err("the verdict's \"reason\" must be a non-empty string".into()),
    };
    Ok(JudgeVerdict {
        score: scale.normalize(raw_score),
        raw_score,
        pass: *pass,
        reason,
    })
}

impl Score {
    /// The judge's verdict as a score, with what asking it cost.
    pub fn judged(verdict: JudgeVerdict, cost_usd: f64) -> Score {
        Score {
            cost_usd: Some(cost_usd),
            ..Score::measured(verdict.score, verdict.pass, Some(verdict.reason))
        }
    }

    /// The judge could not grade the case: an error, scored 0 and never a pass.
    pub fn judge_error(detail: String, cost_usd: f64) -> Score {
        Score {
            error: true,
            cost_usd: Some(cost_usd),
            ..Score::binary(false, Some(detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_bare_fenced_and_embedded_objects() {
        let bare = r#"{"score": 0.8, "pass": true, "reason": "covers the refund"}"#;
        let verdict = parse_judge_verdict(bare, JudgeScale::Unit).unwrap();
        assert_eq!(verdict.score, 0.8);
        assert!(verdict.pass);
        assert_eq!(verdict.reason, "covers the refund");

        let fenced = "Verdict:\n```json\n{\"score\": 4, \"pass\": true, \"reason\": \"ok\"}\n```";
        let verdict = parse_judge_verdict(fenced, JudgeScale::FivePoint).unwrap();
        assert_eq!((verdict.raw_score, verdict.score), (4.0, 0.75));
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            ("PASS", JudgeScale::Unit),
            ("[1, true, \"x\"]", JudgeScale::Unit),
            (
                r#"{"score": "0.8", "pass": true, "reason": "x"}"#,
                JudgeScale::Unit,
            ),
            (
                r#"{"score": 0.8, "pass": "yes", "reason": "x"}"#,
                JudgeScale::Unit,
            ),
            (r#"{"score": 0.8, "pass": true}"#, JudgeScale::Unit),
            (
                r#"{"score": 0.8, "pass": true, "reason": "  "}"#,
                JudgeScale::Unit,
            ),
            (r#"{"pass": true, "reason": "x"}"#, JudgeScale::Unit),
            (
                r#"{"score": 3, "pass": true, "reason": "x"}"#,
                JudgeScale::Unit,
            ),
            (
                r#"{"score": 0, "pass": false, "reason": "x"}"#,
                JudgeScale::FivePoint,
            ),
            (
                r#"{"score": 1, "pass": true, "reason": "x", "confidence": 0.9}"#,
                JudgeScale::Unit,
            ),
        ];
        for (text, scale) in cases {
            assert!(parse_judge_verdict(text, scale).is_err(), "{text}");
        }
    }

    #[test]
    fn scales_normalize_linearly() {
        assert_eq!(JudgeScale::FivePoint.normalize(1.0), 0.0);
        assert_eq!(JudgeScale::FivePoint.normalize(5.0), 1.0);
        assert_eq!(JudgeScale::Unit.normalize(0.25), 0.25);
    }

    proptest! {
        #[test]
        fn arbitrary_text_is_a_verdict_or_an_error(text in "\\PC{0,80}") {
            if let Ok(v) = parse_judge_verdict(&text, JudgeScale::FivePoint) {
                prop_assert!((0.0..=1.0).contains(&v.score));
            }
        }

        #[test]
        fn valid_verdicts_round_trip(score in 1.0f64..=5.0, pass: bool, reason in "[a-z ]{0,20}[a-z]") {
            let text = serde_json::json!({"score": score, "pass": pass, "reason": reason}).to_string();
            let v = parse_judge_verdict(&text, JudgeScale::FivePoint).unwrap();
            // serde_json's default float parsing may differ from the printed value in the last bit.
            prop_assert!((v.raw_score - score).abs() < 1e-12);
            prop_assert_eq!(v.pass, pass);
            prop_assert!((0.0..=1.0).contains(&v.score));
        }
    }
}
