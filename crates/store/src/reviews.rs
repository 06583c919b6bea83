//! The review queue: one row per output a person must (or may) look at, and every decision
//! taken on it. A held run's review row is written in the transaction that records the run, so
//! a held output can never be lost to the queue; a decision, the item's new state and (when
//! final) the run's release are one transaction too, guarded by the number of decisions seen,
//! so two reviewers deciding at once cannot both close one item.
//!
//! Claims are leases (`claim_expires_at_ms`): the oldest pending item not claimed by someone
//! else goes to the next reviewer who asks; PostgreSQL skips rows another replica is claiming
//! (`FOR UPDATE SKIP LOCKED`), SQLite serialises its writers anyway.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};

use crate::Result;

/// Columns of `reviews`, in [`item_from_row`] order.
pub(crate) const REVIEW_COLUMNS: &str = "run_id, workflow, version, reason, status, \
     approvals_required, decisions, requested_by_key, output, corrected_output, created_at_ms, \
     due_at_ms, claimed_by, claimed_at_ms, claim_expires_at_ms, decided_at_ms, escalated_at_ms";
/// Columns of `review_decisions`.
pub(crate) const DECISION_COLUMNS: &str =
    "run_id, n, reviewer, decision, output, reason, note, claimed_at_ms, decided_at_ms";
/// Items listed when the filter sets no limit.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// Why and how a run waits for review: set by the engine on the run, kept in `reviews`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReviewTicket {
    pub reason: ReviewReason,
    /// Different reviewers who must approve before a held output is released.
    pub approvals_required: u32,
    /// When the item becomes overdue (`[review] sla_minutes`).
    pub due_at_ms: Option<i64>,
}

/// One item of the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    pub run_id: String,
    pub workflow: String,
    pub version: String,
    pub reason: ReviewReason,
    pub status: ReviewStatus,
    pub approvals_required: u32,
    /// Decisions taken so far.
    pub decisions: u32,
    /// The key that requested the run; its holder may not decide it.
    pub requested_by_key: Option<String>,
    /// The output as the model wrote it.
    pub output: Option<Value>,
    /// The latest reviewer's correction, if any.
    pub corrected_output: Option<Value>,
    pub created_at_ms: i64,
    pub due_at_ms: Option<i64>,
    pub claimed_by: Option<String>,
    pub claimed_at_ms: Option<i64>,
    pub claim_expires_at_ms: Option<i64>,
    pub decided_at_ms: Option<i64>,
    /// When the item was escalated for being past its SLA.
    pub escalated_at_ms: Option<i64>,
}

impl ReviewItem {
    /// Who holds a live claim on the item at `now_ms`, if anyone.
    pub fn holder(&self, now_ms: i64) -> Option<&str> {
        match (&self.claimed_by, self.claim_expires_at_ms) {
            (Some(holder), Some(until)) if until > now_ms => Some(holder),
            _ => None,
        }
    }

    /// Whether someone other than `reviewer` holds a live claim at `now_ms`.
    pub fn claimed_by_other(&self, reviewer: &str, now_ms: i64) -> Option<&str> {
        self.holder(now_ms).filter(|holder| *holder != reviewer)
    }

    /// Pending past its SLA at `now_ms`.
    pub fn overdue(&self, now_ms: i64) -> bool {
        self.status == ReviewStatus::Pending && self.due_at_ms.is_some_and(|due| due < now_ms)
    }
}

/// One reviewer's decision on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewDecisionRecord {
    pub run_id: String,
    pub reviewer: String,
    pub decision: Decision,
    /// The correction, for an edit.
    pub output: Option<Value>,
    /// The reject reason, for a reject.
    pub reason: Option<String>,
    pub note: Option<String>,
    /// When the reviewer claimed the item, if they did: claim → decision is their time on it.
    pub claimed_at_ms: Option<i64>,
    pub decided_at_ms: i64,
}

/// Which items to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewFilter {
    pub workflow: Option<String>,
    /// `None`: every status.
    pub status: Option<ReviewStatus>,
    /// Oldest first, at most this many (default 100).
    pub limit: Option<u32>,
}

/// A claim on an item: `run_id`, or the oldest pending one (of `workflow`) the reviewer may
/// decide.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewClaim {
    pub run_id: Option<String>,
    pub workflow: Option<String>,
    pub reviewer: String,
    /// The reviewer's key: items that key requested are never handed to them.
    pub reviewer_key: Option<String>,
    pub now_ms: i64,
    pub until_ms: i64,
}

/// A decision and what it does to its item and run, written at once.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewUpdate {
    pub decision: ReviewDecisionRecord,
    /// The item's status after the decision.
    pub status: ReviewStatus,
    /// The decisions the caller saw on the item: the write happens only if it still has them.
    pub seen_decisions: u32,
    /// Webhook events the decision sends, written with it.
    pub events: Vec<crate::OutboxEvent>,
}

/// How many items of one workflow are in one status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewCount {
    pub workflow: String,
    pub status: ReviewStatus,
    pub items: u64,
    /// Pending items past their SLA.
    pub overdue: u64,
    /// When the oldest item of the group was queued.
    pub oldest_created_at_ms: i64,
}

/// The review queue's part of the store.
#[async_trait]
pub trait ReviewStore {
    /// Items oldest first.
    async fn list_reviews(&self, filter: &ReviewFilter) -> Result<Vec<ReviewItem>>;

    /// One item by its run id.
    async fn get_review(&self, run_id: &str) -> Result<Option<ReviewItem>>;

    /// Every decision on `run_id` in the order taken, or, with `None`, every decision on items
    /// of `workflow` (all workflows when that is `None` too).
    async fn review_decisions(
        &self,
        run_id: Option<&str>,
        workflow: Option<&str>,
    ) -> Result<Vec<ReviewDecisionRecord>>;

    /// Lease an item to a reviewer until `until_ms`; `None` when there is none they may take.
    /// Never the same pending item to two reviewers while a claim is live.
    async fn claim_review(&self, claim: &ReviewClaim) -> Result<Option<ReviewItem>>;

    /// Record a decision. `false` (and nothing written) when the item was decided meanwhile.
    /// A final status releases the run: approved → `ok`; edited → `ok` with the correction as
    /// its output (the original stays on the item); rejected → `rejected` with the reason.
    async fn decide_review(&self, update: &ReviewUpdate) -> Result<bool>;

    /// Pending items past their SLA at `now_ms` and not escalated yet, most overdue first.
    async fn overdue_reviews(&self, now_ms: i64, limit: u32) -> Result<Vec<ReviewItem>>;

    /// Mark a pending item escalated at `at_ms` and write `events` with it; `false` (and
    /// nothing written) when it was escalated or decided meanwhile.
    async fn escalate_review(
        &self,
        run_id: &str,
        at_ms: i64,
        events: &[crate::OutboxEvent],
    ) -> Result<bool>;

    /// Items per workflow and status (of one workflow, or all), counted in the database.
    async fn review_counts(&self, workflow: Option<&str>, now_ms: i64) -> Result<Vec<ReviewCount>>;

    /// The all-time tallies of the decisions on items of `workflow` (all workflows when
    /// `None`), from the review rollups.
    async fn review_tallies(
        &self,
        workflow: Option<&str>,
    ) -> Result<crate::review_rollups::ReviewTallies>;
}

/// The text of `value` for a JSON column.
pub(crate) fn json_column(value: Option<&Value>) -> Option<String> {
    value.map(crate::codec::json_text)
}

/// An item from a row of [`REVIEW_COLUMNS`].
pub(crate) fn item_from_row(row: &impl crate::codec::Columns) -> Result<ReviewItem> {
    use crate::codec::{enumeration, opt_json, unsigned};
    const T: &str = "reviews";
    Ok(ReviewItem {
        run_id: row.text("run_id")?,
        workflow: row.text("workflow")?,
        version: row.text("version")?,
        reason: enumeration(row, T, "reason", ReviewReason::parse)?,
        status: enumeration(row, T, "status", ReviewStatus::parse)?,
        approvals_required: small(
            unsigned(row, T, "approvals_required")?,
            "approvals_required",
        )?,
        decisions: small(unsigned(row, T, "decisions")?, "decisions")?,
        requested_by_key: row.opt_text("requested_by_key")?,
        output: opt_json(row, T, "output")?,
        corrected_output: opt_json(row, T, "corrected_output")?,
        created_at_ms: row.int("created_at_ms")?,
        due_at_ms: row.opt_int("due_at_ms")?,
        claimed_by: row.opt_text("claimed_by")?,
        claimed_at_ms: row.opt_int("claimed_at_ms")?,
        claim_expires_at_ms: row.opt_int("claim_expires_at_ms")?,
        decided_at_ms: row.opt_int("decided_at_ms")?,
        escalated_at_ms: row.opt_int("escalated_at_ms")?,
    })
}

/// A run's ticket from a row of `reason, approvals_required, due_at_ms`.
pub(crate) fn ticket_from_row(row: &impl crate::codec::Columns) -> Result<ReviewTicket> {
    use crate::codec::{enumeration, unsigned};
    const T: &str = "reviews";
    Ok(ReviewTicket {
        reason: enumeration(row, T, "reason", ReviewReason::parse)?,
        approvals_required: small(
            unsigned(row, T, "approvals_required")?,
            "approvals_required",
        )?,
        due_at_ms: row.opt_int("due_at_ms")?,
    })
}

/// A decision from a row of [`DECISION_COLUMNS`].
pub(crate) fn decision_from_row(row: &impl crate::codec::Columns) -> Result<ReviewDecisionRecord> {
    use crate::codec::{enumeration, opt_json};
    const T: &str = "review_decisions";
    Ok(ReviewDecisionRecord {
        run_id: row.text("run_id")?,
        reviewer: row.text("reviewer")?,
        decision: enumeration(row, T, "decision", Decision::parse)?,
        output: opt_json(row, T, "output")?,
        reason: row.opt_text("reason")?,
        note: row.opt_text("note")?,
        claimed_at_ms: row.opt_int("claimed_at_ms")?,
        decided_at_ms: row.int("decided_at_ms")?,
    })
}

fn small(n: u64, column: &'static str) -> Result<u32> {
    u32::try_from(n).map_err(|_| crate::StoreError::Corrupt {
        table: "reviews",
        column,
        message: format!("{n} is out of range"),
    })
}

/// The `WHERE` of a list query and its binds, `$1`-numbered from `first`.
pub(crate) fn list_conditions(filter: &ReviewFilter) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(workflow) = &filter.workflow {
        binds.push(workflow.clone());
        conditions.push(format!("workflow = ${}", binds.len()));
    }
    if let Some(status) = filter.status {
        binds.push(status.as_str().to_string());
        conditions.push(format!("status = ${}", binds.len()));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (
        format!(
            "SELECT {REVIEW_COLUMNS} FROM reviews {clause} ORDER BY created_at_ms, run_id LIMIT {}",
            filter.limit.unwrap_or(DEFAULT_LIST_LIMIT)
        ),
        binds,
    )
}

/// `impl ReviewStore for $store` over `$db`; `$lock` is what the claim's inner select adds
/// (`FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite). Also defines
/// `insert_review_rows`, which each backend's run writer calls inside its transaction.
macro_rules! review_store_impl {
    ($store:ty, $db:ty, $lock:literal) => {
        /// The review rows of the `runs` just inserted that carry a ticket.
        async fn insert_review_rows(
            tx: &mut <$db as sqlx::Database>::Connection,
            runs: &[&$crate::RunRecord],
        ) -> $crate::Result<()> {
            use $crate::reviews::json_column;
            // The writer passes only inserted runs that carry a ticket.
            for run in runs {
                let Some(ticket) = run.review else { continue };
                sqlx::query::<$db>(
                    "INSERT INTO reviews (run_id, workflow, version, reason, status, \
                     approvals_required, decisions, requested_by_key, output, created_at_ms, \
                     due_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10) \
                     ON CONFLICT (run_id) DO NOTHING",
                )
                .bind(&run.id)
                .bind(&run.workflow)
                .bind(&run.version)
                .bind(ticket.reason.as_str())
                .bind($crate::reviews::ReviewStatus::Pending.as_str())
                .bind(i64::from(ticket.approvals_required))
                .bind(run.caller.as_ref().map(|c| c.key_id.as_str()))
                .bind(json_column(run.output.as_ref()))
                .bind(run.created_at_ms)
                .bind(ticket.due_at_ms)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        }

        #[::async_trait::async_trait]
        impl $crate::reviews::ReviewStore for $store {
            async fn list_reviews(
                &self,
                filter: &$crate::reviews::ReviewFilter,
            ) -> $crate::Result<Vec<$crate::reviews::ReviewItem>> {
                let (sql, binds) = $crate::reviews::list_conditions(filter);
                $crate::codec::fetch_with_text_binds!($db, self.reader(), &sql, &binds, $crate::reviews::item_from_row)
            }

            async fn get_review(
                &self,
                run_id: &str,
            ) -> $crate::Result<Option<$crate::reviews::ReviewItem>> {
                let sql = format!(
                    "SELECT {} FROM reviews WHERE run_id = $1",
                    $crate::reviews::REVIEW_COLUMNS
                );
                sqlx::query::<$db>(&sql)
                    .bind(run_id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| $crate::reviews::item_from_row(&row))
                    .transpose()
            }

            async fn review_decisions(
                &self,
                run_id: Option<&str>,
                workflow: Option<&str>,
            ) -> $crate::Result<Vec<$crate::reviews::ReviewDecisionRecord>> {
                let columns = $crate::reviews::DECISION_COLUMNS;
                let (sql, bind) = match (run_id, workflow) {
                    (Some(id), _) => (
                        format!("SELECT {columns} FROM review_decisions WHERE run_id = $1 ORDER BY n"),
                        Some(id),
                    ),
                    (None, Some(workflow)) => (
                        format!(
                            "SELECT {columns} FROM review_decisions WHERE run_id IN \
                             (SELECT run_id FROM reviews WHERE workflow = $1) \
                             ORDER BY decided_at_ms, run_id, n"
                        ),
                        Some(workflow),
                    ),
                    (None, None) => (
                        format!(
                            "SELECT {columns} FROM review_decisions ORDER BY decided_at_ms, run_id, n"
                        ),
                        None,
                    ),
                };
                let mut query = sqlx::query::<$db>(&sql);
                if let Some(bind) = bind {
                    query = query.bind(bind);
                }
                query
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map($crate::reviews::decision_from_row)
                    .collect()
            }

            async fn claim_review(
                &self,
                claim: &$crate::reviews::ReviewClaim,
            ) -> $crate::Result<Option<$crate::reviews::ReviewItem>> {
                // $1 reviewer, $2 now, $3 until, $4 the reviewer's key ('' for none), then the
                // item (or the workflow) when given.
                // A reviewer may renew their own claim on a named item; the next item is
                // always one nobody holds.
                let own = if claim.run_id.is_some() { " OR claimed_by = $1" } else { "" };
                let mut target = format!(
                    "status = 'pending' \
                     AND (claim_expires_at_ms IS NULL OR claim_expires_at_ms <= $2{own}) \
                     AND (requested_by_key IS NULL OR requested_by_key <> $4) \
                     AND NOT EXISTS (SELECT 1 FROM review_decisions d \
                                     WHERE d.run_id = reviews.run_id AND d.reviewer = $1)",
                );
                let extra = claim.run_id.as_deref().or(claim.workflow.as_deref());
                match (&claim.run_id, &claim.workflow) {
                    (Some(_), _) => target.push_str(" AND run_id = $5"),
                    (None, Some(_)) => target.push_str(" AND workflow = $5"),
                    (None, None) => {}
                }
                let sql = format!(
                    "UPDATE reviews SET claimed_by = $1, claimed_at_ms = $2, claim_expires_at_ms = $3 \
                     WHERE run_id = (SELECT run_id FROM reviews WHERE {target} \
                                     ORDER BY created_at_ms, run_id LIMIT 1 {}) \
                     RETURNING {}",
                    $lock,
                    $crate::reviews::REVIEW_COLUMNS
                );
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                let mut query = sqlx::query::<$db>(&sql)
                    .bind(&claim.reviewer)
                    .bind(claim.now_ms)
                    .bind(claim.until_ms)
                    .bind(claim.reviewer_key.as_deref().unwrap_or(""));
                if let Some(extra) = extra {
                    query = query.bind(extra);
                }
                let row = query.fetch_optional(&mut *tx).await?;
                tx.commit().await?;
                row.map(|row| $crate::reviews::item_from_row(&row)).transpose()
            }

            async fn decide_review(
                &self,
                update: &$crate::reviews::ReviewUpdate,
            ) -> $crate::Result<bool> {
                use $crate::reviews::{json_column, ReviewStatus};
                let decision = &update.decision;
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                let final_at = (update.status != ReviewStatus::Pending).then_some(decision.decided_at_ms);
                let item = sqlx::query::<$db>(
                    "UPDATE reviews SET status = $1, decisions = decisions + 1, \
                     corrected_output = COALESCE($2, corrected_output), decided_at_ms = $3, \
                     claimed_by = NULL, claimed_at_ms = NULL, claim_expires_at_ms = NULL \
                     WHERE run_id = $4 AND status = 'pending' AND decisions = $5 \
                     RETURNING workflow, version, created_at_ms",
                )
                .bind(update.status.as_str())
                .bind(json_column(decision.output.as_ref()))
                .bind(final_at)
                .bind(&decision.run_id)
                .bind(i64::from(update.seen_decisions))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(item) = item else {
                    return Ok(false);
                };
                sqlx::query::<$db>(&format!(
                    "INSERT INTO review_decisions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    $crate::reviews::DECISION_COLUMNS
                ))
                .bind(&decision.run_id)
                .bind(i64::from(update.seen_decisions) + 1)
                .bind(&decision.reviewer)
                .bind(decision.decision.as_str())
                .bind(json_column(decision.output.as_ref()))
                .bind(&decision.reason)
                .bind(&decision.note)
                .bind(decision.claimed_at_ms)
                .bind(decision.decided_at_ms)
                .execute(&mut *tx)
                .await?;
                {
                    use $crate::codec::Columns;
                    add_review_rollups(
                        &mut tx,
                        update,
                        &item.text("workflow")?,
                        &item.text("version")?,
                        item.int("created_at_ms")?,
                    )
                    .await?;
                }
                insert_outbox_rows(&mut *tx, &update.events).await?;
                let release = match update.status {
                    ReviewStatus::Pending => None,
                    ReviewStatus::Approved => Some((
                        "UPDATE runs SET status = $1 WHERE id = $2 AND status = $3",
                        None,
                    )),
                    // The correction is on the item by now (written above).
                    ReviewStatus::Edited => Some((
                        "UPDATE runs SET status = $1, error = NULL, \
                         output = (SELECT corrected_output FROM reviews WHERE run_id = $2) \
                         WHERE id = $2 AND status IN ($3, 'ok')",
                        None,
                    )),
                    ReviewStatus::Rejected => Some((
                        "UPDATE runs SET status = $1, error = $4 WHERE id = $2 AND status IN ($3, 'ok')",
                        Some(format!(
                            "rejected by review: {}",
                            decision.reason.as_deref().unwrap_or("no reason given")
                        )),
                    )),
                };
                if let Some((sql, text)) = release {
                    // The rollups follow the run from its state before the release to after.
                    let before = rollup_state(&mut tx, &decision.run_id).await?;
                    let status = match update.status {
                        ReviewStatus::Rejected => $crate::RunStatus::Rejected,
                        _ => $crate::RunStatus::Ok,
                    };
                    let mut query = sqlx::query::<$db>(sql)
                        .bind(status.as_str())
                        .bind(&decision.run_id)
                        .bind($crate::RunStatus::Held.as_str());
                    if let Some(text) = text {
                        query = query.bind(text);
                    }
                    let moved = query.execute(&mut *tx).await?.rows_affected();
                    if let (Some(before), true) = (before, moved > 0) {
                        if let Some(after) = rollup_state(&mut tx, &decision.run_id).await? {
                            move_run_rollups(&mut tx, &before, &after).await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn overdue_reviews(
                &self,
                now_ms: i64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::reviews::ReviewItem>> {
                sqlx::query::<$db>(&format!(
                    "SELECT {} FROM reviews WHERE status = 'pending' AND due_at_ms < $1 \
                     AND escalated_at_ms IS NULL ORDER BY due_at_ms, run_id LIMIT $2",
                    $crate::reviews::REVIEW_COLUMNS
                ))
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?
                .iter()
                .map($crate::reviews::item_from_row)
                .collect()
            }

            async fn escalate_review(
                &self,
                run_id: &str,
                at_ms: i64,
                events: &[$crate::OutboxEvent],
            ) -> $crate::Result<bool> {
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                let changed = sqlx::query::<$db>(
                    "UPDATE reviews SET escalated_at_ms = $1 \
                     WHERE run_id = $2 AND status = 'pending' AND escalated_at_ms IS NULL",
                )
                .bind(at_ms)
                .bind(run_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok(false);
                }
                insert_outbox_rows(&mut *tx, events).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn review_counts(
                &self,
                workflow: Option<&str>,
                now_ms: i64,
            ) -> $crate::Result<Vec<$crate::reviews::ReviewCount>> {
                use $crate::codec::{enumeration, non_negative, Columns};
                const T: &str = "reviews";
                let filter = if workflow.is_some() { "WHERE workflow = $2" } else { "" };
                let sql = format!(
                    "SELECT workflow, status, COUNT(*) AS items, \
                     CAST(SUM(CASE WHEN status = 'pending' AND due_at_ms < $1 THEN 1 ELSE 0 END) \
                          AS BIGINT) AS overdue, \
                     MIN(created_at_ms) AS oldest FROM reviews {filter} \
                     GROUP BY workflow, status ORDER BY workflow, status"
                );
                let mut query = sqlx::query::<$db>(&sql).bind(now_ms);
                if let Some(workflow) = workflow {
                    query = query.bind(workflow);
                }
                query
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(|row| {
                        Ok($crate::reviews::ReviewCount {
                            workflow: row.text("workflow")?,
                            status: enumeration(row, T, "status", $crate::reviews::ReviewStatus::parse)?,
                            items: non_negative(T, "items", row.int("items")?)?,
                            overdue: non_negative(T, "overdue", row.int("overdue")?)?,
                            oldest_created_at_ms: row.int("oldest")?,
                        })
                    })
                    .collect()
            }

            async fn review_tallies(
                &self,
                workflow: Option<&str>,
            ) -> $crate::Result<$crate::review_rollups::ReviewTallies> {
                read_review_tallies(self.reader(), workflow).await
            }
        }
    };
}

pub(crate) use review_store_impl;
