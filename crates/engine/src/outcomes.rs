//! A workflow's outcomes, per week and per version: what reached its callers and was kept
//! (accepted), the minutes that saved net of reviewers' time, the cost of each accepted
//! output, the business KPI against its baseline and target, and how many people use it. The
//! counts come from SQL (`OutcomeStore`); this module only combines them.

use std::collections::BTreeMap;

use serde::Serialize;
use shopfloor_core::calendar::iso_week;
use shopfloor_store::{
    week_of_ms, week_start_ms, CallerWeek, KpiValue, ReviewWeek, RunDay, RunStatus, RunWeek, Window,
};

use crate::{now_ms, Engine, EngineError};

/// The figures of a set of runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutcomeFigures {
    pub runs: u64,
    /// Outputs that reached the caller and were not rejected: released outputs, and held ones
    /// approved or corrected.
    pub accepted: u64,
    /// Of those, the ones a reviewer approved or corrected.
    pub accepted_reviewed: u64,
    pub accepted_unreviewed: u64,
    /// Rejected by a reviewer (or the SLA).
    pub rejected: u64,
    /// Still waiting for a reviewer.
    pub held: u64,
    /// Failed, invalid or refused: nothing usable reached the caller.
    pub not_answered: u64,
    /// Model cost of every run, failed ones included.
    pub model_cost_usd: f64,
    /// Reviewers' time, from claim to decision.
    pub reviewer_minutes: f64,
    /// accepted × minutes saved per accepted output − reviewer minutes.
    pub minutes_saved: f64,
    /// (model cost + reviewer hours × reviewer cost per hour) ÷ accepted.
    pub cost_per_accepted_usd: Option<f64>,
    /// accepted ÷ runs.
    pub acceptance_rate: Option<f64>,
}

/// One version's figures in one week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionWeek {
    pub version: String,
    #[serde(flatten)]
    pub figures: OutcomeFigures,
}

/// One week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeWeek {
    /// ISO week, e.g. `2026-W49`.
    pub week: String,
    pub starts_at_ms: i64,
    #[serde(flatten)]
    pub figures: OutcomeFigures,
    pub versions: Vec<VersionWeek>,
    /// Distinct callers (people, teams, API keys) that week.
    pub users: u64,
    pub teams: u64,
    pub keys: u64,
    /// Runs without a caller (from the CLI).
    pub cli_runs: u64,
    /// The mean of the KPI values measured that week.
    pub kpi: Option<f64>,
}

/// The business KPI against its baseline and target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiStatus {
    pub name: String,
    pub baseline: Option<f64>,
    pub target: Option<f64>,
    pub latest: Option<KpiValue>,
    /// How far the latest value has come from the baseline towards the target (0 = at the
    /// baseline, 1 = at the target, above 1 = past it).
    pub progress: Option<f64>,
    pub target_reached: bool,
    pub values: Vec<KpiValue>,
}

/// A workflow's outcomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeReport {
    pub workflow: String,
    pub since_ms: i64,
    pub minutes_saved_per_accepted: f64,
    pub reviewer_cost_per_hour: f64,
    pub total: OutcomeFigures,
    /// Oldest week first.
    pub weeks: Vec<OutcomeWeek>,
    pub kpi: Option<KpiStatus>,
}

/// The largest magnitude a KPI value may have: past it, a value is a typo or an attack, and
/// its progress towards the target stops being a number anyone can read (`1e308` made
/// "-inf%"). Integers are exact in `f64` up to about 9e15.
const MAX_KPI_VALUE: f64 = 1e15;

/// A KPI value to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKpiValue {
    pub value: f64,
    pub at_ms: Option<i64>,
    pub note: Option<String>,
    pub recorded_by: String,
}

/// What outcomes need of a workflow's `[outcome]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    pub(crate) minutes_per_accepted: f64,
    pub(crate) reviewer_cost_per_hour: f64,
}

impl Engine {
    /// The outcomes of `workflow` since `since_ms` (everything when `None`).
    pub async fn outcomes(
        &self,
        workflow: &str,
        since_ms: Option<i64>,
    ) -> Result<OutcomeReport, EngineError> {
        let loaded = self.project.workflow(workflow)?;
        self.flush().await;
        let since = since_ms.unwrap_or(0);
        let window = Window::since(since);
        let runs = self.store.run_weeks(workflow, window).await?;
        let reviews = self.store.review_weeks(workflow, window).await?;
        let callers = self.store.caller_weeks(workflow, window).await?;
        let values = self.store.kpi_values(workflow).await?;
        let outcome = loaded.spec.outcome.as_ref();
        let rates = Rates {
            minutes_per_accepted: outcome.map_or(0.0, |o| o.minutes_saved_per_accepted),
            reviewer_cost_per_hour: outcome.map_or(0.0, |o| o.reviewer_cost_per_hour),
        };
        let kpi = outcome.map(|o| kpi_status(&o.kpi, o.baseline, o.target, values.clone()));
        let (total, weeks) = combine(&runs, &reviews, &callers, &values, since, rates);
        Ok(OutcomeReport {
            workflow: workflow.to_string(),
            since_ms: since,
            minutes_saved_per_accepted: rates.minutes_per_accepted,
            reviewer_cost_per_hour: rates.reviewer_cost_per_hour,
            total,
            weeks,
            kpi,
        })
    }

    /// Record a value of `workflow`'s KPI (measured at `at_ms`, default now). Refused for a
    /// workflow without `[outcome]`, or a value that is not a finite number.
    pub async fn record_kpi(
        &self,
        workflow: &str,
        value: NewKpiValue,
    ) -> Result<KpiValue, EngineError> {
        let loaded = self.project.workflow(workflow)?;
        if loaded.spec.outcome.is_none() {
            return Err(EngineError::InvalidInput(format!(
                "workflow \"{workflow}\" has no [outcome] table: say which KPI it moves (kpi, baseline, target) before recording values"
            )));
        }
        if !value.value.is_finite() || value.value.abs() > MAX_KPI_VALUE {
            let shown = if value.value.abs() < 1e6 {
                value.value.to_string()
            } else {
                format!("{:e}", value.value)
            };
            return Err(EngineError::InvalidField {
                field: "value",
                message: format!(
                    "{shown} is not a KPI value; expected a finite number between -1e15 and 1e15"
                ),
            });
        }
        let now = now_ms();
        if value.at_ms.is_some_and(|at| at > now + DAY_MS) {
            return Err(EngineError::InvalidField {
                field: "at",
                message: format!(
                    "{} is in the future; a KPI value is recorded once it was measured",
                    shopfloor_core::calendar::utc_date(value.at_ms.unwrap_or(now))
                ),
            });
        }
        let record = KpiValue {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: workflow.to_string(),
            value: value.value,
            at_ms: value.at_ms.unwrap_or(now),
            note: match (&self.store_redactor, value.note) {
                (Some(redactor), Some(note)) => Some(redactor.text(&note)),
                (_, note) => note,
            },
            recorded_by: value.recorded_by,
            recorded_at_ms: now,
        };
        self.store.insert_kpi(&record).await?;
        Ok(record)
    }
}

/// One day's figures of a set of runs, for the per-day series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayFigures {
    pub runs: u64,
    /// Released outputs, and held ones approved or corrected.
    pub accepted: u64,
    pub invalid: u64,
    pub cost_usd: f64,
    /// `None` where the day has no runs (a gap, not a zero), as for the rates.
    pub mean_latency_ms: Option<f64>,
    pub acceptance_rate: Option<f64>,
    pub invalid_rate: Option<f64>,
}

impl DayFigures {
    fn add(&mut self, row: &RunDay) {
        let latency =
            self.mean_latency_ms.unwrap_or(0.0) * self.runs as f64 + row.latency_ms as f64;
        self.runs += row.runs;
        self.accepted += row.accepted;
        self.invalid += row.invalid;
        self.cost_usd += row.cost_usd;
        let runs = self.runs as f64;
        self.mean_latency_ms = (self.runs > 0).then(|| latency / runs);
        self.acceptance_rate = (self.runs > 0).then(|| self.accepted as f64 / runs);
        self.invalid_rate = (self.runs > 0).then(|| self.invalid as f64 / runs);
    }
}

/// One UTC day of a workflow: all its runs, and each version's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub starts_at_ms: i64,
    #[serde(flatten)]
    pub figures: DayFigures,
    pub versions: Vec<VersionDay>,
}

/// One version's figures on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionDay {
    pub version: String,
    #[serde(flatten)]
    pub figures: DayFigures,
}

const DAY_MS: i64 = 86_400_000;

impl Engine {
    /// `workflow`'s last `days` UTC days, today included and oldest first; a day without runs
    /// is there with no figures, so a chart shows the gap.
    pub async fn outcome_days(
        &self,
        workflow: &str,
        days: u32,
    ) -> Result<Vec<OutcomeDay>, EngineError> {
        self.project.workflow(workflow)?;
        self.flush().await;
        let today = now_ms().div_euclid(DAY_MS);
        let first = today - i64::from(days.max(1)) + 1;
        let window = Window {
            from_ms: first * DAY_MS,
            to_ms: (today + 1) * DAY_MS,
        };
        let rows = self.store.run_days(workflow, window).await?;
        Ok((first..=today)
            .map(|day| {
                let mut figures = DayFigures::default();
                let versions = rows
                    .iter()
                    .filter(|r| r.day == day)
                    .map(|row| {
                        figures.add(row);
                        let mut own = DayFigures::default();
                        own.add(row);
                        VersionDay {
                            version: row.version.clone(),
                            figures: own,
                        }
                    })
                    .collect();
                OutcomeDay {
                    day: shopfloor_core::calendar::utc_date(day * DAY_MS),
                    starts_at_ms: day * DAY_MS,
                    figures,
                    versions,
                }
            })
            .collect())
    }
}

/// Where the KPI stands: the latest measurement against the baseline and target.
pub(crate) fn kpi_status(
    name: &str,
    baseline: Option<f64>,
    target: Option<f64>,
    values: Vec<KpiValue>,
) -> KpiStatus {
    let latest = values.last().cloned();
    let progress = match (baseline, target, &latest) {
        (Some(b), Some(t), Some(v)) if (t - b).abs() > f64::EPSILON => {
            Some((v.value - b) / (t - b))
        }
        _ => None,
    };
    KpiStatus {
        name: name.to_string(),
        baseline,
        target,
        latest,
        target_reached: progress.is_some_and(|p| p >= 1.0),
        progress,
        values,
    }
}

/// The weeks and the total of the store's counts.
pub(crate) fn combine(
    runs: &[RunWeek],
    reviews: &[ReviewWeek],
    callers: &[CallerWeek],
    values: &[KpiValue],
    since_ms: i64,
    rates: Rates,
) -> (OutcomeFigures, Vec<OutcomeWeek>) {
    // week → version → (counts, reviews)
    let mut cells: BTreeMap<i64, BTreeMap<&str, Counts>> = BTreeMap::new();
    for row in runs {
        let cell = cells
            .entry(row.week)
            .or_default()
            .entry(&row.version)
            .or_default();
        cell.runs += row.runs;
        cell.cost += row.cost_usd;
        match row.status {
            RunStatus::Ok => cell.accepted += row.runs,
            RunStatus::Rejected => cell.rejected += row.runs,
            RunStatus::Held => cell.held += row.runs,
            _ => cell.not_answered += row.runs,
        }
    }
    for row in reviews {
        let cell = cells
            .entry(row.week)
            .or_default()
            .entry(&row.version)
            .or_default();
        cell.reviewed += row.accepted;
        cell.reviewer_ms += row.reviewer_ms;
    }
    let mut kpi_by_week: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for v in values.iter().filter(|v| v.at_ms >= since_ms) {
        let e = kpi_by_week.entry(week_of_ms(v.at_ms)).or_default();
        e.0 += v.value;
        e.1 += 1;
    }
    let callers: BTreeMap<i64, &CallerWeek> = callers.iter().map(|c| (c.week, c)).collect();
    let mut total = Counts::default();
    let weeks = cells
        .iter()
        .map(|(&week, versions)| {
            let mut sum = Counts::default();
            let versions = versions
                .iter()
                .map(|(version, counts)| {
                    sum.add(counts);
                    VersionWeek {
                        version: version.to_string(),
                        figures: counts.figures(rates),
                    }
                })
                .collect();
            total.add(&sum);
            let starts_at_ms = week_start_ms(week);
            let who = callers.get(&week);
            OutcomeWeek {
                week: iso_week(starts_at_ms),
                starts_at_ms,
                figures: sum.figures(rates),
                versions,
                users: who.map_or(0, |c| c.users),
                teams: who.map_or(0, |c| c.teams),
                keys: who.map_or(0, |c| c.keys),
                cli_runs: who.map_or(0, |c| c.anonymous_runs),
                kpi: kpi_by_week.get(&week).map(|(s, n)| s / f64::from(*n)),
            }
        })
        .collect();
    (total.figures(rates), weeks)
}

/// Raw counts of one cell, summed up into weeks and the total.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    runs: u64,
    accepted: u64,
    reviewed: u64,
    rejected: u64,
    held: u64,
    not_answered: u64,
    cost: f64,
    reviewer_ms: i64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.runs += other.runs;
        self.accepted += other.accepted;
        self.reviewed += other.reviewed;
        self.rejected += other.rejected;
        self.held += other.held;
        self.not_answered += other.not_answered;
        self.cost += other.cost;
        self.reviewer_ms += other.reviewer_ms;
    }

    fn figures(&self, rates: Rates) -> OutcomeFigures {
        let reviewer_minutes = self.reviewer_ms as f64 / 60_000.0;
        let accepted = self.accepted as f64;
        let reviewed = self.reviewed.min(self.accepted);
        OutcomeFigures {
            runs: self.runs,
            accepted: self.accepted,
            accepted_reviewed: reviewed,
            accepted_unreviewed: self.accepted - reviewed,
            rejected: self.rejected,
            held: self.held,
            not_answered: self.not_answered,
            model_cost_usd: self.cost,
            reviewer_minutes,
            minutes_saved: accepted * rates.minutes_per_accepted - reviewer_minutes,
            cost_per_accepted_usd: (self.accepted > 0).then(|| {
                (self.cost + reviewer_minutes / 60.0 * rates.reviewer_cost_per_hour) / accepted
            }),
            acceptance_rate: (self.runs > 0).then(|| accepted / self.runs as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_week(version: &str, week: i64, status: RunStatus, runs: u64, cost: f64) -> RunWeek {
        RunWeek {
            version: version.into(),
            week,
            status,
            runs,
            cost_usd: cost,
        }
    }

    #[test]
    fn twenty_accepted_at_three_minutes_less_one_two_minute_review_is_58_minutes() {
        let runs = [
            run_week("v1", 2900, RunStatus::Ok, 20, 0.40),
            run_week("v1", 2900, RunStatus::Failed, 2, 0.02),
            run_week("v1", 2900, RunStatus::Rejected, 1, 0.02),
        ];
        let reviews = [ReviewWeek {
            version: "v1".into(),
            week: 2900,
            accepted: 1,
            timed_decisions: 1,
            reviewer_ms: 120_000,
        }];
        let rates = Rates {
            minutes_per_accepted: 3.0,
            reviewer_cost_per_hour: 60.0,
        };
        let (total, weeks) = combine(&runs, &reviews, &[], &[], 0, rates);
        assert_eq!(total.minutes_saved, 58.0);
        assert_eq!(
            (
                total.accepted,
                total.accepted_reviewed,
                total.accepted_unreviewed
            ),
            (20, 1, 19)
        );
        assert_eq!((total.runs, total.rejected, total.not_answered), (23, 1, 2));
        // ($0.44 of model calls + 2 minutes at $60/h = $2) ÷ 20 accepted.
        let cost = total.cost_per_accepted_usd.unwrap();
        assert!((cost - 2.44 / 20.0).abs() < 1e-12, "{cost}");
        assert_eq!(weeks.len(), 1);
        assert_eq!(weeks[0].week, iso_week(week_start_ms(2900)));
    }

    #[test]
    fn the_kpi_progress_runs_from_baseline_to_target() {
        let value = |v: f64| KpiValue {
            id: "k".into(),
            workflow: "w".into(),
            value: v,
            at_ms: 0,
            note: None,
            recorded_by: "dana".into(),
            recorded_at_ms: 0,
        };
        // Minutes to first response: 42 → 15; 28.5 is half way.
        let status = kpi_status(
            "minutes",
            Some(42.0),
            Some(15.0),
            vec![value(30.0), value(28.5)],
        );
        assert_eq!(status.progress, Some(0.5));
        assert!(!status.target_reached);
        let reached = kpi_status("minutes", Some(42.0), Some(15.0), vec![value(14.0)]);
        assert!(reached.target_reached);
        assert_eq!(
            kpi_status("m", None, Some(1.0), vec![value(1.0)]).progress,
            None
        );
    }
}
