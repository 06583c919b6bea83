//! Rollups of production runs (every origin but `eval`; migration 16): runs per workflow, hour,
//! version and status with their sums; label outputs per hour; a latency histogram per hour;
//! distinct callers per day. The run writer adds to them in the transaction that records the
//! runs, and a review decision moves a run between statuses (and outputs) in the transaction
//! that changes it, so they are never behind `runs`.
//!
//! A read of a window takes its whole hours (or days) from a rollup and only the partial ones at
//! its two edges from `runs`: [`Split`] cuts the window, [`union`] writes the `UNION ALL` of the
//! three parts. The parts bind `$1` the workflow, `$2`/`$3` the whole units, `$4`/`$5` the head
//! and `$6`/`$7` the tail, in Unix milliseconds.

use std::collections::{BTreeMap, BTreeSet};

use crate::RunStatus;

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
/// An output is rolled up when its JSON text is a string of at most this many characters: a
/// label. Longer (or non-string) outputs are never counted by label.
pub(crate) const MAX_LABEL_TEXT: usize = 200;
/// The histogram's last bucket: every latency of 2^32 ms or more.
const LAST_BUCKET: i64 = 895;

/// The histogram bucket of a latency: the value itself below 64 ms; above, 32 buckets per
/// doubling, so a bucket is at most 1/32 of its values wide.
pub fn latency_bucket(ms: u64) -> i64 {
    if ms < 64 {
        return ms as i64;
    }
    if ms >= 1 << 32 {
        return LAST_BUCKET;
    }
    // ms lies in [2^(k+5), 2^(k+6)); its top six bits (32..63) pick the bucket within.
    let k = i64::from(63 - ms.leading_zeros()) - 5;
    32 * k + (ms >> k) as i64
}

/// The largest latency in `bucket`, which a percentile read from the histogram reports: never
/// below the true value, and at most 1/32 above it.
pub fn bucket_upper(bucket: i64) -> u64 {
    if bucket < 64 {
        return bucket.max(0) as u64;
    }
    let k = bucket.min(LAST_BUCKET) / 32 - 1;
    let top = (bucket - 32 * k) as u64;
    ((top + 1) << k) - 1
}

/// Whether a run's stored output (its JSON text) is counted by label.
pub(crate) fn is_label(output: &str) -> bool {
    output.starts_with('"') && output.chars().take(MAX_LABEL_TEXT + 1).count() <= MAX_LABEL_TEXT
}

/// What one run adds to the rollups.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Contribution<'a> {
    pub workflow: &'a str,
    pub version: &'a str,
    pub created_at_ms: i64,
    pub status: &'a str,
    /// The stored output's JSON text.
    pub output: Option<&'a str>,
    pub cost_usd: f64,
    pub latency_ms: i64,
    /// Answered by a model other than its first attempt's.
    pub fallback: bool,
    pub key_id: Option<&'a str>,
    pub caller_user: Option<&'a str>,
    pub team: Option<&'a str>,
}

/// The sums of one `run_hours` row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct HourSums {
    pub runs: i64,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub fallbacks: i64,
    pub anonymous: i64,
}

/// What a write adds to each rollup, keyed and ordered as the tables' primary keys (so that
/// concurrent writers take row locks in the same order).
#[derive(Debug, Default)]
pub(crate) struct Deltas<'a> {
    /// (workflow, hour, version, status, team): '' for no team.
    pub hours: BTreeMap<(&'a str, i64, &'a str, &'a str, &'a str), HourSums>,
    /// (workflow, version, hour, output).
    pub outputs: BTreeMap<(&'a str, &'a str, i64, &'a str), i64>,
    /// (workflow, version, hour, bucket).
    pub latency: BTreeMap<(&'a str, &'a str, i64, i64), i64>,
    /// (workflow, day, user, team, key): '' for a missing user or team.
    pub callers: BTreeSet<(&'a str, i64, &'a str, &'a str, &'a str)>,
}

impl<'a> Deltas<'a> {
    /// Add `run` (`sign` 1) or take it away (`sign` -1). Callers are only ever added: a
    /// caller seen on a day stays seen.
    pub fn add(&mut self, run: &Contribution<'a>, sign: i64) {
        let hour = run.created_at_ms.div_euclid(HOUR_MS);
        let sums = self
            .hours
            .entry((
                run.workflow,
                hour,
                run.version,
                run.status,
                run.team.unwrap_or(""),
            ))
            .or_default();
        sums.runs += sign;
        sums.cost_usd += sign as f64 * run.cost_usd;
        sums.latency_ms += sign * run.latency_ms;
        sums.fallbacks += sign * i64::from(run.fallback);
        sums.anonymous += sign * i64::from(run.key_id.is_none());
        let keeps_output = [RunStatus::Ok, RunStatus::Held, RunStatus::Rejected]
            .iter()
            .any(|s| s.as_str() == run.status);
        if let Some(output) = run.output.filter(|o| keeps_output && is_label(o)) {
            *self
                .outputs
                .entry((run.workflow, run.version, hour, output))
                .or_default() += sign;
        }
        if run.status != RunStatus::Refused.as_str() {
            let bucket = latency_bucket(u64::try_from(run.latency_ms).unwrap_or(0));
            *self
                .latency
                .entry((run.workflow, run.version, hour, bucket))
                .or_default() += sign;
        }
        if let (Some(key_id), true) = (run.key_id, sign > 0) {
            self.callers.insert((
                run.workflow,
                run.created_at_ms.div_euclid(DAY_MS),
                run.caller_user.unwrap_or(""),
                run.team.unwrap_or(""),
                key_id,
            ));
        }
    }

    /// Drop the entries a move cancelled out (a run taken from and added to the same row).
    pub fn without_zeros(mut self) -> Self {
        self.hours.retain(|_, s| *s != HourSums::default());
        self.outputs.retain(|_, n| *n != 0);
        self.latency.retain(|_, n| *n != 0);
        self
    }
}

/// A window cut into whole units of `unit_ms` (read from a rollup) and the partial units at its
/// two edges (read from `runs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    /// The whole units: `first <= unit < end` (empty when `first == end`).
    pub first: i64,
    pub end: i64,
    /// The head and the tail, in Unix milliseconds, each `[from, to)`.
    pub head: (i64, i64),
    pub tail: (i64, i64),
}

impl Split {
    pub fn new(from_ms: i64, to_ms: i64, unit_ms: i64) -> Self {
        let first = from_ms.div_euclid(unit_ms) + i64::from(from_ms.rem_euclid(unit_ms) != 0);
        let end = to_ms.div_euclid(unit_ms);
        if first >= end {
            // No whole unit: the window is read from `runs` alone.
            return Self {
                first: 0,
                end: 0,
                head: (from_ms, to_ms),
                tail: (0, 0),
            };
        }
        Self {
            first,
            end,
            head: (from_ms, first * unit_ms),
            tail: (end * unit_ms, to_ms),
        }
    }

    /// Whether part of the window is read from the rollup.
    pub fn has_units(&self) -> bool {
        self.first < self.end
    }
}

/// The `UNION ALL` of `rollup` (a `SELECT … FROM table r`) over the whole units (`r.{unit}`
/// from `$2` to `$3`) and `raw` (a `SELECT … FROM runs r …`) over the head (`$4`–`$5`) and the
/// tail (`$6`–`$7`), all of workflow `$1`, eval runs left out. `extra` (e.g.
/// ` AND r.version = $8`) is added to every part's condition, `raw_only` to the edges'.
pub(crate) fn union(rollup: &str, unit: &str, raw: &str, raw_only: &str, extra: &str) -> String {
    let edge = |from: u8, to: u8| {
        format!(
            "{raw} WHERE r.workflow = $1 AND r.created_at_ms >= ${from} \
             AND r.created_at_ms < ${to} AND r.origin <> 'eval'{raw_only}{extra}"
        )
    };
    format!(
        "{rollup} WHERE r.workflow = $1 AND r.{unit} >= $2 AND r.{unit} < $3{extra} \
         UNION ALL {} UNION ALL {}",
        edge(4, 5),
        edge(6, 7)
    )
}

/// Whether run `r` was answered by a model other than its first attempt's, as 1 or 0. A
/// correlated lookup on the attempts' primary key, not a join: a join over a window's edge
/// let PostgreSQL choose a hash join that read every attempt (1.9 s at 10,000,000 runs).
pub(crate) const FALLBACK_SQL: &str = "CAST(CASE WHEN r.model <> (SELECT a.model FROM attempts a \
     WHERE a.run_id = r.id AND a.n = 1) THEN 1 ELSE 0 END AS BIGINT)";

/// What [`run_hour_parts`] gives for an edge run's `fallbacks` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallbacks {
    /// Looked up per edge run ([`FALLBACK_SQL`]): only drift's counts read the column.
    Counted,
    /// 0: the caller never reads it, so no edge run pays for the lookup.
    Unread,
}

/// The runs of workflow `$1` by hour ([`union`] of `run_hours` and the edges' runs), with the
/// columns `version`, `hour`, `status`, `team` ('' for none), `runs`, `cost`, `latency`,
/// `fallbacks` and `anonymous`; `extra` as in [`union`].
pub(crate) fn run_hour_parts(extra: &str, fallbacks: Fallbacks) -> String {
    let fallback = match fallbacks {
        Fallbacks::Counted => FALLBACK_SQL,
        Fallbacks::Unread => "0",
    };
    union(
        "SELECT r.version AS version, r.hour AS hour, r.status AS status, r.team AS team, \
         r.runs AS runs, r.cost_usd AS cost, r.latency_ms AS latency, r.fallbacks AS fallbacks, \
         r.anonymous AS anonymous FROM run_hours r",
        "hour",
        &format!(
            "SELECT r.version, r.created_at_ms / 3600000, r.status, COALESCE(r.team, ''), 1, \
             r.cost_usd, r.latency_ms, {fallback}, CASE WHEN r.key_id IS NULL THEN 1 ELSE 0 END \
             FROM runs r"
        ),
        "",
        extra,
    )
}

/// The SQL of [`latency_bucket`] of `column` (migration 16 holds the same expression).
pub(crate) fn latency_bucket_sql(column: &str) -> String {
    let mut sql = format!("CASE WHEN {column} < 64 THEN {column}");
    for k in 1..=26u32 {
        sql.push_str(&format!(
            " WHEN {column} < {} THEN {} + {column} / {}",
            1u64 << (k + 6),
            32 * k,
            1u64 << k
        ));
    }
    sql.push_str(&format!(" ELSE {LAST_BUCKET} END"));
    sql
}

/// The condition of a run that is counted by label ([`is_label`]), on `runs r`.
pub(crate) const LABEL_SQL: &str =
    " AND r.output IS NOT NULL AND r.status IN ('ok', 'held', 'rejected') \
     AND r.output LIKE '\"%' AND LENGTH(r.output) <= 200";

/// `sql` (written with [`union`]) with the workflow and the split bound as `$1`…`$7`.
macro_rules! split_query {
    ($db:ty, $sql:expr, $workflow:expr, $split:expr) => {
        sqlx::query::<$db>($sql)
            .bind($workflow)
            .bind($split.first)
            .bind($split.end)
            .bind($split.head.0)
            .bind($split.head.1)
            .bind($split.tail.0)
            .bind($split.tail.1)
    };
}

pub(crate) use split_query;

/// `add_run_rollups` (the run writer's part) and `move_run_rollups` (a review decision's), over
/// `$db`, for the backends' run writers and review stores. Each backend writes the deltas
/// with its own `apply_rollups`: multi-row `VALUES` on SQLite, fixed-text `UNNEST` statements
/// (prepared once) on PostgreSQL.
macro_rules! rollup_writes {
    ($db:ty) => {
        /// Add the recorded (`inserted`) production runs of `runs` to the rollups.
        async fn add_run_rollups(
            tx: &mut <$db as sqlx::Database>::Connection,
            runs: &[$crate::RunRecord],
            rows: &[$crate::codec::RunRow<'_>],
            inserted: &::std::collections::HashSet<String>,
        ) -> $crate::Result<()> {
            let mut deltas = $crate::rollups::Deltas::default();
            for (run, row) in runs.iter().zip(rows) {
                if run.origin == $crate::RunOrigin::Eval || !inserted.contains(&run.id) {
                    continue;
                }
                let first = run.attempts.iter().find(|a| a.n == 1);
                deltas.add(
                    &$crate::rollups::Contribution {
                        workflow: row.workflow,
                        version: row.version,
                        created_at_ms: row.created_at_ms,
                        status: row.status,
                        output: row.output.as_deref(),
                        cost_usd: row.cost_usd,
                        latency_ms: row.latency_ms,
                        fallback: matches!((row.model, first), (Some(m), Some(a)) if a.model != m),
                        key_id: row.key_id,
                        caller_user: row.caller_user,
                        team: row.team,
                    },
                    1,
                );
            }
            apply_rollups(tx, &deltas).await
        }

        /// The rollup columns of run `id` as recorded now (`None` for an eval's run).
        async fn rollup_state(
            tx: &mut <$db as sqlx::Database>::Connection,
            id: &str,
        ) -> $crate::Result<Option<$crate::rollups::RunState>> {
            use $crate::codec::Columns;
            let sql = format!(
                "SELECT r.workflow, r.version, r.created_at_ms, r.status, r.output, r.cost_usd, \
                 r.latency_ms, r.key_id, r.caller_user, r.team, {} AS fallback \
                 FROM runs r \
                 WHERE r.id = $1 AND r.origin <> 'eval'",
                $crate::rollups::FALLBACK_SQL
            );
            let row = sqlx::query::<$db>(&sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            row.map(|row| {
                Ok($crate::rollups::RunState {
                    workflow: row.text("workflow")?,
                    version: row.text("version")?,
                    created_at_ms: row.int("created_at_ms")?,
                    status: row.text("status")?,
                    output: row.opt_text("output")?,
                    cost_usd: row.float("cost_usd")?,
                    latency_ms: row.int("latency_ms")?,
                    fallback: row.int("fallback")? != 0,
                    key_id: row.opt_text("key_id")?,
                    caller_user: row.opt_text("caller_user")?,
                    team: row.opt_text("team")?,
                })
            })
            .transpose()
        }

        /// Move a run in the rollups from its state `before` to `after` a change.
        async fn move_run_rollups(
            tx: &mut <$db as sqlx::Database>::Connection,
            before: &$crate::rollups::RunState,
            after: &$crate::rollups::RunState,
        ) -> $crate::Result<()> {
            let mut deltas = $crate::rollups::Deltas::default();
            deltas.add(&before.contribution(), -1);
            deltas.add(&after.contribution(), 1);
            apply_rollups(tx, &deltas.without_zeros()).await
        }

    };
}

pub(crate) use rollup_writes;

/// A run's rollup columns, read back to move it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunState {
    pub workflow: String,
    pub version: String,
    pub created_at_ms: i64,
    pub status: String,
    pub output: Option<String>,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub fallback: bool,
    pub key_id: Option<String>,
    pub caller_user: Option<String>,
    pub team: Option<String>,
}

impl RunState {
    pub fn contribution(&self) -> Contribution<'_> {
        Contribution {
            workflow: &self.workflow,
            version: &self.version,
            created_at_ms: self.created_at_ms,
            status: &self.status,
            output: self.output.as_deref(),
            cost_usd: self.cost_usd,
            latency_ms: self.latency_ms,
            fallback: self.fallback,
            key_id: self.key_id.as_deref(),
            caller_user: self.caller_user.as_deref(),
            team: self.team.as_deref(),
        }
    }
}

/// The nearest-rank `percentile` (0–100) of a latency histogram (bucket → runs), as its
/// bucket's largest value; `None` when it is empty.
pub(crate) fn histogram_percentile(histogram: &BTreeMap<i64, u64>, percentile: f64) -> Option<u64> {
    let n: u64 = histogram.values().sum();
    if n == 0 {
        return None;
    }
    let rank = crate::drift::nearest_rank(n, percentile);
    let mut seen = 0;
    for (bucket, runs) in histogram {
        seen += runs;
        if seen >= rank {
            return Some(bucket_upper(*bucket));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_lies_in_its_bucket_within_one_thirty_second() {
        let mut values: Vec<u64> = (0..5_000).collect();
        values.extend((0..40).map(|e| 1u64 << e));
        values.extend((1..40).map(|e| (1u64 << e) - 1));
        values.extend([u32::MAX as u64, 1 << 32, u64::MAX]);
        let mut last = -1;
        for v in 0..5_000 {
            let b = latency_bucket(v);
            assert!(b >= last, "buckets rise with the value");
            last = b;
        }
        for v in values {
            let b = latency_bucket(v);
            assert!((0..=LAST_BUCKET).contains(&b));
            let upper = bucket_upper(b);
            if v < 1 << 32 {
                assert!(upper >= v, "{v} above its bucket {b}'s top {upper}");
                assert!(
                    (upper - v) as f64 <= v as f64 / 32.0,
                    "{v} in bucket {b} reported as {upper}"
                );
                if v < 64 {
                    assert_eq!(upper, v);
                }
            } else {
                assert_eq!(b, LAST_BUCKET);
            }
        }
        assert_eq!(latency_bucket(100), 82);
        assert_eq!(bucket_upper(82), 101);
    }

    #[test]
    fn the_sql_buckets_latencies_as_the_code_does() {
        let values: Vec<u64> = (0..3_000u64)
            .chain((0..40).map(|e| 1u64 << e))
            .chain((1..40).map(|e| (1u64 << e) - 1))
            .chain((0..200).map(|i| i * 7_919 + 3_000))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let buckets: Vec<i64> = runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
                .await
                .unwrap();
            let list = values
                .iter()
                .map(|v| format!("({v})"))
                .collect::<Vec<_>>()
                .join(", ");
            sqlx::query_scalar(&format!(
                "WITH v(x) AS (VALUES {list}) SELECT {} FROM v",
                latency_bucket_sql("x")
            ))
            .fetch_all(&mut conn)
            .await
            .unwrap()
        });
        let expected: Vec<i64> = values.iter().map(|v| latency_bucket(*v)).collect();
        assert_eq!(buckets, expected);
        // Migration 16 buckets the runs recorded before it with the same expression.
        let migration = include_str!("../migrations/0016_rollups.sql");
        let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat(migration).contains(&flat(&latency_bucket_sql("r.latency_ms"))));
        // Migration 19 buckets the review times recorded before it alike.
        let migration = include_str!("../migrations/0019_review_rollups.sql");
        assert!(flat(migration).contains(&flat(&latency_bucket_sql("t.ms"))));
    }

    #[test]
    fn a_window_is_cut_into_whole_hours_and_its_edges() {
        let h = HOUR_MS;
        let s = Split::new(10 * h + 5, 20 * h + 7, h);
        assert_eq!((s.first, s.end), (11, 20));
        assert_eq!(s.head, (10 * h + 5, 11 * h));
        assert_eq!(s.tail, (20 * h, 20 * h + 7));
        let aligned = Split::new(10 * h, 20 * h, h);
        assert_eq!((aligned.first, aligned.end), (10, 20));
        assert_eq!(aligned.head, (10 * h, 10 * h));
        assert_eq!(aligned.tail, (20 * h, 20 * h));
        let short = Split::new(10 * h + 5, 11 * h - 1, h);
        assert!(!short.has_units());
        assert_eq!(short.head, (10 * h + 5, 11 * h - 1));
        let open = Split::new(0, i64::MAX, h);
        assert_eq!(open.first, 0);
        assert!(open.tail.0 > i64::MAX - h);
    }

    #[test]
    fn only_short_strings_are_labels() {
        assert!(LABEL_SQL.contains(&format!("LENGTH(r.output) <= {MAX_LABEL_TEXT}")));
        assert!(is_label("\"billing\""));
        assert!(!is_label("{\"a\": 1}"));
        assert!(!is_label(&format!("\"{}\"", "x".repeat(MAX_LABEL_TEXT))));
        assert!(is_label(&format!("\"{}\"", "x".repeat(MAX_LABEL_TEXT - 2))));
    }

    #[test]
    fn the_percentile_of_a_histogram_is_its_bucket_top() {
        let histogram: BTreeMap<i64, u64> = [(10, 50), (latency_bucket(300), 50)].into();
        assert_eq!(histogram_percentile(&histogram, 50.0), Some(10));
        assert_eq!(histogram_percentile(&histogram, 95.0), Some(303));
        assert_eq!(histogram_percentile(&BTreeMap::new(), 95.0), None);
    }
}
