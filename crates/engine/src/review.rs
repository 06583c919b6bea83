//! The review loop as the CLI and the API both drive it: list the queue, claim an item (a
//! lease, so two reviewers never get the same one), show it, decide it (approve, edit with a
//! correction checked against the output contract, reject with one of the workflow's reasons),
//! and the figures of the queue. The rules are `shopfloor_core::review`; the state is the
//! store's; every decision is an entry in the audit chain.

use serde::Serialize;
use serde_json::Value;
use shopfloor_core::review::{
    check_reason, cohens_kappa, decide, output_hash, Decision, PriorDecision, ReviewStatus,
};
use shopfloor_store::{
    ReviewClaim, ReviewCount, ReviewDecisionRecord, ReviewFilter, ReviewItem, ReviewTallies,
    ReviewUpdate, RunRecord,
};

use crate::audit_detail::{AuditDetail, ReviewDecided};
use crate::{now_ms, Engine, EngineError};

/// Who decides: a person's name, and on the API the key they use (a reviewer may not decide a
/// run their own key requested).
#[derive(Debug, Clone, PartialEq)]
pub struct Reviewer {
    pub name: String,
    pub key_id: Option<String>,
}

/// What a reviewer decided.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionRequest {
    Approve {
        note: Option<String>,
    },
    /// The corrected output: a label as a string, JSON as JSON, text as a string.
    Edit {
        output: Value,
        note: Option<String>,
    },
    Reject {
        reason: String,
        note: Option<String>,
    },
}

/// Why a review action was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReviewError {
    #[error("no review item for run {0}")]
    NotFound(String),
    #[error("run {run_id} is claimed by {holder} until their reservation ends")]
    Claimed { run_id: String, holder: String },
    #[error(transparent)]
    Decision(#[from] shopfloor_core::review::DecisionError),
    #[error("the correction does not meet the output contract: {0}")]
    InvalidEdit(String),
    #[error("run {0} was decided by someone else meanwhile; read it again")]
    Conflict(String),
}

/// An item with everything a reviewer reads: the run (input, output, confidence) and the
/// decisions taken so far.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewView {
    pub item: ReviewItem,
    pub run: RunRecord,
    pub decisions: Vec<ReviewDecisionRecord>,
}

/// The figures of a review queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReviewStats {
    pub pending: u64,
    pub overdue: u64,
    /// Age of the oldest pending item, in minutes.
    pub oldest_pending_minutes: Option<f64>,
    pub approved: u64,
    pub edited: u64,
    pub rejected: u64,
    /// Released unchanged ÷ decided.
    pub acceptance_rate: Option<f64>,
    /// Corrected ÷ decided.
    pub edit_rate: Option<f64>,
    /// Reject reasons and how often each was given, most given first.
    pub reasons: Vec<(String, u64)>,
    /// Per reviewer: decisions, and claim → decision minutes at p50 and p95.
    pub reviewers: Vec<ReviewerStats>,
    /// Cohen's κ over items that two reviewers decided (approve/edit/reject).
    pub agreement_kappa: Option<f64>,
    pub agreement_items: u64,
}

/// One reviewer's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewerStats {
    pub reviewer: String,
    pub decisions: u64,
    pub p50_minutes: Option<f64>,
    pub p95_minutes: Option<f64>,
}

impl Engine {
    /// Queue items, oldest first.
    pub async fn reviews(&self, filter: &ReviewFilter) -> Result<Vec<ReviewItem>, EngineError> {
        // Runs are written at most 50 ms after they end: a held one may still be queued.
        self.flush().await;
        Ok(self.store.list_reviews(filter).await?)
    }

    /// Claim the oldest pending item (of `workflow`) that `reviewer` may decide, for the
    /// workflow's `[review] reservation_minutes`.
    pub async fn review_next(
        &self,
        workflow: Option<&str>,
        reviewer: &Reviewer,
    ) -> Result<Option<ReviewView>, EngineError> {
        let minutes = match workflow {
            Some(name) => self.project.workflow(name)?.spec.review.reservation_minutes,
            None => shopfloor_core::spec::DEFAULT_RESERVATION_MINUTES,
        };
        self.flush().await;
        let claimed = self
            .store
            .claim_review(&self.claim(None, workflow, reviewer, minutes))
            .await?;
        match claimed {
            Some(item) => Ok(Some(self.view(item).await?)),
            None => Ok(None),
        }
    }

    /// Claim one item by its run id.
    pub async fn review_claim(
        &self,
        run_id: &str,
        reviewer: &Reviewer,
    ) -> Result<ReviewView, EngineError> {
        self.flush().await;
        let item = self.review_item(run_id).await?;
        let minutes = self.reservation_minutes(&item.workflow);
        match self
            .store
            .claim_review(&self.claim(Some(run_id), None, reviewer, minutes))
            .await?
        {
            Some(item) => self.view(item).await,
            None => Err(self.why_not_claimable(item, reviewer).await),
        }
    }

    /// An item with its run and decisions.
    pub async fn review_show(&self, run_id: &str) -> Result<ReviewView, EngineError> {
        self.flush().await;
        let item = self.review_item(run_id).await?;
        self.view(item).await
    }

    /// Decide an item. Refused (and nothing written) when someone else holds a live claim,
    /// the reviewer already decided it or requested the run, the reason is not one of the
    /// workflow's, or a correction breaks the output contract.
    pub async fn review_decide(
        &self,
        run_id: &str,
        reviewer: &Reviewer,
        request: DecisionRequest,
    ) -> Result<ReviewItem, EngineError> {
        self.flush().await;
        let item = self.review_item(run_id).await?;
        let now = now_ms();
        if let Some(holder) = item.claimed_by_other(&reviewer.name, now) {
            return Err(ReviewError::Claimed {
                run_id: run_id.to_string(),
                holder: holder.to_string(),
            }
            .into());
        }
        let workflow = self.project.workflow(&item.workflow)?;
        let spec = &workflow.spec.review;
        let (decision, output, reason, note) = match request {
            DecisionRequest::Approve { note } => (Decision::Approve, None, None, note),
            DecisionRequest::Edit { output, note } => {
                let text = match &output {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                let checked = workflow
                    .output
                    .parse(&text)
                    .map_err(|e| ReviewError::InvalidEdit(e.for_model().to_string()))?;
                (Decision::Edit, Some(checked), None, note)
            }
            DecisionRequest::Reject { reason, note } => {
                check_reason(spec, &reason).map_err(ReviewError::from)?;
                (Decision::Reject, None, Some(reason), note)
            }
        };
        let status = self.rule_on(&item, reviewer, decision).await??;
        let (mut output, mut note) = (output, note);
        if let Some(redactor) = &self.store_redactor {
            // A correction is kept like every output, and a note like every text: as the
            // store policy says. The webhook events are made from what is kept.
            if let Some(value) = output.as_mut() {
                redactor.json(value);
            }
            note = note.map(|n| redactor.text(&n));
        }
        let record = ReviewDecisionRecord {
            run_id: run_id.to_string(),
            reviewer: reviewer.name.clone(),
            decision,
            output,
            reason,
            note,
            claimed_at_ms: item
                .claimed_by
                .as_deref()
                .filter(|holder| *holder == reviewer.name)
                .and(item.claimed_at_ms),
            decided_at_ms: now,
        };
        if !self
            .record_decision(&item, record, status, Vec::new())
            .await?
        {
            return Err(ReviewError::Conflict(run_id.to_string()).into());
        }
        self.review_item(run_id).await
    }

    /// Write `record` on `item` (leaving it in `status`) with its webhook events and `more`,
    /// then its audit entry (who, which decision, the output's hash before and after).
    /// `false`, and nothing written, when the item was decided meanwhile. Every decision —
    /// a reviewer's or the SLA's — goes through here.
    pub(crate) async fn record_decision(
        &self,
        item: &ReviewItem,
        record: ReviewDecisionRecord,
        status: ReviewStatus,
        more: Vec<shopfloor_store::OutboxEvent>,
    ) -> Result<bool, EngineError> {
        let mut events = more;
        events.extend(self.decision_events(item, status, &record));
        let before = item.corrected_output.as_ref().or(item.output.as_ref());
        let detail = AuditDetail::review(
            record.decision,
            ReviewDecided {
                workflow: item.workflow.clone(),
                status,
                reason: record.reason.clone(),
                output_before: output_hash(before),
                output_after: output_hash(record.output.as_ref().or(before)),
            },
        );
        let actor = record.reviewer.clone();
        let update = ReviewUpdate {
            decision: record,
            status,
            seen_decisions: item.decisions,
            events,
        };
        if !self.store.decide_review(&update).await? {
            return Ok(false);
        }
        self.audit(&actor, &item.run_id, detail).await?;
        Ok(true)
    }

    /// The queue's figures, over one workflow or all.
    pub async fn review_stats(&self, workflow: Option<&str>) -> Result<ReviewStats, EngineError> {
        self.flush().await;
        let now = now_ms();
        let (counts, tallies) = tokio::try_join!(
            self.store.review_counts(workflow, now),
            self.store.review_tallies(workflow)
        )?;
        Ok(stats(&counts, tallies, now))
    }

    async fn review_item(&self, run_id: &str) -> Result<ReviewItem, EngineError> {
        self.store
            .get_review(run_id)
            .await?
            .ok_or_else(|| ReviewError::NotFound(run_id.to_string()).into())
    }

    async fn view(&self, item: ReviewItem) -> Result<ReviewView, EngineError> {
        let run = self
            .store
            .get_run(&item.run_id)
            .await?
            .ok_or_else(|| ReviewError::NotFound(item.run_id.clone()))?;
        let decisions = self
            .store
            .review_decisions(Some(&item.run_id), None)
            .await?;
        Ok(ReviewView {
            item,
            run,
            decisions,
        })
    }

    fn reservation_minutes(&self, workflow: &str) -> u32 {
        self.project
            .workflow(workflow)
            .map(|w| w.spec.review.reservation_minutes)
            .unwrap_or(shopfloor_core::spec::DEFAULT_RESERVATION_MINUTES)
    }

    fn claim(
        &self,
        run_id: Option<&str>,
        workflow: Option<&str>,
        reviewer: &Reviewer,
        minutes: u32,
    ) -> ReviewClaim {
        let now = now_ms();
        ReviewClaim {
            run_id: run_id.map(str::to_string),
            workflow: workflow.map(str::to_string),
            reviewer: reviewer.name.clone(),
            reviewer_key: reviewer.key_id.clone(),
            now_ms: now,
            until_ms: now + i64::from(minutes) * 60_000,
        }
    }

    /// Why `reviewer` could not claim `item`, in the terms of the decision rules.
    async fn why_not_claimable(&self, item: ReviewItem, reviewer: &Reviewer) -> EngineError {
        if let Some(holder) = item.claimed_by_other(&reviewer.name, now_ms()) {
            return ReviewError::Claimed {
                holder: holder.to_string(),
                run_id: item.run_id.clone(),
            }
            .into();
        }
        match self.rule_on(&item, reviewer, Decision::Approve).await {
            Err(e) => e,
            Ok(Err(e)) => e.into(),
            Ok(Ok(_)) => ReviewError::Conflict(item.run_id).into(),
        }
    }

    /// What the decision rules say of `reviewer` taking `decision` on `item`, given the
    /// decisions already on it: the store error, or the rules' verdict.
    async fn rule_on(
        &self,
        item: &ReviewItem,
        reviewer: &Reviewer,
        decision: Decision,
    ) -> Result<Result<ReviewStatus, ReviewError>, EngineError> {
        let prior: Vec<PriorDecision> = self
            .store
            .review_decisions(Some(&item.run_id), None)
            .await?
            .into_iter()
            .map(|d| PriorDecision {
                reviewer: d.reviewer,
                decision: d.decision,
            })
            .collect();
        let own_run = reviewer.key_id.is_some() && reviewer.key_id == item.requested_by_key;
        Ok(decide(
            item.status,
            item.approvals_required,
            &prior,
            &reviewer.name,
            decision,
            own_run,
            item.output.is_some(),
        )
        .map_err(ReviewError::from))
    }
}

/// The figures of the queue's `counts` and its decisions' `tallies` at `now_ms`.
fn stats(counts: &[ReviewCount], tallies: ReviewTallies, now_ms: i64) -> ReviewStats {
    let mut s = ReviewStats::default();
    for count in counts {
        match count.status {
            ReviewStatus::Pending => {
                s.pending += count.items;
                s.overdue += count.overdue;
                let age = (now_ms - count.oldest_created_at_ms) as f64 / 60_000.0;
                s.oldest_pending_minutes =
                    Some(s.oldest_pending_minutes.map_or(age, |a| a.max(age)));
            }
            ReviewStatus::Approved => s.approved += count.items,
            ReviewStatus::Edited => s.edited += count.items,
            ReviewStatus::Rejected => s.rejected += count.items,
        }
    }
    let decided = s.approved + s.edited + s.rejected;
    if decided > 0 {
        s.acceptance_rate = Some(s.approved as f64 / decided as f64);
        s.edit_rate = Some(s.edited as f64 / decided as f64);
    }
    s.reasons = tallies.reasons;
    s.reasons
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let minutes = |ms: Option<u64>| ms.map(|ms| ms as f64 / 60_000.0);
    s.reviewers = tallies
        .reviewers
        .into_iter()
        .map(|r| ReviewerStats {
            reviewer: r.reviewer,
            decisions: r.decisions,
            p50_minutes: minutes(r.p50_ms),
            p95_minutes: minutes(r.p95_ms),
        })
        .collect();
    let pairs: Vec<(Decision, Decision, u64)> = tallies.pairs;
    s.agreement_items = pairs.iter().map(|(_, _, n)| n).sum();
    s.agreement_kappa = cohens_kappa(&pairs);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopfloor_store::ReviewerTally;

    fn count(status: ReviewStatus, items: u64, overdue: u64, oldest: i64) -> ReviewCount {
        ReviewCount {
            workflow: "w".into(),
            status,
            items,
            overdue,
            oldest_created_at_ms: oldest,
        }
    }

    fn reviewer(name: &str, decisions: u64, p50_ms: u64, p95_ms: u64) -> ReviewerTally {
        ReviewerTally {
            reviewer: name.into(),
            decisions,
            p50_ms: Some(p50_ms),
            p95_ms: Some(p95_ms),
        }
    }

    #[test]
    fn figures_by_hand() {
        let counts = vec![
            count(ReviewStatus::Pending, 2, 2, 0),
            count(ReviewStatus::Approved, 2, 0, 0),
            count(ReviewStatus::Edited, 1, 0, 0),
            count(ReviewStatus::Rejected, 1, 0, 0),
        ];
        let tallies = ReviewTallies {
            reviewers: vec![
                reviewer("ann", 2, 120_000, 240_000),
                reviewer("bob", 2, 360_000, 480_000),
            ],
            reasons: vec![("off-topic".into(), 1), ("unsafe".into(), 3)],
            pairs: vec![
                (Decision::Approve, Decision::Approve, 4),
                (Decision::Reject, Decision::Reject, 3),
                (Decision::Approve, Decision::Reject, 2),
                (Decision::Reject, Decision::Approve, 1),
            ],
        };
        let s = stats(&counts, tallies, 5 * 60_000);
        assert_eq!((s.pending, s.overdue), (2, 2));
        assert_eq!(s.oldest_pending_minutes, Some(5.0));
        assert_eq!((s.approved, s.edited, s.rejected), (2, 1, 1));
        assert_eq!(s.acceptance_rate, Some(0.5));
        assert_eq!(s.edit_rate, Some(0.25));
        assert_eq!(
            s.reasons,
            vec![("unsafe".to_string(), 3), ("off-topic".to_string(), 1)],
            "most given first"
        );
        assert_eq!(s.reviewers[0].reviewer, "ann");
        assert_eq!(s.reviewers[0].p50_minutes, Some(2.0));
        assert_eq!(s.reviewers[1].p95_minutes, Some(8.0));
        assert_eq!(s.agreement_items, 10);
        let kappa = s.agreement_kappa.unwrap();
        assert!((kappa - 0.4).abs() < 1e-12, "{kappa}");
    }
}
