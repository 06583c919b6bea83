//! Text scorers: `exact`, `contains`, `regex` and `similarity`.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::json::values_equal;
use super::{as_text, shorten, Score};

/// Longest regex pattern accepted, in characters; datasets are data, not code to trust.
pub const MAX_REGEX_PATTERN_CHARS: usize = 4096;
/// Compiled-program size limit handed to the regex crate, so a short pattern with huge
/// repetition counts cannot eat memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Characters of each side the Levenshtein similarity looks at; keeps it at most
/// `MAX_LEVENSHTEIN_CHARS²` steps however long the texts are.
pub const MAX_LEVENSHTEIN_CHARS: usize = 2000;

/// `exact`: equal after trim (strings) or structurally (JSON). When exactly one side is a
/// string, its trimmed text is compared with the other side's compact JSON, so a text answer
/// "42" matches an expected number 42.
pub(super) fn exact(output: &Json, expected: &Json) -> Score {
    let equal = match (output, expected) {
        (Json::String(_), Json::String(_)) => values_equal(output, expected, 0.0),
        (Json::String(s), other) | (other, Json::String(s)) => {
            // Not `*other == s`: serde_json's `Value == str` only matches string values.
            let other_text = other.to_string();
            s.trim() == other_text
        }
        _ => values_equal(output, expected, 0.0),
    };
    let detail = (!equal).then(|| {
        format!(
            "expected {}, got {}",
            shorten(&expected.to_string(), 80),
            shorten(&output.to_string(), 80)
        )
    });
    Score::binary(equal, detail)
}

/// `contains`: the expected text occurs in the output text, ignoring case. An expected array
/// of strings asks for each of them; the value is the fraction found.
pub(super) fn contains(output: &Json, expected: &Json) -> Score {
    let (found, detail) = found_in(output, expected, str::to_lowercase);
    Score::rate(found, detail.is_none(), detail)
}

/// `coverage`: the share of the expected key points (an array of short phrases: names,
/// numbers, decisions) that the output states, ignoring case and runs of whitespace; a case
/// passes from `pass` (default 0.5). What a summary is scored by.
pub(super) fn coverage(output: &Json, expected: &Json, pass: f64) -> Score {
    let normal = |text: &str| {
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let (found, detail) = found_in(output, expected, normal);
    Score::rate(found, found >= pass, detail)
}

/// The fraction of the expected strings (one, or an array) found in the output, both read
/// through `normal`, and which were missing.
fn found_in(
    output: &Json,
    expected: &Json,
    normal: impl Fn(&str) -> String,
) -> (f64, Option<String>) {
    let haystack = normal(&as_text(output));
    let needles: Vec<String> = match expected {
        Json::Array(items) => items.iter().map(|i| as_text(i).into_owned()).collect(),
        other => vec![as_text(other).into_owned()],
    };
    if needles.is_empty() {
        return (1.0, None);
    }
    let missing: Vec<&String> = needles
        .iter()
        .filter(|n| !haystack.contains(&normal(n)))
        .collect();
    let found = needles.len() - missing.len();
    let detail = (!missing.is_empty()).then(|| {
        let list: Vec<String> = missing
            .iter()
            .take(5)
            .map(|m| format!("{:?}", shorten(m, 40)))
            .collect();
        format!("not found: {}", list.join(", "))
    });
    (found as f64 / needles.len() as f64, detail)
}

/// `regex`: the expected string is a pattern the output text must match (anywhere; anchor
/// with `^…$` for a full match). A bad or oversized pattern scores 0 with a detail.
pub(super) fn regex_match(output: &Json, expected: &Json) -> Score {
    let Json::String(pattern) = expected else {
        return Score::binary(
            false,
            Some("expected must be a regex pattern string".to_string()),
        );
    };
    if pattern.chars().count() > MAX_REGEX_PATTERN_CHARS {
        return Score::binary(
            false,
            Some(format!(
                "the pattern is longer than {MAX_REGEX_PATTERN_CHARS} characters"
            )),
        );
    }
    let compiled = regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build();
    match compiled {
        Ok(re) => {
            let matched = re.is_match(&as_text(output));
            let detail = (!matched).then(|| format!("no match for /{}/", shorten(pattern, 60)));
            Score::binary(matched, detail)
        }
        Err(e) => Score::binary(false, Some(format!("invalid regex pattern: {e}"))),
    }
}

/// `similarity`: token F1 is the value; the detail also shows the Levenshtein similarity.
pub(super) fn similarity(output: &Json, expected: &Json, pass_at: f64) -> Score {
    let (output, expected) = (as_text(output), as_text(expected));
    let f1 = token_f1(&output, &expected);
    let lev = levenshtein_similarity(&output, &expected);
    Score::rate(
        f1,
        f1 >= pass_at,
        Some(format!("token_f1={f1:.3} levenshtein={lev:.3}")),
    )
}

fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// Token-level F1 (SQuAD style: lowercase, split on non-alphanumerics, multiset overlap).
/// Two texts without tokens are identical (1); one without tokens scores 0.
pub fn token_f1(output: &str, expected: &str) -> f64 {
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut expected_len = 0usize;
    for t in tokens(expected) {
        *counts.entry(t).or_default() += 1;
        expected_len += 1;
    }
    let mut output_len = 0usize;
    let mut overlap = 0usize;
    for t in tokens(output) {
        output_len += 1;
        if let Some(c) = counts.get_mut(&t) {
            if *c > 0 {
                *c -= 1;
                overlap += 1;
            }
        }
    }
    if expected_len == 0 && output_len == 0 {
        return 1.0;
    }
    if overlap == 0 {
        return 0.0;
    }
    let precision = overlap as f64 / output_len as f64;
    let recall = overlap as f64 / expected_len as f64;
    2.0 * precision * recall / (precision + recall)
}

/// `1 - distance / max_len` over characters, on the first [`MAX_LEVENSHTEIN_CHARS`] of each
/// text. Two empty texts are identical (1).
pub fn levenshtein_similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().take(MAX_LEVENSHTEIN_CHARS).collect();
    let b: Vec<char> = b.chars().take(MAX_LEVENSHTEIN_CHARS).collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    1.0 - levenshtein(&a, &b) as f64 / longest as f64
}

/// Classic two-row dynamic programme: O(n·m) time, O(m) memory.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn exact_trims_strings_and_compares_json_structurally() {
        assert!(exact(&json!("  yes\n"), &json!("yes")).passed);
        assert!(!exact(&json!("Yes"), &json!("yes")).passed);
        assert!(exact(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})).passed);
        assert!(exact(&json!(" 42 "), &json!(42)).passed);
        assert!(exact(&json!(true), &json!("true")).passed);
        let miss = exact(&json!({"a": 1}), &json!({"a": 2}));
        assert_eq!(miss.value, 0.0);
        assert!(miss.detail.unwrap().contains("expected {\"a\":2}"));
    }

    #[test]
    fn contains_ignores_case_and_counts_lists() {
        assert!(contains(&json!("The Refund was issued"), &json!("refund")).passed);
        assert!(!contains(&json!("nothing"), &json!("refund")).passed);
        let partial = contains(&json!("order 17 refunded"), &json!(["order 17", "apology"]));
        assert_eq!(partial.value, 0.5);
        assert!(!partial.passed);
        assert!(partial.detail.unwrap().contains("apology"));
        assert!(contains(&json!({"id": 17}), &json!("\"id\":17")).passed);
    }

    #[test]
    fn coverage_counts_key_points_across_case_and_line_breaks() {
        let summary = json!("Summary: launch moved to\n14 May.\nActions: Maria — budget  12K");
        let all = coverage(
            &summary,
            &json!(["Maria", "launch moved to 14 May", "budget 12k"]),
            0.5,
        );
        assert_eq!((all.value, all.passed, all.detail), (1.0, true, None));
        let some = coverage(
            &summary,
            &json!(["Maria", "Tom", "Lisbon", "budget 12k"]),
            0.5,
        );
        assert_eq!(some.value, 0.5);
        assert!(some.passed);
        assert!(some.detail.unwrap().contains("\"Tom\", \"Lisbon\""));
        assert!(!coverage(&summary, &json!(["Tom", "Lisbon", "Maria"]), 0.5).passed);
    }

    #[test]
    fn regex_matches_and_survives_bad_patterns() {
        assert!(regex_match(&json!("INV-2024-0042"), &json!(r"^INV-\d{4}-\d{4}$")).passed);
        assert!(!regex_match(&json!("INV-24"), &json!(r"^INV-\d{4}$")).passed);
        let bad = regex_match(&json!("x"), &json!("(unclosed"));
        assert_eq!(bad.value, 0.0);
        assert!(bad.detail.unwrap().contains("invalid regex"));
        let huge = regex_match(&json!("x"), &json!("a".repeat(MAX_REGEX_PATTERN_CHARS + 1)));
        assert!(huge.detail.unwrap().contains("longer than"));
        let blowup = regex_match(&json!("x"), &json!(r"(\w{1000}){1000}"));
        assert!(!blowup.passed);
        assert!(!regex_match(&json!("x"), &json!(3)).passed);
    }

    #[test]
    fn token_f1_known_values() {
        assert_eq!(token_f1("the cat sat", "the cat sat"), 1.0);
        // overlap 2 (the, cat): p = 2/3, r = 2/2, f1 = 0.8
        assert!((token_f1("The cat sat.", "the CAT") - 0.8).abs() < 1e-12);
        assert_eq!(token_f1("dog", "cat"), 0.0);
        assert_eq!(token_f1("", "..."), 1.0);
        assert_eq!(token_f1("", "cat"), 0.0);
        // Multiset: a repeated token only counts as often as expected has it.
        assert!((token_f1("a a a", "a") - 0.5).abs() < 1e-12);
    }

    #[test]
    fn levenshtein_known_values() {
        assert_eq!(levenshtein(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(levenshtein(&chars(""), &chars("abc")), 3);
        assert!((levenshtein_similarity("kitten", "sitting") - (1.0 - 3.0 / 7.0)).abs() < 1e-12);
        assert_eq!(levenshtein_similarity("", ""), 1.0);
        assert_eq!(levenshtein_similarity("ü", "u"), 0.0);
    }

    #[test]
    fn levenshtein_is_capped_on_huge_texts() {
        let big = "x".repeat(100_000);
        assert_eq!(levenshtein_similarity(&big, &big), 1.0);
        let score = similarity(&json!(big), &json!("x"), 0.8);
        assert!(score.detail.unwrap().contains("levenshtein="));
    }

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    proptest! {
        #[test]
        fn similarity_of_a_text_with_itself_is_one(s in "\\PC{0,80}") {
            prop_assert_eq!(token_f1(&s, &s), 1.0);
            prop_assert_eq!(levenshtein_similarity(&s, &s), 1.0);
        }

        #[test]
        fn similarities_stay_in_unit_interval(a in "\\PC{0,60}", b in "\\PC{0,60}") {
            let f1 = token_f1(&a, &b);
            let lev = levenshtein_similarity(&a, &b);
            prop_assert!((0.0..=1.0).contains(&f1));
            prop_assert!((0.0..=1.0).contains(&lev));
            prop_assert_eq!(f1, token_f1(&b, &a));
            prop_assert_eq!(lev, levenshtein_similarity(&b, &a));
        }

        #[test]
        fn any_pattern_is_a_score_not_a_panic(pattern in "\\PC{0,30}", text in "\\PC{0,30}") {
            let score = regex_match(&json!(text), &json!(pattern));
            prop_assert!(score.value == 0.0 || score.value == 1.0);
        }

        #[test]
        fn a_string_contains_itself(s in "\\PC{0,40}") {
            let text = format!("pre {s} post");
            prop_assert!(contains(&json!(text), &json!(s)).passed);
        }
    }
}
