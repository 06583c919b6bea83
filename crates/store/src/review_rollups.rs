//! Rollups of the review loop (migration 19): decisions per reviewer and claim → decision time,
//! per reason given, per pair of first and second decisions on an item, and per version and hour
//! of the reviewed runs (accepted items, reviewer time). The transaction that records a decision
//! adds it to them, so `review stats` and the outcome figures read a few hundred rows, not every
//! decision, and are never behind the decisions.

use std::collections::BTreeMap;

use shopfloor_core::review::Decision;

/// One reviewer's decisions, read from the rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerTally {
    pub reviewer: String,
    /// Every decision they took, under a claim or not.
    pub decisions: u64,
    /// The nearest-rank p50 and p95 of claim → decision time (ms) over their decisions taken
    /// under a claim, each the top of its histogram bucket: never below the exact value, and
    /// at most 1/32 above it. `None` when they never decided a claimed item.
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
}

/// The review loop's all-time figures of one workflow, or of all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewTallies {
    /// In reviewer name order.
    pub reviewers: Vec<ReviewerTally>,
    /// Reasons given with decisions, and how often, in reason order.
    pub reasons: Vec<(String, u64)>,
    /// Items decided at least twice, per (first decision, second decision).
    pub pairs: Vec<(Decision, Decision, u64)>,
}

/// The tallies of per-reviewer histograms: `rows` are (reviewer, bucket, decisions), with
/// bucket -1 for decisions taken without a claim.
pub(crate) fn reviewer_tallies(rows: Vec<(String, i64, u64)>) -> Vec<ReviewerTally> {
    let mut per: BTreeMap<String, (u64, BTreeMap<i64, u64>)> = BTreeMap::new();
    for (reviewer, bucket, n) in rows {
        let entry = per.entry(reviewer).or_default();
        entry.0 += n;
        if bucket >= 0 {
            *entry.1.entry(bucket).or_default() += n;
        }
    }
    per.into_iter()
        .map(|(reviewer, (decisions, times))| ReviewerTally {
            reviewer,
            decisions,
            p50_ms: crate::rollups::histogram_percentile(&times, 50.0),
            p95_ms: crate::rollups::histogram_percentile(&times, 95.0),
        })
        .collect()
}

/// The histogram bucket of a decision's claim → decision time; -1 without a claim.
pub(crate) fn time_bucket(claimed_at_ms: Option<i64>, decided_at_ms: i64) -> i64 {
    claimed_at_ms.map_or(-1, |claimed| {
        crate::rollups::latency_bucket(u64::try_from(decided_at_ms - claimed).unwrap_or(0))
    })
}

/// `add_review_rollups` (a decision's part, inside its transaction) and `read_review_tallies`,
/// over `$db`, for the backends' review stores. The upserts are one row each and the same SQL
/// on both databases.
macro_rules! review_rollup_fns {
    ($db:ty) => {
        /// Add `update`'s decision, on the item of `workflow` and `version` made at
        /// `created_at_ms`, to the review rollups.
        async fn add_review_rollups(
            tx: &mut <$db as sqlx::Database>::Connection,
            update: &$crate::reviews::ReviewUpdate,
            workflow: &str,
            version: &str,
            created_at_ms: i64,
        ) -> $crate::Result<()> {
            use $crate::reviews::ReviewStatus;
            let decision = &update.decision;
            sqlx::query::<$db>(
                "INSERT INTO review_reviewer_times (workflow, reviewer, bucket, decisions) \
                 VALUES ($1, $2, $3, 1) ON CONFLICT (workflow, reviewer, bucket) \
                 DO UPDATE SET decisions = review_reviewer_times.decisions + 1",
            )
            .bind(workflow)
            .bind(&decision.reviewer)
            .bind($crate::review_rollups::time_bucket(
                decision.claimed_at_ms,
                decision.decided_at_ms,
            ))
            .execute(&mut *tx)
            .await?;
            if let Some(reason) = &decision.reason {
                sqlx::query::<$db>(
                    "INSERT INTO review_reasons (workflow, reason, decisions) VALUES ($1, $2, 1) \
                     ON CONFLICT (workflow, reason) \
                     DO UPDATE SET decisions = review_reasons.decisions + 1",
                )
                .bind(workflow)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            }
            if update.seen_decisions == 1 {
                // The item's second decision: the pair with its first is the agreement's.
                let first: Option<String> = sqlx::query_scalar::<$db, String>(
                    "SELECT decision FROM review_decisions WHERE run_id = $1 AND n = 1",
                )
                .bind(&decision.run_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(first) = first {
                    sqlx::query::<$db>(
                        "INSERT INTO review_pairs (workflow, first_decision, second_decision, \
                         items) VALUES ($1, $2, $3, 1) \
                         ON CONFLICT (workflow, first_decision, second_decision) \
                         DO UPDATE SET items = review_pairs.items + 1",
                    )
                    .bind(workflow)
                    .bind(first)
                    .bind(decision.decision.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let accepted = i64::from(matches!(
                update.status,
                ReviewStatus::Approved | ReviewStatus::Edited
            ));
            let (timed, ms) = decision
                .claimed_at_ms
                .map_or((0, 0), |claimed| (1, decision.decided_at_ms - claimed));
            if accepted + timed > 0 {
                sqlx::query::<$db>(
                    "INSERT INTO review_hours (workflow, version, hour, accepted, timed, \
                     reviewer_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (workflow, version, hour) DO UPDATE SET \
                     accepted = review_hours.accepted + excluded.accepted, \
                     timed = review_hours.timed + excluded.timed, \
                     reviewer_ms = review_hours.reviewer_ms + excluded.reviewer_ms",
                )
                .bind(workflow)
                .bind(version)
                .bind(created_at_ms.div_euclid($crate::rollups::HOUR_MS))
                .bind(accepted)
                .bind(timed)
                .bind(ms)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        }

        /// The review tallies of `workflow` (all workflows when `None`).
        async fn read_review_tallies(
            pool: &sqlx::Pool<$db>,
            workflow: Option<&str>,
        ) -> $crate::Result<$crate::review_rollups::ReviewTallies> {
            use $crate::codec::{enumeration, non_negative, Columns};
            // One workflow, or all when `$1` is NULL (the tables are a few hundred rows).
            let rows = |sql: &'static str| async move {
                let sql = sql.replace("{filter}", " WHERE ($1 IS NULL OR workflow = $1)");
                sqlx::query::<$db>(&sql)
                    .bind(workflow)
                    .fetch_all(pool)
                    .await
            };
            let (times, reasons, pairs) = tokio::try_join!(
                rows(
                    "SELECT reviewer, bucket, CAST(SUM(decisions) AS BIGINT) AS n \
                     FROM review_reviewer_times{filter} GROUP BY reviewer, bucket \
                     ORDER BY reviewer, bucket"
                ),
                rows(
                    "SELECT reason, CAST(SUM(decisions) AS BIGINT) AS n \
                     FROM review_reasons{filter} GROUP BY reason ORDER BY reason"
                ),
                rows(
                    "SELECT first_decision, second_decision, CAST(SUM(items) AS BIGINT) AS n \
                     FROM review_pairs{filter} GROUP BY first_decision, second_decision \
                     ORDER BY first_decision, second_decision"
                ),
            )?;
            let times = times
                .iter()
                .map(|row| {
                    Ok((
                        row.text("reviewer")?,
                        row.int("bucket")?,
                        non_negative("review_reviewer_times", "decisions", row.int("n")?)?,
                    ))
                })
                .collect::<$crate::Result<Vec<_>>>()?;
            let reasons = reasons
                .iter()
                .map(|row| {
                    Ok((
                        row.text("reason")?,
                        non_negative("review_reasons", "decisions", row.int("n")?)?,
                    ))
                })
                .collect::<$crate::Result<Vec<_>>>()?;
            const T: &str = "review_pairs";
            let pairs = pairs
                .iter()
                .map(|row| {
                    Ok((
                        enumeration(row, T, "first_decision", $crate::reviews::Decision::parse)?,
                        enumeration(row, T, "second_decision", $crate::reviews::Decision::parse)?,
                        non_negative(T, "items", row.int("n")?)?,
                    ))
                })
                .collect::<$crate::Result<Vec<_>>>()?;
            Ok($crate::review_rollups::ReviewTallies {
                reviewers: $crate::review_rollups::reviewer_tallies(times),
                reasons,
                pairs,
            })
        }
    };
}

pub(crate) use review_rollup_fns;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reviewer_counts_every_decision_and_times_the_claimed_ones() {
        let minute = 60_000;
        let rows = vec![
            ("ann".to_string(), time_bucket(Some(0), 2 * minute), 1),
            ("ann".to_string(), time_bucket(Some(0), 4 * minute), 1),
            ("ann".to_string(), time_bucket(None, 9 * minute), 3),
            ("bob".to_string(), time_bucket(None, minute), 2),
        ];
        let tallies = reviewer_tallies(rows);
        assert_eq!(tallies.len(), 2);
        let ann = &tallies[0];
        assert_eq!((ann.reviewer.as_str(), ann.decisions), ("ann", 5));
        let (p50, p95) = (ann.p50_ms.unwrap(), ann.p95_ms.unwrap());
        assert!((2 * minute as u64..=2 * minute as u64 * 33 / 32).contains(&p50));
        assert!((4 * minute as u64..=4 * minute as u64 * 33 / 32).contains(&p95));
        assert_eq!((tallies[1].decisions, tallies[1].p50_ms), (2, None));
        assert_eq!(
            time_bucket(Some(10), 5),
            0,
            "a clock step back counts as no time"
        );
    }
}
