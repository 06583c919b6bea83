//! `numeric`: output and expected as numbers, equal within a tolerance.

use serde_json::Value as Json;

use super::{shorten, Score};

/// A finite number from a JSON number or a string such as `"42"`, `" -1,234.5 "` or `"1e3"`.
/// Commas are accepted only as thousands separators (`1,234`, not `1,23`), so a European
/// decimal comma is rejected rather than misread; `NaN`, infinities and units are rejected.
pub fn parse_number(value: &Json) -> Option<f64> {
    let number = match value {
        Json::Number(n) => n.as_f64()?,
        Json::String(s) => parse_text(s.trim())?,
        _ => return None,
    };
    number.is_finite().then_some(number)
}

fn parse_text(text: &str) -> Option<f64> {
    // Rust's float parser also takes "inf" and "NaN"; only plain numerals are numbers here.
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | ',' | 'e' | 'E'))
    {
        return None;
    }
    if !text.contains(',') {
        return text.parse().ok();
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let integer_end = unsigned.find(['.', 'e', 'E']).unwrap_or(unsigned.len());
    let (integer, rest) = unsigned.split_at(integer_end);
    if rest.contains(',') || !thousands_grouped(integer) {
        return None;
    }
    text.replace(',', "").parse().ok()
}

fn thousands_grouped(integer: &str) -> bool {
    let mut groups = integer.split(',');
    let first_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    first_ok && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
}

/// Passed when `|output - expected| <= abs` or `<= rel · |expected|`.
pub(super) fn numeric(output: &Json, expected: &Json, abs: f64, rel: f64) -> Score {
    let Some(want) = parse_number(expected) else {
        return Score::binary(
            false,
            Some(format!(
                "expected {} is not a number",
                shorten(&expected.to_string(), 40)
            )),
        );
    };
    let Some(got) = parse_number(output) else {
        return Score::binary(
            false,
            Some(format!(
                "output {} is not a number",
                shorten(&output.to_string(), 40)
            )),
        );
    };
    let off = (got - want).abs();
    let passed = off <= abs || off <= rel * want.abs();
    let detail = (!passed).then(|| format!("expected {want}, got {got} (off by {off})"));
    Score::binary(passed, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn numbers_from_strings() {
        let cases = [
            (json!(42), Some(42.0)),
            (json!(-0.5), Some(-0.5)),
            (json!("42"), Some(42.0)),
            (json!(" 1,234.5 "), Some(1234.5)),
            (json!("-1,234,567"), Some(-1_234_567.0)),
            (json!("1e3"), Some(1000.0)),
            (json!("+7."), Some(7.0)),
            (json!("1,23"), None),
            (json!("1,2345"), None),
            (json!(",123"), None),
            (json!("1.234,5"), None),
            (json!("NaN"), None),
            (json!("inf"), None),
            (json!("1e999"), None),
            (json!("42 EUR"), None),
            (json!(""), None),
            (json!(true), None),
            (json!([1]), None),
        ];
        for (value, want) in cases {
            assert_eq!(parse_number(&value), want, "{value}");
        }
    }

    #[test]
    fn absolute_or_relative_tolerance() {
        assert!(numeric(&json!("100.4"), &json!(100), 0.5, 0.0).passed);
        assert!(!numeric(&json!("100.6"), &json!(100), 0.5, 0.0).passed);
        assert!(numeric(&json!(104), &json!(100), 0.0, 0.05).passed);
        assert!(!numeric(&json!(106), &json!(100), 1.0, 0.05).passed);
        let miss = numeric(&json!("x"), &json!(1), 1.0, 1.0);
        assert!(miss.detail.unwrap().contains("not a number"));
        let bad = numeric(&json!(1), &json!("one"), 1.0, 1.0);
        assert!(bad.detail.unwrap().contains("expected"));
    }

    proptest! {
        #[test]
        fn formatted_integers_round_trip(n in -1_000_000_000i64..1_000_000_000) {
            let grouped = group_thousands(n);
            prop_assert_eq!(parse_number(&json!(grouped)), Some(n as f64));
            prop_assert_eq!(parse_number(&json!(n.to_string())), Some(n as f64));
        }

        #[test]
        fn any_text_is_a_number_or_none(s in "\\PC{0,20}") {
            if let Some(n) = parse_number(&json!(s)) {
                prop_assert!(n.is_finite());
            }
        }
    }

    fn group_thousands(n: i64) -> String {
        let digits = n.unsigned_abs().to_string();
        let mut groups: Vec<&str> = digits
            .as_bytes()
            .rchunks(3)
            .map(|g| std::str::from_utf8(g).unwrap())
            .collect();
        groups.reverse();
        let sign = if n < 0 { "-" } else { "" };
        format!("{sign}{}", groups.join(","))
    }
}
