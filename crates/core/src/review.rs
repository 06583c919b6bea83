//! The review loop's rules, as pure functions: which outputs a person must see, what a
//! decision does to an item, and how reviewers agree. The engine
//! hands in the facts (the run, the prior decisions) and stores what comes out.

use std::collections::HashMap;
use std::hash::Hash;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::spec::{ReviewSpec, RiskTier};

crate::text_enum! {
    /// Why an output is in the review queue.
    pub enum ReviewReason {
        /// A high-risk workflow: every valid output waits for a person.
        HighRisk => "high_risk",
        /// Its confidence is below `[review] hold_below_confidence`.
        LowConfidence => "low_confidence",
        /// Its label is one of `[review] hold_labels`.
        HeldLabel => "held_label",
        /// The answer broke the output contract in a workflow that holds outputs: a reviewer
        /// corrects or rejects it (there is nothing to approve).
        InvalidOutput => "invalid_output",
        /// Medium risk: released, and picked at `[review] sample_rate` for a look after.
        Sampled => "sampled",
    }
}

crate::text_enum! {
    /// Where an item of the queue stands.
    pub enum ReviewStatus {
        Pending => "pending",
        /// Released as the model wrote it.
        Approved => "approved",
        /// Released with a reviewer's correction.
        Edited => "edited",
        /// Not released.
        Rejected => "rejected",
    }
}

crate::text_enum! {
    /// What one reviewer decided about one item.
    pub enum Decision {
        Approve => "approve",
        Edit => "edit",
        Reject => "reject",
    }
}

impl ReviewReason {
    /// Whether the output waits for a decision before the caller gets it.
    pub fn holds(self) -> bool {
        self != ReviewReason::Sampled
    }
}

/// Whether and why a valid output enters the review queue. A held reason wins over sampling;
/// risk first, then labels, then confidence.
pub fn entry_reason(
    spec: &ReviewSpec,
    risk: RiskTier,
    run_id: &str,
    output: &Json,
    confidence: Option<f64>,
) -> Option<ReviewReason> {
    if risk == RiskTier::High {
        return Some(ReviewReason::HighRisk);
    }
    if let Some(label) = output.as_str() {
        if spec.hold_labels.iter().any(|held| held == label) {
            return Some(ReviewReason::HeldLabel);
        }
    }
    if let (Some(threshold), Some(confidence)) = (spec.hold_below_confidence, confidence) {
        if confidence < threshold {
            return Some(ReviewReason::LowConfidence);
        }
    }
    (risk == RiskTier::Medium && sampled(run_id, spec.sample_rate)).then_some(ReviewReason::Sampled)
}

/// Whether an answer that broke the output contract waits for a reviewer rather than being
/// recorded invalid: where the workflow holds outputs at all (high risk, held labels, a
/// confidence threshold), an answer it cannot read may be one it would have held.
pub fn holds_invalid(spec: &ReviewSpec, risk: RiskTier) -> bool {
    risk == RiskTier::High || !spec.hold_labels.is_empty() || spec.hold_below_confidence.is_some()
}

/// Whether the run `run_id` is in the sample: decided by a hash of the id, so that the same
/// run is always in or out (replays agree) and the share over many runs is `rate`.
pub fn sampled(run_id: &str, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let digest = Sha256::digest(run_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The top 53 bits as a uniform number in [0, 1).
    let unit = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    unit < rate
}

/// A decision already recorded on an item.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorDecision {
    pub reviewer: String,
    pub decision: Decision,
}

/// Why a decision cannot be taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    #[error("this item is already {0}")]
    Closed(ReviewStatus),
    #[error("a reviewer may not decide a run their own key requested")]
    OwnRun,
    #[error("{0} has already decided this item; another reviewer must")]
    AlreadyDecided(String),
    #[error("unknown reject reason \"{reason}\"; expected one of: {}", known.join(", "))]
    UnknownReason { reason: String, known: Vec<String> },
    #[error("the answer broke the output contract, so there is nothing to approve: edit it into a valid output, or reject it")]
    NothingToApprove,
}

/// What deciding does to an item: its status afterwards, or why the decision is refused.
///
/// A reject by anyone ends the item. An approval or an edit counts towards
/// `approvals_required` (each by a different person); once enough are in, the item is released:
/// `edited` when any of them corrected the output, else `approved`. Until then it stays pending,
/// and a later approval approves the output as corrected so far. An item with no output (the
/// answer broke the contract) can be corrected or rejected, not approved as it is.
pub fn decide(
    status: ReviewStatus,
    approvals_required: u32,
    prior: &[PriorDecision],
    reviewer: &str,
    decision: Decision,
    requested_by_reviewer: bool,
    has_output: bool,
) -> Result<ReviewStatus, DecisionError> {
    if status != ReviewStatus::Pending {
        return Err(DecisionError::Closed(status));
    }
    if requested_by_reviewer {
        return Err(DecisionError::OwnRun);
    }
    if prior.iter().any(|p| p.reviewer == reviewer) {
        return Err(DecisionError::AlreadyDecided(reviewer.to_string()));
    }
    if decision == Decision::Reject {
        return Ok(ReviewStatus::Rejected);
    }
    let corrected = prior.iter().any(|p| p.decision == Decision::Edit);
    if decision == Decision::Approve && !has_output && !corrected {
        return Err(DecisionError::NothingToApprove);
    }
    let approvals = prior.len() as u32 + 1;
    if approvals < approvals_required.max(1) {
        return Ok(ReviewStatus::Pending);
    }
    let edited = decision == Decision::Edit || corrected;
    Ok(if edited {
        ReviewStatus::Edited
    } else {
        ReviewStatus::Approved
    })
}

/// `reason` if it is one the workflow allows.
pub fn check_reason(spec: &ReviewSpec, reason: &str) -> Result<(), DecisionError> {
    if spec.reasons.iter().any(|r| r == reason) {
        Ok(())
    } else {
        Err(DecisionError::UnknownReason {
            reason: reason.to_string(),
            known: spec.reasons.clone(),
        })
    }
}

/// Cohen's κ of two raters over the same items, given as (first rater's answer, second's, how
/// many items got that pair): agreement beyond what chance predicts. `None` with no items, or
/// when chance agreement is total (both always gave one answer).
pub fn cohens_kappa<T: Eq + Hash>(pairs: &[(T, T, u64)]) -> Option<f64> {
    let n = pairs.iter().map(|(_, _, k)| *k).sum::<u64>() as f64;
    if n == 0.0 {
        return None;
    }
    let observed = pairs
        .iter()
        .filter(|(a, b, _)| a == b)
        .map(|(_, _, k)| *k as f64)
        .sum::<f64>()
        / n;
    let mut first: HashMap<&T, f64> = HashMap::new();
    let mut second: HashMap<&T, f64> = HashMap::new();
    for (a, b, k) in pairs {
        *first.entry(a).or_default() += *k as f64;
        *second.entry(b).or_default() += *k as f64;
    }
    let expected: f64 = first
        .iter()
        .map(|(label, count)| count / n * second.get(label).copied().unwrap_or(0.0) / n)
        .sum();
    if (1.0 - expected).abs() < f64::EPSILON {
        return None;
    }
    Some((observed - expected) / (1.0 - expected))
}

/// The hash of an output written into the audit chain (SHA-256 of its canonical JSON), so the
/// chain shows what was released without holding the text.
pub fn output_hash(output: Option<&Json>) -> String {
    match output {
        Some(value) => hex::encode(Sha256::digest(crate::canonical_json(value).as_bytes())),
        None => "none".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ReviewSpec {
        ReviewSpec {
            sample_rate: 0.1,
            hold_below_confidence: Some(0.7),
            hold_labels: vec!["legal".into()],
            ..ReviewSpec::default()
        }
    }

    #[test]
    fn the_sample_rate_holds_over_many_runs_and_is_the_same_every_time() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("0190-run-{i}")).collect();
        let picked = ids.iter().filter(|id| sampled(id, 0.10)).count();
        assert!((900..=1100).contains(&picked), "{picked} of 10000");
        assert!(ids.iter().all(|id| sampled(id, 0.10) == sampled(id, 0.10)));
        assert!(!ids.iter().any(|id| sampled(id, 0.0)));
        assert!(ids.iter().all(|id| sampled(id, 1.0)));
    }

    #[test]
    fn entry_reasons_in_order_of_precedence() {
        let s = spec();
        let reason =
            |risk, output: Json, confidence| entry_reason(&s, risk, "r1", &output, confidence);
        assert_eq!(
            reason(RiskTier::High, json!("billing"), Some(0.99)),
            Some(ReviewReason::HighRisk)
        );
        assert_eq!(
            reason(RiskTier::Low, json!("legal"), Some(0.99)),
            Some(ReviewReason::HeldLabel)
        );
        assert_eq!(
            reason(RiskTier::Low, json!("billing"), Some(0.5)),
            Some(ReviewReason::LowConfidence)
        );
        assert_eq!(reason(RiskTier::Low, json!("billing"), Some(0.9)), None);
        assert_eq!(reason(RiskTier::Low, json!("billing"), None), None);
        assert!(ReviewReason::LowConfidence.holds() && !ReviewReason::Sampled.holds());
    }

    fn prior(reviewer: &str, decision: Decision) -> PriorDecision {
        PriorDecision {
            reviewer: reviewer.into(),
            decision,
        }
    }

    #[test]
    fn two_person_rule() {
        use ReviewStatus::*;
        let pending = |prior: &[PriorDecision], who, decision| {
            decide(Pending, 2, prior, who, decision, false, true)
        };
        assert_eq!(pending(&[], "ann", Decision::Approve), Ok(Pending));
        let first = [prior("ann", Decision::Approve)];
        assert_eq!(
            pending(&first, "ann", Decision::Approve),
            Err(DecisionError::AlreadyDecided("ann".into()))
        );
        assert_eq!(pending(&first, "bob", Decision::Approve), Ok(Approved));
        assert_eq!(pending(&first, "bob", Decision::Reject), Ok(Rejected));
        assert_eq!(pending(&first, "bob", Decision::Edit), Ok(Edited));
        let edited = [prior("ann", Decision::Edit)];
        assert_eq!(pending(&edited, "bob", Decision::Approve), Ok(Edited));
        assert_eq!(
            decide(Approved, 1, &[], "bob", Decision::Reject, false, true),
            Err(DecisionError::Closed(Approved))
        );
        assert_eq!(
            decide(Pending, 1, &[], "bob", Decision::Approve, true, true),
            Err(DecisionError::OwnRun)
        );
        assert_eq!(
            decide(Pending, 1, &[], "bob", Decision::Approve, false, true),
            Ok(Approved)
        );
    }

    #[test]
    fn an_item_without_output_is_corrected_or_rejected() {
        use ReviewStatus::*;
        let none = |prior: &[PriorDecision], decision| {
            decide(Pending, 2, prior, "bob", decision, false, false)
        };
        assert_eq!(
            none(&[], Decision::Approve),
            Err(DecisionError::NothingToApprove)
        );
        assert_eq!(none(&[], Decision::Reject), Ok(Rejected));
        assert_eq!(none(&[], Decision::Edit), Ok(Pending));
        // Once someone corrected it, a second person approves the correction.
        let edited = [prior("ann", Decision::Edit)];
        assert_eq!(none(&edited, Decision::Approve), Ok(Edited));
    }

    #[test]
    fn reject_reasons_come_from_the_workflow() {
        let s = spec();
        assert!(check_reason(&s, "unsafe").is_ok());
        let error = check_reason(&s, "boring").unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown reject reason \"boring\"; expected one of: wrong_label, unsafe, hallucination, other"
        );
    }

    #[test]
    fn kappa_matches_a_hand_computed_example() {
        // 10 items: both approve 4, both reject 3, they disagree on 3 (2 A/R, 1 R/A).
        // observed 0.7; rater 1 approves 6/10, rater 2 5/10 → expected 0.3 + 0.2 = 0.5.
        let pairs = [("a", "a", 4), ("r", "r", 3), ("a", "r", 2), ("r", "a", 1)];
        let kappa = cohens_kappa(&pairs).unwrap();
        assert!((kappa - 0.4).abs() < 1e-12, "{kappa}");
        assert_eq!(cohens_kappa::<&str>(&[]), None);
        assert_eq!(cohens_kappa(&[("a", "a", 2)]), None);
        assert_eq!(cohens_kappa(&[("a", "r", 0)]), None);
    }
}
