//! JSON scorers: structural equality and `json_match` (field-by-field credit).

use serde_json::{Map, Value as Json};

use super::{shorten, Score};
use crate::output::extract_json;

/// Mismatches listed in a detail; the rest are counted, not named.
const MAX_LISTED: usize = 10;

/// Structural equality: strings after trim, numbers within `tolerance` (absolute, so
/// `1` equals `1.0`), arrays element by element, objects key by key.
pub(super) fn values_equal(a: &Json, b: &Json, tolerance: f64) -> bool {
    match (a, b) {
        (Json::String(x), Json::String(y)) => x.trim() == y.trim(),
        (Json::Number(x), Json::Number(y)) => match (x.as_f64(), y.as_f64()) {
            // NaN-safe: a NaN tolerance compares false, so it is treated as exact.
            (Some(x), Some(y)) => x == y || (x - y).abs() <= tolerance,
            _ => x == y,
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y, tolerance))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, xv)| y.get(k).is_some_and(|yv| values_equal(xv, yv, tolerance)))
        }
        _ => a == b,
    }
}

/// `json_match`: the share of the expected object's leaf fields the output matches.
///
/// Every leaf of `expected` (nested non-empty objects are walked, anything else — arrays,
/// empty objects, scalars — is one leaf) counts once in the denominator; so does every extra
/// key of the output that `expected` does not have, at any depth, which is how extra fields
/// count against the score. A missing field counts as all of its leaves missed. An expected
/// value that is not an object is scored as one leaf. A string output holding JSON is parsed.
pub(super) fn json_match(output: &Json, expected: &Json, tolerance: f64) -> Score {
    let parsed;
    let output = match (output, expected) {
        (Json::String(text), Json::Object(_)) => match extract_json(text) {
            Some(value) => {
                parsed = value;
                &parsed
            }
            None => output,
        },
        _ => output,
    };
    let mut tally = Tally::default();
    tally.compare("", expected, output, tolerance);
    let value = if tally.total == 0 {
        1.0
    } else {
        tally.matched as f64 / tally.total as f64
    };
    let passed = tally.matched == tally.total;
    Score::rate(value, passed, tally.detail())
}

#[derive(Default)]
struct Tally {
    matched: usize,
    total: usize,
    problems: Vec<String>,
    unlisted: usize,
}

impl Tally {
    fn compare(&mut self, path: &str, expected: &Json, actual: &Json, tolerance: f64) {
        match (expected, actual) {
            (Json::Object(e), Json::Object(a)) if !e.is_empty() => self.walk(path, e, a, tolerance),
            (Json::Object(e), _) if !e.is_empty() => {
                self.total += leaves(expected);
                self.problem(format!(
                    "{}: expected an object, got {}",
                    shown(path),
                    shorten(&actual.to_string(), 40)
                ));
            }
            _ => {
                self.total += 1;
                if values_equal(expected, actual, tolerance) {
                    self.matched += 1;
                } else {
                    self.problem(format!(
                        "{}: expected {}, got {}",
                        shown(path),
                        shorten(&expected.to_string(), 40),
                        shorten(&actual.to_string(), 40)
                    ));
                }
            }
        }
    }

    fn walk(
        &mut self,
        path: &str,
        expected: &Map<String, Json>,
        actual: &Map<String, Json>,
        tolerance: f64,
    ) {
        for (key, e) in expected {
            let child = format!("{path}/{}", escape(key));
            match actual.get(key) {
                Some(a) => self.compare(&child, e, a, tolerance),
                None => {
                    self.total += leaves(e);
                    self.problem(format!("{child}: missing"));
                }
            }
        }
        for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
            self.total += 1;
            self.problem(format!("{path}/{}: extra", escape(key)));
        }
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(text);
        } else {
            self.unlisted += 1;
        }
    }

    fn detail(&self) -> Option<String> {
        if self.problems.is_empty() {
            return None;
        }
        let mut text = self.problems.join("; ");
        if self.unlisted > 0 {
            text.push_str(&format!("; … and {} more", self.unlisted));
        }
        Some(text)
    }
}

/// How many leaves a value counts for: the same rule as [`Tally::compare`].
fn leaves(value: &Json) -> usize {
    match value {
        Json::Object(map) if !map.is_empty() => map.values().map(leaves).sum(),
        _ => 1,
    }
}

/// A JSON Pointer token (RFC 6901), so paths stay unambiguous for keys with `/` in them.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn field_credit_with_tolerance_trim_and_nesting() {
        let expected =
            json!({"amount": 10.0, "currency": "EUR", "party": {"name": "Acme", "vat": "DE1"}});
        let output =
            json!({"amount": 10.004, "currency": " EUR ", "party": {"name": "Acme", "vat": "DE2"}});
        let score = json_match(&output, &expected, 0.01);
        assert_eq!(score.value, 0.75);
        assert!(!score.passed);
        assert_eq!(
            score.detail.unwrap(),
            "/party/vat: expected \"DE1\", got \"DE2\""
        );
        assert_eq!(json_match(&output, &expected, 0.0).value, 0.5);
    }

    #[test]
    fn missing_and_extra_fields_count_against() {
        let expected = json!({"a": 1, "b": {"c": 2, "d": 3}});
        let output = json!({"a": 1, "x": true});
        // total = 1 (a) + 2 (b's leaves, missing) + 1 (extra x) = 4; matched = 1.
        let score = json_match(&output, &expected, 0.0);
        assert_eq!(score.value, 0.25);
        let detail = score.detail.unwrap();
        assert!(
            detail.contains("/b: missing") && detail.contains("/x: extra"),
            "{detail}"
        );
    }

    #[test]
    fn non_objects_and_strings_holding_json() {
        assert_eq!(json_match(&json!([1, 2]), &json!({"a": 1}), 0.0).value, 0.0);
        assert_eq!(
            json_match(&json!("{\"a\": 1}"), &json!({"a": 1}), 0.0).value,
            1.0
        );
        assert_eq!(json_match(&json!(3), &json!(3.0), 0.0).value, 1.0);
        assert_eq!(json_match(&json!({}), &json!({}), 0.0).value, 1.0);
        assert_eq!(json_match(&json!({"a": 1}), &json!({}), 0.0).value, 0.0);
        let arrays = json_match(&json!({"tags": ["a", "b"]}), &json!({"tags": ["a"]}), 0.0);
        assert_eq!(arrays.value, 0.0);
    }

    #[test]
    fn keys_with_slashes_are_escaped_and_long_lists_cut() {
        let score = json_match(&json!({}), &json!({"a/b": 1}), 0.0);
        assert_eq!(score.detail.unwrap(), "/a~1b: missing");
        let expected: Map<String, Json> = (0..15).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let score = json_match(&json!({}), &Json::Object(expected), 0.0);
        assert!(score.detail.unwrap().ends_with("… and 5 more"));
    }

    #[test]
    fn structural_equality() {
        assert!(values_equal(&json!(1), &json!(1.0), 0.0));
        assert!(values_equal(&json!({"a": " x"}), &json!({"a": "x "}), 0.0));
        assert!(!values_equal(
            &json!({"a": 1}),
            &json!({"a": 1, "b": 2}),
            0.0
        ));
        assert!(!values_equal(&json!(null), &json!(false), 0.0));
        assert!(values_equal(&json!(u64::MAX), &json!(u64::MAX), 0.0));
    }

    proptest! {
        #[test]
        fn identical_objects_match_fully(fields in prop::collection::btree_map("[a-z/~]{1,4}", prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            "\\PC{0,10}".prop_map(Json::String),
            prop::collection::btree_map("[a-z]{1,3}", any::<bool>(), 0..3).prop_map(|m| json!(m)),
        ], 0..6)) {
            let value = json!(fields);
            let score = json_match(&value, &value, 0.0);
            prop_assert_eq!(score.value, 1.0);
            prop_assert!(score.passed && score.detail.is_none());
        }

        #[test]
        fn match_share_is_a_rate(a in "\\PC{0,40}", b in "\\PC{0,40}") {
            let (a, b) = (extract_json(&a).unwrap_or(json!(a)), extract_json(&b).unwrap_or(json!(b)));
            let score = json_match(&a, &b, 0.0);
            prop_assert!((0.0..=1.0).contains(&score.value));
        }
    }
}
