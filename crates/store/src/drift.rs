//! What drift checks read: aggregates of one version's runs in a time window, computed in SQL
//! over the `runs_workflow_created` index (workflow, created_at_ms), and a bounded, evenly
//! spaced sample of runs for the distributions that need values (lengths, words). Nothing here
//! loads a window's runs whole.

use async_trait::async_trait;

use crate::{Result, RunStatus};

/// Runs of `workflow` at `version` created in `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunWindow<'a> {
    pub workflow: &'a str,
    pub version: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Counts of a window, from `GROUP BY`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Runs per status.
    pub statuses: Vec<(RunStatus, u64)>,
    /// Stored output (its JSON text) → runs, for runs with a valid output (`ok`, `held`,
    /// `rejected`).
    pub outputs: Vec<(String, u64)>,
    /// Runs answered by a model other than their first attempt's.
    pub fallbacks: u64,
}

impl WindowCounts {
    /// Runs in the window.
    pub fn runs(&self) -> u64 {
        self.statuses.iter().map(|(_, n)| n).sum()
    }

    /// Runs with `status`.
    pub fn with_status(&self, status: RunStatus) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One run of a sample: its input and the token counts of the attempt that answered (its last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledRun {
    /// The input object's JSON text.
    pub input: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The reads of drift detection.
#[async_trait]
pub trait DriftStore {
    /// Status, output and fallback counts of the window.
    async fn window_counts(&self, window: &RunWindow<'_>) -> Result<WindowCounts>;

    /// The nearest-rank `percentile` (0–100) of the latency of the window's runs that reached a
    /// model (every status but `refused`); `None` when there are none.
    async fn window_latency_percentile(
        &self,
        window: &RunWindow<'_>,
        percentile: f64,
    ) -> Result<Option<u64>>;

    /// At most `limit` runs of the window that reached a model, evenly spaced in time (every
    /// k-th by creation), oldest first: the same window gives the same sample.
    async fn window_sample(&self, window: &RunWindow<'_>, limit: u32) -> Result<Vec<SampledRun>>;

    /// When the first run of `version` at or after `from_ms` was created.
    async fn first_run_at(
        &self,
        workflow: &str,
        version: &str,
        from_ms: i64,
    ) -> Result<Option<i64>>;
}

/// The rank (1-based) of the nearest-rank `percentile` among `n` values.
pub(crate) fn nearest_rank(n: u64, percentile: f64) -> u64 {
    let rank = (percentile.clamp(0.0, 100.0) / 100.0 * n as f64).ceil() as u64;
    rank.clamp(1, n.max(1))
}

/// The condition selecting a window's runs (`r` is `runs`); binds `$1`…`$4`.
/// An eval of the live version is not production traffic: its runs never count.
pub(crate) const WINDOW: &str = "r.workflow = $1 AND r.created_at_ms >= $2 \
     AND r.created_at_ms < $3 AND r.version = $4 AND r.origin <> 'eval'";

/// `impl DriftStore for $store` over `$db`.
macro_rules! drift_store_impl {
    ($store:ty, $db:ty) => {
        /// `sql` with the window's four parameters bound.
        fn window_query<'q>(
            sql: &'q str,
            window: &$crate::drift::RunWindow<'q>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            sqlx::query::<$db>(sql)
                .bind(window.workflow)
                .bind(window.from_ms)
                .bind(window.to_ms)
                .bind(window.version)
        }

        /// The count `sql` selects, with the window's four parameters bound.
        fn window_count<'q>(
            sql: &'q str,
            window: &$crate::drift::RunWindow<'q>,
        ) -> sqlx::query::QueryScalar<'q, $db, i64, <$db as sqlx::Database>::Arguments<'q>> {
            sqlx::query_scalar::<$db, i64>(sql)
                .bind(window.workflow)
                .bind(window.from_ms)
                .bind(window.to_ms)
                .bind(window.version)
        }

        #[::async_trait::async_trait]
        impl $crate::drift::DriftStore for $store {
            async fn window_counts(
                &self,
                window: &$crate::drift::RunWindow<'_>,
            ) -> $crate::Result<$crate::drift::WindowCounts> {
                use $crate::codec::{enumeration, non_negative, Columns};
                use $crate::drift::WINDOW;
                let statuses = window_query(
                    &format!(
                        "{}{}{}",
                        "SELECT r.status AS status, COUNT(*) AS n FROM runs r WHERE ",
                        WINDOW,
                        " GROUP BY r.status"
                    ),
                    window,
                )
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        enumeration(row, "runs", "status", $crate::RunStatus::parse)?,
                        non_negative("runs", "n", row.int("n")?)?,
                    ))
                })
                .collect::<$crate::Result<Vec<_>>>()?;
                let outputs = window_query(
                    &format!(
                        "{}{}{}",
                        "SELECT r.output AS output, COUNT(*) AS n FROM runs r WHERE ",
                        WINDOW,
                        " AND r.output IS NOT NULL AND r.status IN ('ok', 'held', 'rejected') \
                     GROUP BY r.output ORDER BY r.output"
                    ),
                    window,
                )
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        row.text("output")?,
                        non_negative("runs", "n", row.int("n")?)?,
                    ))
                })
                .collect::<$crate::Result<Vec<_>>>()?;
                let fallbacks = window_query(
                    &format!(
                        "{}{}{}",
                        "SELECT COUNT(*) AS n FROM runs r \
                     JOIN attempts a ON a.run_id = r.id AND a.n = 1 WHERE ",
                        WINDOW,
                        " AND r.model IS NOT NULL AND r.model <> a.model"
                    ),
                    window,
                )
                .fetch_one(self.reader())
                .await?;
                Ok($crate::drift::WindowCounts {
                    statuses,
                    outputs,
                    fallbacks: non_negative("runs", "n", fallbacks.int("n")?)?,
                })
            }

            async fn window_latency_percentile(
                &self,
                window: &$crate::drift::RunWindow<'_>,
                percentile: f64,
            ) -> $crate::Result<Option<u64>> {
                use $crate::codec::{non_negative, Columns};
                use $crate::drift::WINDOW;
                let n: i64 = window_count(
                    &format!(
                        "{}{}{}",
                        "SELECT COUNT(*) FROM runs r WHERE ", WINDOW, " AND r.status <> 'refused'"
                    ),
                    window,
                )
                .fetch_one(self.reader())
                .await?;
                let n = non_negative("runs", "n", n)?;
                if n == 0 {
                    return Ok(None);
                }
                let offset = $crate::drift::nearest_rank(n, percentile) - 1;
                let row = window_query(
                    &format!(
                        "{}{}{}",
                        "SELECT r.latency_ms AS latency_ms FROM runs r WHERE ",
                        WINDOW,
                        " AND r.status <> 'refused' ORDER BY r.latency_ms LIMIT 1 OFFSET $5"
                    ),
                    window,
                )
                .bind($crate::codec::to_bigint("offset", offset)?)
                .fetch_optional(self.reader())
                .await?;
                row.map(|row| non_negative("runs", "latency_ms", row.int("latency_ms")?))
                    .transpose()
            }

            async fn window_sample(
                &self,
                window: &$crate::drift::RunWindow<'_>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::drift::SampledRun>> {
                use $crate::codec::{non_negative, Columns};
                use $crate::drift::WINDOW;
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let n: i64 = window_count(
                    &format!("{}{}{}", "SELECT COUNT(*) FROM runs r WHERE ", WINDOW, ""),
                    window,
                )
                .fetch_one(self.reader())
                .await?;
                let step = (non_negative("runs", "n", n)?.div_ceil(u64::from(limit))).max(1);
                let rows = window_query(
                    &format!(
                        "{}{}{}",
                        "SELECT s.input AS input, a.prompt_tokens AS prompt_tokens, \
                     a.completion_tokens AS completion_tokens FROM \
                     (SELECT r.id AS id, r.input AS input, \
                      ROW_NUMBER() OVER (ORDER BY r.created_at_ms, r.id) AS rn \
                      FROM runs r WHERE ",
                        WINDOW,
                        ") s JOIN attempts a ON a.run_id = s.id \
                     AND a.n = (SELECT MAX(l.n) FROM attempts l WHERE l.run_id = s.id) \
                     WHERE (s.rn - 1) % $5 = 0 ORDER BY s.rn LIMIT $6"
                    ),
                    window,
                )
                .bind($crate::codec::to_bigint("step", step)?)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::drift::SampledRun {
                            input: row.text("input")?,
                            prompt_tokens: non_negative(
                                "attempts",
                                "prompt_tokens",
                                row.int("prompt_tokens")?,
                            )?,
                            completion_tokens: non_negative(
                                "attempts",
                                "completion_tokens",
                                row.int("completion_tokens")?,
                            )?,
                        })
                    })
                    .collect()
            }

            async fn first_run_at(
                &self,
                workflow: &str,
                version: &str,
                from_ms: i64,
            ) -> $crate::Result<Option<i64>> {
                Ok(sqlx::query_scalar::<$db, i64>(
                    "SELECT created_at_ms FROM runs WHERE workflow = $1 AND created_at_ms >= $2 \
                     AND version = $3 AND origin <> 'eval' ORDER BY created_at_ms LIMIT 1",
                )
                .bind(workflow)
                .bind(from_ms)
                .bind(version)
                .fetch_optional(self.reader())
                .await?)
            }
        }
    };
}

pub(crate) use drift_store_impl;
