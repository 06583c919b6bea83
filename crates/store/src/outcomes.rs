//! What the outcome figures are made of, counted in SQL per version and week over indexed
//! columns (`runs (workflow, created_at_ms)`, `reviews (workflow, created_at_ms)`): runs by
//! status with their cost, reviewed acceptances, reviewer time, distinct callers, and the
//! business KPI as people record it. Eval runs (a run whose batch is an eval) are not use of the
//! workflow and are left out. Weeks are numbered from Monday 1970-01-05 00:00 UTC: `week_start_ms` gives a
//! week's first millisecond back.

use async_trait::async_trait;
use serde::Serialize;

use crate::{Result, RunStatus};

/// Milliseconds from the Unix epoch (a Thursday) to the first Monday.
const FIRST_MONDAY_MS: i64 = 4 * 86_400_000;
const WEEK_MS: i64 = 7 * 86_400_000;

/// The SQL expression of the week a `column` of Unix milliseconds falls in.
pub(crate) fn week_of(column: &str) -> String {
    format!("(({column} - {FIRST_MONDAY_MS}) / {WEEK_MS})")
}

/// The first millisecond of week number `week`.
pub fn week_start_ms(week: i64) -> i64 {
    FIRST_MONDAY_MS + week * WEEK_MS
}

/// The week number of `ms`.
pub fn week_of_ms(ms: i64) -> i64 {
    (ms - FIRST_MONDAY_MS).div_euclid(WEEK_MS)
}

/// From `from_ms` (included) to `to_ms` (excluded), in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Window {
    /// Everything from `from_ms` on.
    pub fn since(from_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms: i64::MAX,
        }
    }
}

/// Runs of one version, week and status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunWeek {
    pub version: String,
    pub week: i64,
    pub status: RunStatus,
    pub runs: u64,
    pub cost_usd: f64,
}

/// Runs of one version and UTC day (days since 1970-01-01), for the per-day series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunDay {
    pub version: String,
    pub day: i64,
    pub runs: u64,
    /// Outputs that reached the caller: released, or held and then approved or corrected.
    pub accepted: u64,
    pub invalid: u64,
    pub cost_usd: f64,
    /// The sum of the runs' latencies (the mean is this over `runs`).
    pub latency_ms: i64,
}

/// Review work on runs of one version and week.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReviewWeek {
    pub version: String,
    pub week: i64,
    /// Held or sampled outputs a reviewer approved or corrected.
    pub accepted: u64,
    /// Decisions whose reviewer had claimed the item, and the time from claim to decision.
    pub timed_decisions: u64,
    pub reviewer_ms: i64,
}

/// Distinct callers in one week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallerWeek {
    pub week: i64,
    pub users: u64,
    pub teams: u64,
    pub keys: u64,
    /// Runs made without a caller (the CLI).
    pub anonymous_runs: u64,
}

/// Runs of one workflow by one caller team in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamRuns {
    /// `None`: runs made without a team (the CLI, or a key with no team).
    pub team: Option<String>,
    pub runs: u64,
    /// Outputs that reached the caller (status `ok`, held ones once approved or corrected).
    pub accepted: u64,
}

/// One recorded value of a workflow's business KPI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiValue {
    pub id: String,
    pub workflow: String,
    pub value: f64,
    /// When the value was measured.
    pub at_ms: i64,
    pub note: Option<String>,
    pub recorded_by: String,
    pub recorded_at_ms: i64,
}

/// The outcome figures' part of the store.
#[async_trait]
pub trait OutcomeStore {
    /// Runs of `workflow` made in `window` per version, week and status (eval runs left out).
    async fn run_weeks(&self, workflow: &str, window: Window) -> Result<Vec<RunWeek>>;

    /// Runs of `workflow` made in `window` per version and UTC day (eval runs left out).
    async fn run_days(&self, workflow: &str, window: Window) -> Result<Vec<RunDay>>;

    /// Reviewed acceptances and reviewer time per version and week of runs made in `window`.
    async fn review_weeks(&self, workflow: &str, window: Window) -> Result<Vec<ReviewWeek>>;

    /// Distinct callers per week of runs made in `window`.
    async fn caller_weeks(&self, workflow: &str, window: Window) -> Result<Vec<CallerWeek>>;

    /// Runs and accepted outputs of `workflow` made in `window`, per caller team (eval runs
    /// left out), teams in name order with the runs without a team first.
    async fn team_runs(&self, workflow: &str, window: Window) -> Result<Vec<TeamRuns>>;

    /// Record a KPI value.
    async fn insert_kpi(&self, value: &KpiValue) -> Result<()>;

    /// The KPI values of `workflow`, oldest measurement first.
    async fn kpi_values(&self, workflow: &str) -> Result<Vec<KpiValue>>;

    /// Audit entries written in `window`, oldest first, at most `limit`.
    async fn audit_in(&self, window: Window, limit: u32) -> Result<Vec<crate::AuditEntry>>;

    /// Review decisions taken in `window` per reviewer, most first.
    async fn reviewer_counts(&self, window: Window) -> Result<Vec<(String, u64)>>;
}

/// `impl OutcomeStore for $store` over `$db`.
macro_rules! outcome_store_impl {
    ($store:ty, $db:ty) => {
        /// The rows of `sql` (over [`run_hour_parts`](crate::rollups::run_hour_parts)) for
        /// `workflow` in `window`, its whole hours bound as the rollup's.
        async fn rows_by_hour(
            pool: &sqlx::Pool<$db>,
            sql: &str,
            workflow: &str,
            window: $crate::outcomes::Window,
        ) -> $crate::Result<Vec<<$db as sqlx::Database>::Row>> {
            use $crate::rollups::{split_query, Split, HOUR_MS};
            let split = Split::new(window.from_ms, window.to_ms, HOUR_MS);
            Ok(split_query!($db, sql, workflow, split).fetch_all(pool).await?)
        }

        #[::async_trait::async_trait]
        impl $crate::outcomes::OutcomeStore for $store {
            async fn run_weeks(
                &self,
                workflow: &str,
                window: $crate::outcomes::Window,
            ) -> $crate::Result<Vec<$crate::outcomes::RunWeek>> {
                use $crate::codec::{enumeration, non_negative, Columns};
                use $crate::rollups::{run_hour_parts, Fallbacks};
                let sql = format!(
                    "SELECT u.version AS version, {week} AS week, u.status AS status, \
                     CAST(SUM(u.runs) AS BIGINT) AS runs, SUM(u.cost) AS cost FROM ({parts}) u \
                     GROUP BY u.version, {week}, u.status HAVING SUM(u.runs) > 0 \
                     ORDER BY week, version, status",
                    week = $crate::outcomes::week_of("u.hour * 3600000"),
                    parts = run_hour_parts("", Fallbacks::Unread),
                );
                rows_by_hour(self.reader(), &sql, workflow, window)
                    .await?
                    .iter()
                    .map(|row| {
                        Ok($crate::outcomes::RunWeek {
                            version: row.text("version")?,
                            week: row.int("week")?,
                            status: enumeration(row, "runs", "status", $crate::RunStatus::parse)?,
                            runs: non_negative("runs", "runs", row.int("runs")?)?,
                            cost_usd: row.float("cost")?,
                        })
                    })
                    .collect()
            }

            async fn run_days(
                &self,
                workflow: &str,
                window: $crate::outcomes::Window,
            ) -> $crate::Result<Vec<$crate::outcomes::RunDay>> {
                use $crate::codec::{non_negative, Columns};
                use $crate::rollups::{run_hour_parts, Fallbacks};
                let sql = format!(
                    "SELECT u.version AS version, u.hour / 24 AS day, \
                     CAST(SUM(u.runs) AS BIGINT) AS runs, \
                     CAST(SUM(CASE WHEN u.status = 'ok' THEN u.runs ELSE 0 END) AS BIGINT) AS accepted, \
                     CAST(SUM(CASE WHEN u.status = 'invalid' THEN u.runs ELSE 0 END) AS BIGINT) AS invalid, \
                     SUM(u.cost) AS cost, CAST(SUM(u.latency) AS BIGINT) AS latency FROM ({parts}) u \
                     GROUP BY u.version, u.hour / 24 HAVING SUM(u.runs) > 0 ORDER BY day, version",
                    parts = run_hour_parts("", Fallbacks::Unread),
                );
                rows_by_hour(self.reader(), &sql, workflow, window)
                    .await?
                    .iter()
                    .map(|row| {
                        let count = |c: &'static str| non_negative("runs", c, row.int(c)?);
                        Ok($crate::outcomes::RunDay {
                            version: row.text("version")?,
                            day: row.int("day")?,
                            runs: count("runs")?,
                            accepted: count("accepted")?,
                            invalid: count("invalid")?,
                            cost_usd: row.float("cost")?,
                            latency_ms: row.int("latency")?.max(0),
                        })
                    })
                    .collect()
            }

            async fn review_weeks(
                &self,
                workflow: &str,
                window: $crate::outcomes::Window,
            ) -> $crate::Result<Vec<$crate::outcomes::ReviewWeek>> {
                use $crate::codec::{non_negative, Columns};
                use $crate::rollups::HOUR_MS;
                // Whole hours from `review_hours`; the edges' items from `reviews`, each with
                // its decisions whose reviewer had claimed the item, and their time (claim →
                // decision), looked up by the item's key (a join let PostgreSQL read every
                // decision).
                let edge = |from: u8, to: u8| {
                    format!(
                        "SELECT r.version, r.created_at_ms / {HOUR_MS}, \
                         CASE WHEN r.status IN ('approved', 'edited') THEN 1 ELSE 0 END, \
                         (SELECT COUNT(*) FROM review_decisions d WHERE d.run_id = r.run_id \
                          AND d.claimed_at_ms IS NOT NULL), \
                         (SELECT CAST(COALESCE(SUM(d.decided_at_ms - d.claimed_at_ms), 0) \
                          AS BIGINT) FROM review_decisions d WHERE d.run_id = r.run_id \
                          AND d.claimed_at_ms IS NOT NULL) \
                         FROM reviews r WHERE r.workflow = $1 AND r.created_at_ms >= ${from} \
                         AND r.created_at_ms < ${to}"
                    )
                };
                let sql = format!(
                    "SELECT u.version AS version, {week} AS week, \
                     CAST(SUM(u.accepted) AS BIGINT) AS accepted, \
                     CAST(SUM(u.timed) AS BIGINT) AS timed, CAST(SUM(u.ms) AS BIGINT) AS ms \
                     FROM (SELECT r.version AS version, r.hour AS hour, r.accepted AS accepted, \
                           r.timed AS timed, r.reviewer_ms AS ms FROM review_hours r \
                           WHERE r.workflow = $1 AND r.hour >= $2 AND r.hour < $3 \
                           UNION ALL {head} UNION ALL {tail}) u \
                     GROUP BY u.version, {week} ORDER BY week, version",
                    week = $crate::outcomes::week_of(&format!("u.hour * {HOUR_MS}")),
                    head = edge(4, 5),
                    tail = edge(6, 7),
                );
                rows_by_hour(self.reader(), &sql, workflow, window)
                    .await?
                    .iter()
                    .map(|row| {
                        Ok($crate::outcomes::ReviewWeek {
                            version: row.text("version")?,
                            week: row.int("week")?,
                            accepted: non_negative("reviews", "accepted", row.int("accepted")?)?,
                            timed_decisions: non_negative("review_decisions", "timed", row.int("timed")?)?,
                            reviewer_ms: row.int("ms")?.max(0),
                        })
                    })
                    .collect()
            }

            async fn caller_weeks(
                &self,
                workflow: &str,
                window: $crate::outcomes::Window,
            ) -> $crate::Result<Vec<$crate::outcomes::CallerWeek>> {
                use $crate::codec::{non_negative, Columns};
                use $crate::rollups::{run_hour_parts, split_query, union, Fallbacks, Split, DAY_MS};
                // The weeks with runs, and their anonymous runs, by hour.
                let sql = format!(
                    "SELECT {week} AS week, CAST(SUM(u.anonymous) AS BIGINT) AS anonymous \
                     FROM ({parts}) u GROUP BY {week} HAVING SUM(u.runs) > 0 ORDER BY week",
                    week = $crate::outcomes::week_of("u.hour * 3600000"),
                    parts = run_hour_parts("", Fallbacks::Unread),
                );
                let mut weeks = rows_by_hour(self.reader(), &sql, workflow, window)
                    .await?
                    .iter()
                    .map(|row| {
                        Ok($crate::outcomes::CallerWeek {
                            week: row.int("week")?,
                            users: 0,
                            teams: 0,
                            keys: 0,
                            anonymous_runs: non_negative("runs", "anonymous", row.int("anonymous")?)?,
                        })
                    })
                    .collect::<$crate::Result<Vec<_>>>()?;
                // The distinct callers, by day.
                let sql = format!(
                    "SELECT {week} AS week, COUNT(DISTINCT u.caller_user) AS users, \
                     COUNT(DISTINCT u.team) AS teams, COUNT(DISTINCT u.key_id) AS keys \
                     FROM ({parts}) u GROUP BY {week}",
                    week = $crate::outcomes::week_of("u.day * 86400000"),
                    parts = union(
                        "SELECT r.day AS day, NULLIF(r.caller_user, '') AS caller_user, \
                         NULLIF(r.team, '') AS team, r.key_id AS key_id FROM run_day_callers r",
                        "day",
                        "SELECT r.created_at_ms / 86400000, r.caller_user, r.team, r.key_id \
                         FROM runs r",
                        " AND r.key_id IS NOT NULL",
                        "",
                    ),
                );
                let split = Split::new(window.from_ms, window.to_ms, DAY_MS);
                for row in split_query!($db, &sql, workflow, split)
                    .fetch_all(self.reader())
                    .await?
                {
                    let week = row.int("week")?;
                    if let Some(w) = weeks.iter_mut().find(|w| w.week == week) {
                        let count = |c: &'static str| non_negative("runs", c, row.int(c)?);
                        w.users = count("users")?;
                        w.teams = count("teams")?;
                        w.keys = count("keys")?;
                    }
                }
                Ok(weeks)
            }

            async fn team_runs(
                &self,
                workflow: &str,
                window: $crate::outcomes::Window,
            ) -> $crate::Result<Vec<$crate::outcomes::TeamRuns>> {
                use $crate::codec::{non_negative, Columns};
                use $crate::rollups::{run_hour_parts, Fallbacks};
                let sql = format!(
                    "SELECT u.team AS team, CAST(SUM(u.runs) AS BIGINT) AS runs, \
                     CAST(SUM(CASE WHEN u.status = 'ok' THEN u.runs ELSE 0 END) AS BIGINT) AS accepted \
                     FROM ({}) u GROUP BY u.team HAVING SUM(u.runs) > 0 ORDER BY team",
                    run_hour_parts("", Fallbacks::Unread)
                );
                rows_by_hour(self.reader(), &sql, workflow, window)
                    .await?
                    .iter()
                    .map(|row| {
                        let team = row.text("team")?;
                        Ok($crate::outcomes::TeamRuns {
                            team: (!team.is_empty()).then_some(team),
                            runs: non_negative("runs", "runs", row.int("runs")?)?,
                            accepted: non_negative("runs", "accepted", row.int("accepted")?)?,
                        })
                    })
                    .collect()
            }

            async fn insert_kpi(&self, value: &$crate::outcomes::KpiValue) -> $crate::Result<()> {
                sqlx::query::<$db>(
                    "INSERT INTO kpi_values (id, workflow, value, at_ms, note, recorded_by, \
                     recorded_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&value.id)
                .bind(&value.workflow)
                .bind(value.value)
                .bind(value.at_ms)
                .bind(&value.note)
                .bind(&value.recorded_by)
                .bind(value.recorded_at_ms)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn audit_in(
                &self,
                window: $crate::outcomes::Window,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::AuditEntry>> {
                let sql = format!(
                    "SELECT {} FROM audit_log WHERE at_ms >= $1 AND at_ms < $2 ORDER BY seq LIMIT $3",
                    $crate::audit::AUDIT_COLUMNS
                );
                sqlx::query::<$db>(&sql)
                    .bind(window.from_ms)
                    .bind(window.to_ms)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map($crate::audit::audit_from_row)
                    .collect()
            }

            async fn reviewer_counts(
                &self,
                window: $crate::outcomes::Window,
            ) -> $crate::Result<Vec<(String, u64)>> {
                use $crate::codec::{non_negative, Columns};
                sqlx::query::<$db>(
                    "SELECT reviewer, COUNT(*) AS n FROM review_decisions \
                     WHERE decided_at_ms >= $1 AND decided_at_ms < $2 \
                     GROUP BY reviewer ORDER BY n DESC, reviewer",
                )
                .bind(window.from_ms)
                .bind(window.to_ms)
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        row.text("reviewer")?,
                        non_negative("review_decisions", "n", row.int("n")?)?,
                    ))
                })
                .collect()
            }

            async fn kpi_values(
                &self,
                workflow: &str,
            ) -> $crate::Result<Vec<$crate::outcomes::KpiValue>> {
                use $crate::codec::Columns;
                sqlx::query::<$db>(
                    "SELECT id, workflow, value, at_ms, note, recorded_by, recorded_at_ms \
                     FROM kpi_values WHERE workflow = $1 ORDER BY at_ms, id",
                )
                .bind(workflow)
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(|row| {
                    Ok($crate::outcomes::KpiValue {
                        id: row.text("id")?,
                        workflow: row.text("workflow")?,
                        value: row.float("value")?,
                        at_ms: row.int("at_ms")?,
                        note: row.opt_text("note")?,
                        recorded_by: row.text("recorded_by")?,
                        recorded_at_ms: row.int("recorded_at_ms")?,
                    })
                })
                .collect()
            }
        }
    };
}

pub(crate) use outcome_store_impl;
