//! `label_accuracy`: per case 1/0, and the aggregate [`LabelReport`] over a whole eval run.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{as_text, shorten, Score};
use crate::output::normalize_label;

/// The confusion matrix's last column header: cases with no valid prediction.
pub const INVALID_COLUMN: &str = "(invalid)";

/// Per case: 1 when the normalised labels are equal (and not blank).
pub(super) fn label_accuracy(output: &Json, expected: &Json) -> Score {
    let (got, want) = (as_text(output), as_text(expected));
    let got_label = normalize_label(&got);
    // Same rule as the report: a blank prediction is never right, not even for a blank label.
    let equal = !got_label.is_empty() && got_label == normalize_label(&want);
    let detail = (!equal).then(|| {
        format!(
            "expected {:?}, got {:?}",
            shorten(&want, 40),
            shorten(&got, 40)
        )
    });
    Score::binary(equal, detail)
}

/// Precision, recall and F1 of one label, one-vs-rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelStats {
    /// The label, normalised.
    pub label: String,
    /// Of the cases predicted as this label, the share that were it (0 when none were).
    pub precision: f64,
    /// Of the cases that were this label, the share predicted as it (0 when none were).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Cases whose expected label is this one.
    pub support: u64,
    /// Cases predicted as this label.
    pub predicted: u64,
}

/// Accuracy, per-label precision / recall / F1, macro-F1 and the confusion matrix of an eval run.
///
/// Labels are compared and reported in their [`normalize_label`] form, sorted. Every 0/0 is
/// defined as 0 (scikit-learn's `zero_division=0`): a label never predicted has precision 0, a
/// label never expected has recall 0, and an empty run has accuracy 0 and macro-F1 0 (its `total`
/// of 0 tells the caller there was nothing to measure). A missing prediction (`None`, or a text
/// that normalises to nothing) is always wrong and lands in the [`INVALID_COLUMN`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelReport {
    /// Cases counted.
    pub total: u64,
    /// Cases whose prediction equals the expected label.
    pub correct: u64,
    /// Cases without a valid prediction.
    pub invalid: u64,
    /// `correct / total`.
    pub accuracy: f64,
    /// Unweighted mean of the per-label F1 over every label expected or predicted.
    pub macro_f1: f64,
    /// Row and column order of the matrix: every label expected or predicted, sorted.
    pub labels: Vec<String>,
    /// One entry per label, in `labels` order.
    pub per_label: Vec<LabelStats>,
    /// `confusion[expected][predicted]`, indexed by `labels`; each row has one more column,
    /// the count of invalid predictions.
    pub confusion: Vec<Vec<u64>>,
}

impl LabelReport {
    /// Build the report from (expected, predicted) pairs; `None` is a missing prediction.
    pub fn from_pairs<'a, I>(pairs: I) -> LabelReport
    where
        I: IntoIterator<Item = (&'a str, Option<&'a str>)>,
    {
        let pairs: Vec<(String, Option<String>)> = pairs
            .into_iter()
            .map(|(e, p)| {
                let predicted = p.map(normalize_label).filter(|p| !p.is_empty());
                (normalize_label(e), predicted)
            })
            .collect();
        let labels: Vec<String> = pairs
            .iter()
            .flat_map(|(e, p)| std::iter::once(e).chain(p.as_ref()))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Every label is in `labels` by construction, so the lookups cannot miss.
        let index = |label: &str| labels.binary_search_by(|l| l.as_str().cmp(label)).ok();
        let invalid_column = labels.len();
        let mut confusion = vec![vec![0u64; labels.len() + 1]; labels.len()];
        for (expected, predicted) in &pairs {
            let Some(row) = index(expected) else { continue };
            let column = predicted
                .as_deref()
                .and_then(index)
                .unwrap_or(invalid_column);
            confusion[row][column] += 1;
        }
        Self::from_confusion(labels, confusion)
    }

    /// Derive every figure from a square matrix plus the invalid column.
    fn from_confusion(labels: Vec<String>, confusion: Vec<Vec<u64>>) -> LabelReport {
        let n = labels.len();
        let total: u64 = confusion.iter().flatten().sum();
        let correct: u64 = (0..n).map(|i| confusion[i][i]).sum();
        let invalid: u64 = confusion.iter().map(|row| row[n]).sum();
        let per_label: Vec<LabelStats> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let hits = confusion[i][i];
                let support: u64 = confusion[i].iter().sum();
                let predicted: u64 = confusion.iter().map(|row| row[i]).sum();
                let precision = ratio(hits, predicted);
                let recall = ratio(hits, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                LabelStats {
                    label: label.clone(),
                    precision,
                    recall,
                    f1,
                    support,
                    predicted,
                }
            })
            .collect();
        let macro_f1 = if per_label.is_empty() {
            0.0
        } else {
            per_label.iter().map(|s| s.f1).sum::<f64>() / per_label.len() as f64
        };
        LabelReport {
            total,
            correct,
            invalid,
            accuracy: ratio(correct, total),
            macro_f1,
            labels,
            per_label,
            confusion,
        }
    }

    /// The stats of one label (given in any form `normalize_label` maps to it).
    pub fn label(&self, label: &str) -> Option<&LabelStats> {
        let label = normalize_label(label);
        self.per_label.iter().find(|s| s.label == label)
    }
}

/// `a / b`, with 0/0 defined as 0.
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn per_case_uses_normalized_labels() {
        assert!(label_accuracy(&json!("Billing."), &json!("billing")).passed);
        let miss = label_accuracy(&json!("bug"), &json!("billing"));
        assert_eq!(miss.value, 0.0);
        assert_eq!(miss.detail.unwrap(), "expected \"billing\", got \"bug\"");
    }

    #[test]
    fn known_confusion_matrix() {
        // expected cat ×4, dog ×3, bird ×1; one cat has no valid prediction.
        let pairs = [
            ("cat", Some("cat")),
            ("cat", Some("cat")),
            ("cat", Some("dog")),
            ("cat", None),
            ("dog", Some("dog")),
            ("dog", Some("dog")),
            ("dog", Some("cat")),
            ("Bird", Some("bird!")),
        ];
        let report = LabelReport::from_pairs(pairs);
        assert_eq!(report.labels, ["bird", "cat", "dog"]);
        assert_eq!(
            report.confusion,
            vec![vec![1, 0, 0, 0], vec![0, 2, 1, 1], vec![0, 1, 2, 0]]
        );
        assert_eq!((report.total, report.correct, report.invalid), (8, 5, 1));
        assert!(close(report.accuracy, 5.0 / 8.0));
        let cat = report.label("Cat").unwrap();
        // precision 2/3, recall 2/4, f1 = 2·(2/3)(1/2)/(2/3+1/2) = 4/7
        assert!(close(cat.precision, 2.0 / 3.0) && close(cat.recall, 0.5));
        assert!(close(cat.f1, 4.0 / 7.0));
        assert_eq!((cat.support, cat.predicted), (4, 3));
        let dog = report.label("dog").unwrap();
        // precision 2/3, recall 2/3, f1 2/3
        assert!(close(dog.f1, 2.0 / 3.0));
        assert!(close(report.macro_f1, (1.0 + 4.0 / 7.0 + 2.0 / 3.0) / 3.0));
    }

    #[test]
    fn zero_divisions_are_zero() {
        // "spam" is predicted but never expected; "ham" is expected but never predicted.
        let report = LabelReport::from_pairs([("ham", Some("spam")), ("ham", None)]);
        let ham = report.label("ham").unwrap();
        assert_eq!((ham.precision, ham.recall, ham.f1), (0.0, 0.0, 0.0));
        let spam = report.label("spam").unwrap();
        assert_eq!((spam.precision, spam.recall, spam.support), (0.0, 0.0, 0));
        assert_eq!(report.macro_f1, 0.0);
        assert_eq!(report.confusion, vec![vec![0, 1, 1], vec![0, 0, 0]]);

        let empty = LabelReport::from_pairs(std::iter::empty());
        assert_eq!((empty.total, empty.accuracy, empty.macro_f1), (0, 0.0, 0.0));
        assert!(empty.confusion.is_empty());
    }

    #[test]
    fn blank_predictions_are_invalid() {
        let report = LabelReport::from_pairs([("a", Some(" ... "))]);
        assert_eq!(report.invalid, 1);
        assert_eq!(report.labels, ["a"]);
    }

    proptest! {
        #[test]
        fn identical_lists_are_perfect(labels in prop::collection::vec("[a-d]{1,2}", 1..40)) {
            let report = LabelReport::from_pairs(labels.iter().map(|l| (l.as_str(), Some(l.as_str()))));
            prop_assert_eq!(report.accuracy, 1.0);
            prop_assert_eq!(report.macro_f1, 1.0);
            prop_assert_eq!(report.invalid, 0);
        }

        #[test]
        fn figures_are_rates_and_counts_add_up(pairs in prop::collection::vec(("\\PC{0,6}", prop::option::of("\\PC{0,6}")), 0..40)) {
            let report = LabelReport::from_pairs(pairs.iter().map(|(e, p)| (e.as_str(), p.as_deref())));
            prop_assert_eq!(report.total, pairs.len() as u64);
            prop_assert!(report.correct + report.invalid <= report.total);
            prop_assert!((0.0..=1.0).contains(&report.accuracy));
            prop_assert!((0.0..=1.0).contains(&report.macro_f1));
            let support: u64 = report.per_label.iter().map(|s| s.support).sum();
            prop_assert_eq!(support, report.total);
            for s in &report.per_label {
                for x in [s.precision, s.recall, s.f1] {
                    prop_assert!((0.0..=1.0).contains(&x));
                }
            }
        }
    }
}
