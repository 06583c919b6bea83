//! What each audit action records, one shape per action. An entry is written from an
//! [`AuditDetail`], whose variant is its action, so no action is recorded with another's
//! fields; what is read back (the weekly review, promotions, versions) is read into the same
//! types. Stored as the variant's JSON object, field for field what the entries held before
//! they were typed, so entries already in a log read, and hash, as they did.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_core::access::Role;
use shopfloor_core::audit::{AuditAction, PromoteDetail, VersionDetail};
use shopfloor_core::experiment::{Metric, Verdict};
use shopfloor_core::limits::KeyLimits;
use shopfloor_core::review::{Decision, ReviewStatus};
use shopfloor_store::{AuditEntry, Caller};

/// An audit entry's particulars; the variant is the entry's action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum AuditDetail {
    ConfigVersion(VersionDetail),
    WorkflowVersion(VersionDetail),
    WorkflowPromote(PromoteDetail),
    BaselineSet(BaselineSet),
    KeyCreate(KeyCreate),
    KeyRevoke(KeyRevoke),
    KeyLimits(KeyLimitsSet),
    LoginLink(LoginLink),
    PolicyRefuse(PolicyRefusal),
    BatchSubmit(BatchSubmit),
    ReviewApprove(ReviewDecided),
    ReviewEdit(ReviewDecided),
    ReviewReject(ReviewDecided),
    ExperimentStart(ExperimentStarted),
    ExperimentHalt(ExperimentHalted),
    ExperimentStop(ExperimentStopped),
    RetentionApply(RetentionApplied),
}

impl AuditDetail {
    /// The entry a review decision writes.
    pub fn review(decision: Decision, detail: ReviewDecided) -> Self {
        match decision {
            Decision::Approve => AuditDetail::ReviewApprove(detail),
            Decision::Edit => AuditDetail::ReviewEdit(detail),
            Decision::Reject => AuditDetail::ReviewReject(detail),
        }
    }

    /// The action these particulars record.
    pub fn action(&self) -> AuditAction {
        match self {
            AuditDetail::ConfigVersion(_) => AuditAction::ConfigVersion,
            AuditDetail::WorkflowVersion(_) => AuditAction::WorkflowVersion,
            AuditDetail::WorkflowPromote(_) => AuditAction::WorkflowPromote,
            AuditDetail::BaselineSet(_) => AuditAction::BaselineSet,
            AuditDetail::KeyCreate(_) => AuditAction::KeyCreate,
            AuditDetail::KeyRevoke(_) => AuditAction::KeyRevoke,
            AuditDetail::KeyLimits(_) => AuditAction::KeyLimits,
            AuditDetail::LoginLink(_) => AuditAction::LoginLink,
            AuditDetail::PolicyRefuse(_) => AuditAction::PolicyRefuse,
            AuditDetail::BatchSubmit(_) => AuditAction::BatchSubmit,
            AuditDetail::ReviewApprove(_) => AuditAction::ReviewApprove,
            AuditDetail::ReviewEdit(_) => AuditAction::ReviewEdit,
            AuditDetail::ReviewReject(_) => AuditAction::ReviewReject,
            AuditDetail::ExperimentStart(_) => AuditAction::ExperimentStart,
            AuditDetail::ExperimentHalt(_) => AuditAction::ExperimentHalt,
            AuditDetail::ExperimentStop(_) => AuditAction::ExperimentStop,
            AuditDetail::RetentionApply(_) => AuditAction::RetentionApply,
        }
    }

    /// The JSON the entry stores. These types serialize to JSON without fail (string keys,
    /// derived impls); the fallback only keeps a log entry should one ever not.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|e| serde_json::json!({ "unserializable": e.to_string() }))
    }
}

/// The particulars of `entry` as `T`, when they read as one. The caller has matched the
/// entry's action to `T`.
pub(crate) fn read<T: DeserializeOwned>(entry: &AuditEntry) -> Option<T> {
    serde_json::from_value(entry.detail.clone()).ok()
}

/// `baseline.set`: the eval that became the baseline, and the one before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BaselineSet {
    pub eval_id: String,
    pub previous: Option<String>,
    pub version: String,
}

/// `key.create`: the key, never its secret (the prefix shows which it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyCreate {
    pub key_id: String,
    pub role: Role,
    pub team: Option<String>,
    pub prefix: String,
    /// Only for a key created with limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<KeyLimits>,
}

/// `key.revoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyRevoke {
    pub key_id: String,
    pub role: Role,
}

/// `key.limits`: the key's limits from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyLimitsSet {
    pub key_id: String,
    pub limits: KeyLimits,
}

/// `login.link`: which key the one-time link signs in as, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LoginLink {
    pub key_id: String,
    pub role: Role,
    pub expires_at_ms: i64,
}

/// `policy.refuse`: the run and the reason (kinds of data, data classes), never the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyRefusal {
    pub run_id: String,
    pub version: String,
    pub reason: Option<String>,
}

/// `batch.submit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BatchSubmit {
    pub workflow: String,
    pub version: String,
    pub cases: u64,
    pub model_override: Option<String>,
    pub caller: Option<Caller>,
}

/// `review.approve`, `review.edit` and `review.reject`: the outputs by hash, never by text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ReviewDecided {
    pub workflow: String,
    /// Where the item stands after the decision.
    pub status: ReviewStatus,
    /// The reject reason.
    pub reason: Option<String>,
    pub output_before: String,
    pub output_after: String,
}

/// `experiment.start`: the experiment as it was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExperimentStarted {
    pub experiment: String,
    pub variant: String,
    pub variant_version: String,
    pub control_version: String,
    pub hypothesis: String,
    pub metric: Metric,
    pub guardrails: Vec<String>,
    pub share: f64,
    pub min_runs: u64,
    pub mde: Option<f64>,
    pub subject_field: Option<String>,
}

/// `experiment.halt`: the guardrail breached, and the figures then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExperimentHalted {
    pub experiment: String,
    pub variant: String,
    pub reason: String,
    /// Each arm's figures, as the status showed them.
    pub figures: Value,
}

/// `experiment.stop`: the decision, and the figures and recommendation it was made on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExperimentStopped {
    pub experiment: String,
    pub variant: String,
    pub hypothesis: String,
    pub decision: Verdict,
    pub note: Option<String>,
    pub metric: Metric,
    pub figures: Value,
    pub recommendation: Value,
}

/// `retention.apply`: what one pass did, and the policy it applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RetentionApplied {
    pub deleted: u64,
    pub stripped: u64,
    pub runs_days: Option<u32>,
    pub keep_text_days: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A typed entry stores what the hand-written `json!` stored, key for key, so the hashes
    /// of new entries are computed over the same text as before.
    #[test]
    fn a_typed_detail_stores_what_the_untyped_one_did() {
        let detail = AuditDetail::KeyCreate(KeyCreate {
            key_id: "k1".into(),
            role: Role::Builder,
            team: None,
            prefix: "sfk_abc".into(),
            limits: None,
        });
        assert_eq!(detail.action(), AuditAction::KeyCreate);
        assert_eq!(
            detail.to_json(),
            json!({"key_id": "k1", "role": "builder", "team": null, "prefix": "sfk_abc"})
        );
        let stop = AuditDetail::ExperimentStop(ExperimentStopped {
            experiment: "e1".into(),
            variant: "careful".into(),
            hypothesis: "fewer edits".into(),
            decision: Verdict::Keep,
            note: None,
            metric: Metric::AcceptanceRate,
            figures: json!({"control": {"runs": 3}}),
            recommendation: Value::Null,
        });
        assert_eq!(
            stop.to_json(),
            json!({"experiment": "e1", "variant": "careful", "hypothesis": "fewer edits",
                "decision": "keep", "note": null, "metric": "acceptance_rate",
                "figures": {"control": {"runs": 3}}, "recommendation": null})
        );
        let decided = ReviewDecided {
            workflow: "w".into(),
            status: ReviewStatus::Rejected,
            reason: Some("wrong".into()),
            output_before: "none".into(),
            output_after: "none".into(),
        };
        for &decision in Decision::ALL {
            let action = AuditDetail::review(decision, decided.clone()).action();
            assert_eq!(action.as_str(), format!("review.{decision}"));
        }
    }
}
