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

/// A window with more runs than this is sampled by time ([`SLOT_SAMPLE`]) rather than by
/// rank: numbering this many runs takes a few milliseconds, numbering a week of a busy
/// workflow's runs most of a second.
pub const SLOT_SAMPLING_MIN_RUNS: u64 = 20_000;

/// The first run (that reached a model) of each of `$5` spans of `$6` ms from the window's start,
/// with the tokens of its last attempt; binds the window as `$1`…`$4`. Each span is one index
/// seek, so the cost follows the sample's size, not the window's.
pub(crate) const SLOT_SAMPLE: &str = "WITH RECURSIVE slots(k) AS ( \
       SELECT CAST(0 AS BIGINT) UNION ALL SELECT k + 1 FROM slots WHERE k + 1 < $5) \
     SELECT s.input AS input, a.prompt_tokens AS prompt_tokens, \
       a.completion_tokens AS completion_tokens \
     FROM (SELECT slots.k AS k, (SELECT r.id FROM runs r WHERE r.workflow = $1 \
             AND r.created_at_ms >= $2 + slots.k * $6 AND r.created_at_ms < $2 + (slots.k + 1) * $6 \
             AND r.created_at_ms < $3 AND r.version = $4 AND r.origin <> 'eval' \
             ORDER BY r.created_at_ms, r.id LIMIT 1) AS id FROM slots) p \
     JOIN runs s ON s.id = p.id \
     JOIN attempts a ON a.run_id = s.id \
       AND a.n = (SELECT MAX(l.n) FROM attempts l WHERE l.run_id = s.id) \
     ORDER BY p.k";

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
                use $crate::rollups::{
                    run_hour_parts, split_query, union, Fallbacks, Split, HOUR_MS, LABEL_SQL,
                };
                let split = Split::new(window.from_ms, window.to_ms, HOUR_MS);
                let sql = format!(
                    "SELECT u.status AS status, CAST(SUM(u.runs) AS BIGINT) AS n, \
                     CAST(SUM(u.fallbacks) AS BIGINT) AS fallbacks FROM ({}) u \
                     GROUP BY u.status HAVING SUM(u.runs) > 0 ORDER BY status",
                    run_hour_parts(" AND r.version = $8", Fallbacks::Counted)
                );
                let mut fallbacks = 0;
                let statuses = split_query!($db, &sql, window.workflow, split)
                    .bind(window.version)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(|row| {
                        fallbacks += non_negative("runs", "fallbacks", row.int("fallbacks")?)?;
                        Ok((
                            enumeration(row, "runs", "status", $crate::RunStatus::parse)?,
                            non_negative("runs", "n", row.int("n")?)?,
                        ))
                    })
                    .collect::<$crate::Result<Vec<_>>>()?;
                let sql = format!(
                    "SELECT u.output AS output, CAST(SUM(u.runs) AS BIGINT) AS n FROM ({}) u \
                     GROUP BY u.output HAVING SUM(u.runs) > 0 ORDER BY output",
                    union(
                        "SELECT r.output AS output, r.runs AS runs FROM run_hour_outputs r",
                        "hour",
                        "SELECT r.output, 1 FROM runs r",
                        LABEL_SQL,
                        " AND r.version = $8",
                    )
                );
                let outputs = split_query!($db, &sql, window.workflow, split)
                    .bind(window.version)
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
                Ok($crate::drift::WindowCounts {
                    statuses,
                    outputs,
                    fallbacks,
                })
            }

            async fn window_latency_percentile(
                &self,
                window: &$crate::drift::RunWindow<'_>,
                percentile: f64,
            ) -> $crate::Result<Option<u64>> {
                use $crate::codec::{non_negative, Columns};
                use $crate::drift::WINDOW;
                use $crate::rollups::{latency_bucket_sql, split_query, union, Split, HOUR_MS};
                let split = Split::new(window.from_ms, window.to_ms, HOUR_MS);
                if split.has_units() {
                    // Whole hours: the histogram's buckets, the edges bucketed alike.
                    let sql = format!(
                        "SELECT u.bucket AS bucket, CAST(SUM(u.runs) AS BIGINT) AS n FROM ({}) u \
                         GROUP BY u.bucket ORDER BY bucket",
                        union(
                            "SELECT r.bucket AS bucket, r.runs AS runs FROM run_hour_latency r",
                            "hour",
                            &format!("SELECT {}, 1 FROM runs r", latency_bucket_sql("r.latency_ms")),
                            " AND r.status <> 'refused'",
                            " AND r.version = $8",
                        )
                    );
                    let histogram = split_query!($db, &sql, window.workflow, split)
                        .bind(window.version)
                        .fetch_all(self.reader())
                        .await?
                        .iter()
                        .map(|row| {
                            Ok((row.int("bucket")?, non_negative("runs", "n", row.int("n")?)?))
                        })
                        .collect::<$crate::Result<::std::collections::BTreeMap<i64, u64>>>()?;
                    return Ok($crate::rollups::histogram_percentile(&histogram, percentile));
                }
                // Less than an hour's edges: the exact value.
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
                use $crate::rollups::{run_hour_parts, split_query, Fallbacks, Split, HOUR_MS};
                let split = Split::new(window.from_ms, window.to_ms, HOUR_MS);
                let sql = format!(
                    "SELECT CAST(COALESCE(SUM(u.runs), 0) AS BIGINT) AS n FROM ({}) u",
                    run_hour_parts(" AND r.version = $8", Fallbacks::Unread)
                );
                let n = split_query!($db, &sql, window.workflow, split)
                    .bind(window.version)
                    .fetch_one(self.reader())
                    .await?
                    .int("n")?;
                let n = non_negative("runs", "n", n)?;
                let rows = if n > $crate::drift::SLOT_SAMPLING_MIN_RUNS {
                    // A large window: the first run of each of `limit` equal spans of time,
                    // found by index, instead of numbering every run of the window.
                    // The spans cover the hours that have the version's runs (from the
                    // rollup), not the window's empty start or end. (Seeking the window's
                    // first and last run instead let PostgreSQL, without statistics, sort
                    // every run of the window: 2 s at 10,000,000 runs.)
                    let hours = sqlx::query::<$db>(
                        "SELECT MIN(hour) AS first, MAX(hour) AS last FROM run_hours \
                         WHERE workflow = $1 AND version = $2 AND hour >= $3 AND hour <= $4 \
                         AND runs > 0",
                    )
                    .bind(window.workflow)
                    .bind(window.version)
                    .bind(window.from_ms.div_euclid(HOUR_MS))
                    .bind((window.to_ms - 1).div_euclid(HOUR_MS))
                    .fetch_one(self.reader())
                    .await?;
                    let (Some(first_hour), Some(last_hour)) =
                        (hours.opt_int("first")?, hours.opt_int("last")?)
                    else {
                        return Ok(Vec::new());
                    };
                    let runs = $crate::drift::RunWindow {
                        from_ms: window.from_ms.max(first_hour * HOUR_MS),
                        to_ms: window.to_ms.min((last_hour + 1) * HOUR_MS),
                        ..*window
                    };
                    let width =
                        ((runs.to_ms - runs.from_ms).max(1) as u64).div_ceil(u64::from(limit));
                    let width = i64::try_from(width).unwrap_or(i64::MAX);
                    window_query($crate::drift::SLOT_SAMPLE, &runs)
                        .bind(i64::from(limit))
                        .bind(width)
                        .fetch_all(self.reader())
                        .await?
                } else {
                let step = n.div_ceil(u64::from(limit)).max(1);
                window_query(
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
                .await?
                };
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
