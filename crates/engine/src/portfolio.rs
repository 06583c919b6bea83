//! The portfolio: every workflow on one page with what an operating review asks of it — who
//! owns it, how long it has been in its stage, its last eval, its use and acceptance this week
//! against last, the minutes it saved, what an accepted output costs, its KPI — and health
//! flags that turn into a suggestion: keep, fix or cut, with the reasons.

use serde::Serialize;
use shopfloor_core::dataset::{parse_dataset, DatasetFormat};
use shopfloor_core::spec::Stage;
use shopfloor_store::{AuditAction, EvalRecord, Window};

use crate::outcomes::{combine, kpi_status, KpiStatus, OutcomeFigures, Rates};
use crate::{now_ms, Engine, EngineError, LoadedWorkflow};

const DAY_MS: i64 = 86_400_000;
/// An eval set smaller than this says little about a change.
pub const MIN_EVAL_CASES: usize = 30;
/// Longer than this in pilot is the proof-of-concept trap.
pub const LONG_PILOT_DAYS: i64 = 90;
/// No runs for this long (this week and last): nobody uses it.
pub const IDLE_DAYS: i64 = 14;
/// Cost per accepted output up by more than this share week over week.
const COST_RISE: f64 = 0.2;
/// Days in production after which the minutes saved are held against the intake's prediction.
pub const PREDICTION_DAYS: i64 = 30;

shopfloor_core::text_enum! {
    /// Something an operating review should look at.
    pub enum HealthFlag {
        NoOwner => "no_owner",
        NoEvalSet => "no_eval_set",
        SmallEvalSet => "small_eval_set",
        GateFailed => "gate_failed",
        LongPilot => "long_pilot",
        Idle => "idle",
        AcceptanceFalling => "acceptance_falling",
        CostRising => "cost_rising",
        DriftAlert => "drift_alert",
        ReviewsOverdue => "reviews_overdue",
        PredictionMissed => "prediction_missed",
    }
}

shopfloor_core::text_enum! {
    /// What the portfolio suggests doing with a workflow.
    pub enum Suggestion {
        Keep => "keep",
        Fix => "fix",
        Cut => "cut",
    }
}

/// A flag and what it means for this workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flagged {
    pub flag: HealthFlag,
    pub reason: String,
}

/// The last eval of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastEval {
    pub id: String,
    pub version: String,
    pub at_ms: i64,
    pub passed: Option<bool>,
}

/// One workflow's line of the portfolio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioEntry {
    pub workflow: String,
    pub owner: Option<String>,
    pub stage: Stage,
    /// Days since its last promotion, when the audit log has one.
    pub days_in_stage: Option<i64>,
    pub eval_cases: Option<usize>,
    pub last_eval: Option<LastEval>,
    /// The last 7 days, and the 7 before.
    pub this_week: OutcomeFigures,
    pub last_week: OutcomeFigures,
    pub kpi: Option<KpiStatus>,
    pub reviews_overdue: u64,
    pub flags: Vec<Flagged>,
    pub suggestion: Suggestion,
    pub reasons: Vec<String>,
}

/// Workflows whose portfolio entries are read at once: each entry is itself a dozen
/// concurrent reads, and the store's pool is about ten connections.
const WORKFLOWS_AT_ONCE: usize = 4;

impl Engine {
    /// Every workflow's line, in name order.
    pub async fn portfolio(&self) -> Result<Vec<PortfolioEntry>, EngineError> {
        self.flush().await;
        self.portfolio_entries(now_ms()).await
    }

    /// Every workflow's entry at `now`, in name order; a few workflows are read at once.
    pub(crate) async fn portfolio_entries(
        &self,
        now: i64,
    ) -> Result<Vec<PortfolioEntry>, EngineError> {
        use futures::{StreamExt, TryStreamExt};
        let reads: Vec<_> = self
            .project
            .workflows
            .values()
            .map(|workflow| self.portfolio_entry(workflow, now))
            .collect();
        futures::stream::iter(reads)
            .buffered(WORKFLOWS_AT_ONCE)
            .try_collect()
            .await
    }

    pub(crate) async fn portfolio_entry(
        &self,
        workflow: &LoadedWorkflow,
        now: i64,
    ) -> Result<PortfolioEntry, EngineError> {
        let spec = &workflow.spec;
        let name = spec.name.to_string();
        let outcome = spec.outcome.as_ref();
        let rates = Rates {
            minutes_per_accepted: outcome.map_or(0.0, |o| o.minutes_saved_per_accepted),
            reviewer_cost_per_hour: outcome.map_or(0.0, |o| o.reviewer_cost_per_hour),
        };
        let week = |to_ms: i64| Window {
            from_ms: to_ms - 7 * DAY_MS,
            to_ms,
        };
        // Every read below is independent of the others: they go to the store at once.
        let (this_week, last_week, kpi_values, promoted, first_seen, evals, review_counts, drift) = tokio::join!(
            self.window_figures(&name, week(now), rates),
            self.window_figures(&name, week(now - 7 * DAY_MS), rates),
            async {
                match outcome {
                    Some(_) => self.store.kpi_values(&name).await.map(Some),
                    None => Ok(None),
                }
            },
            self.store.latest_audit(AuditAction::WorkflowPromote, &name),
            self.store.first_audit(AuditAction::WorkflowVersion, &name),
            self.store.list_evals(Some(&name), 200),
            self.store.review_counts(Some(&name), now),
            self.drift_alert(&name, now),
        );
        let (this_week, last_week) = (this_week?, last_week?);
        let kpi = match (outcome, kpi_values?) {
            (Some(o), Some(values)) => Some(kpi_status(&o.kpi, o.baseline, o.target, values)),
            _ => None,
        };
        // Since its last promotion; a workflow never promoted has been in its stage since it
        // was first seen, when it was first seen in that stage (written so in its file).
        let in_stage_since = match promoted? {
            Some(promotion) => Some(promotion.at_ms),
            None => first_seen?
                .filter(|e| e.version_seen().and_then(|d| d.stage) == Some(spec.stage))
                .map(|e| e.at_ms),
        };
        let days_in_stage = in_stage_since.map(|at| (now - at).div_euclid(DAY_MS));
        // The workflow's own evals: not one forced onto another model, and the live version's
        // before any other (a variant's eval, or an earlier version's, is not this one's).
        let evals: Vec<EvalRecord> = evals?
            .into_iter()
            .filter(|e| e.model_override.is_none())
            .collect();
        let last_eval = evals
            .iter()
            .find(|e| e.version == workflow.version)
            .or_else(|| evals.first())
            .cloned()
            .map(|e: EvalRecord| LastEval {
                id: e.id,
                version: e.version,
                at_ms: e.created_at_ms,
                passed: e.passed,
            });
        let reviews_overdue = review_counts?.iter().map(|c| c.overdue).sum();
        let facts = Facts {
            owner: spec.owner.as_deref(),
            stage: spec.stage,
            days_in_stage,
            eval_cases: self.eval_cases(workflow),
            last_eval: last_eval.as_ref(),
            this_week: &this_week,
            last_week: &last_week,
            // The two weeks are the idle window.
            runs_in_idle_window: this_week.runs + last_week.runs,
            kpi: kpi.as_ref(),
            reviews_overdue,
            predicted_minutes_per_week: outcome.and_then(|o| o.predicted_minutes_saved_per_week),
            drift_alert: match drift {
                Ok(alert) => alert,
                // The portfolio still shows the rest; the drift command says what failed.
                Err(e) => {
                    tracing::warn!(workflow = %name, "portfolio: no drift verdict: {e}");
                    false
                }
            },
        };
        let flags = flags(&facts);
        let (suggestion, reasons) = suggest(&facts, &flags);
        Ok(PortfolioEntry {
            workflow: name,
            owner: spec.owner.clone(),
            stage: spec.stage,
            days_in_stage,
            eval_cases: facts.eval_cases,
            last_eval,
            this_week,
            last_week,
            kpi,
            reviews_overdue,
            flags,
            suggestion,
            reasons,
        })
    }

    async fn window_figures(
        &self,
        workflow: &str,
        window: Window,
        rates: Rates,
    ) -> Result<OutcomeFigures, EngineError> {
        let runs = self.store.run_weeks(workflow, window).await?;
        let reviews = self.store.review_weeks(workflow, window).await?;
        Ok(combine(&runs, &reviews, &[], &[], window.from_ms, rates).0)
    }

    /// The cases of the workflow's eval dataset, `None` without one (or when it cannot be read).
    fn eval_cases(&self, workflow: &LoadedWorkflow) -> Option<usize> {
        let relative = workflow.spec.eval.as_ref()?.dataset.as_ref()?.value.clone();
        let text = std::fs::read_to_string(self.project.root.join(&relative)).ok()?;
        Some(
            parse_dataset(&text, DatasetFormat::from_path(&relative))
                .0
                .len(),
        )
    }
}

/// What the flags are decided from.
struct Facts<'a> {
    owner: Option<&'a str>,
    stage: Stage,
    days_in_stage: Option<i64>,
    eval_cases: Option<usize>,
    last_eval: Option<&'a LastEval>,
    this_week: &'a OutcomeFigures,
    last_week: &'a OutcomeFigures,
    runs_in_idle_window: u64,
    kpi: Option<&'a KpiStatus>,
    reviews_overdue: u64,
    /// `[outcome] predicted_minutes_saved_per_week`, from intake.
    predicted_minutes_per_week: Option<f64>,
    drift_alert: bool,
}

fn flags(f: &Facts<'_>) -> Vec<Flagged> {
    let mut out = Vec::new();
    let mut flag = |flag, reason: String| out.push(Flagged { flag, reason });
    if f.stage == Stage::Retired {
        return Vec::new();
    }
    if f.owner.is_none_or(|o| o.trim().is_empty()) {
        flag(
            HealthFlag::NoOwner,
            "no business owner: nobody answers for it".into(),
        );
    }
    match f.eval_cases {
        None => flag(
            HealthFlag::NoEvalSet,
            "no eval set: nobody can tell whether a change helped".into(),
        ),
        Some(n) if n < MIN_EVAL_CASES => flag(
            HealthFlag::SmallEvalSet,
            format!("{n} eval cases, fewer than {MIN_EVAL_CASES}: too few to judge a change"),
        ),
        Some(_) => {}
    }
    if let Some(eval) = f.last_eval.filter(|e| e.passed == Some(false)) {
        flag(
            HealthFlag::GateFailed,
            format!("its last eval ({}) failed its gates", eval.id),
        );
    }
    if let (Stage::Pilot, Some(days)) = (f.stage, f.days_in_stage) {
        if days > LONG_PILOT_DAYS {
            flag(
                HealthFlag::LongPilot,
                format!("in pilot for {days} days, more than {LONG_PILOT_DAYS}"),
            );
        }
    }
    if f.stage != Stage::Draft && f.runs_in_idle_window == 0 {
        flag(HealthFlag::Idle, format!("no runs in {IDLE_DAYS} days"));
    }
    if let Some(p) = acceptance_drop_p(f.last_week, f.this_week) {
        flag(
            HealthFlag::AcceptanceFalling,
            format!(
                "acceptance fell from {:.0}% to {:.0}% week over week (p = {p:.3})",
                f.last_week.acceptance_rate.unwrap_or(0.0) * 100.0,
                f.this_week.acceptance_rate.unwrap_or(0.0) * 100.0
            ),
        );
    }
    if let (Some(before), Some(now)) = (
        f.last_week.cost_per_accepted_usd,
        f.this_week.cost_per_accepted_usd,
    ) {
        if before > 0.0 && now > before * (1.0 + COST_RISE) {
            flag(
                HealthFlag::CostRising,
                format!("cost per accepted output rose from ${before:.4} to ${now:.4}"),
            );
        }
    }
    if f.drift_alert {
        flag(
            HealthFlag::DriftAlert,
            "its inputs or outputs drifted from the reference".into(),
        );
    }
    if let (Stage::Production, Some(days), Some(predicted)) =
        (f.stage, f.days_in_stage, f.predicted_minutes_per_week)
    {
        let realised = f.this_week.minutes_saved;
        if days >= PREDICTION_DAYS && realised < predicted / 2.0 {
            flag(
                HealthFlag::PredictionMissed,
                format!(
                    "saved {realised:.0} minutes this week against {predicted:.0} predicted at intake: less than half, {days} days into production"
                ),
            );
        }
    }
    if f.reviews_overdue > 0 {
        flag(
            HealthFlag::ReviewsOverdue,
            format!("{} review item(s) past their SLA", f.reviews_overdue),
        );
    }
    out
}

/// The p-value of acceptance falling from `before` to `now`, when it fell significantly
/// (two-proportion z-test, p < 0.05).
fn acceptance_drop_p(before: &OutcomeFigures, now: &OutcomeFigures) -> Option<f64> {
    let test = shopfloor_core::drift::two_proportion_z(
        before.accepted,
        before.runs,
        now.accepted,
        now.runs,
    );
    (test.statistic < 0.0 && test.p_value < 0.05).then_some(test.p_value)
}

/// Keep, fix or cut, and why.
fn suggest(f: &Facts<'_>, flags: &[Flagged]) -> (Suggestion, Vec<String>) {
    let has = |flag| flags.iter().any(|x| x.flag == flag);
    let no_progress = f.kpi.and_then(|k| k.progress).is_none_or(|p| p < 0.25);
    let reasons: Vec<String> = flags.iter().map(|x| x.reason.clone()).collect();
    if has(HealthFlag::LongPilot) && no_progress {
        let mut why = vec![
            "a long pilot with the KPI not moving: decide to fund it into production or stop it"
                .to_string(),
        ];
        why.extend(reasons);
        return (Suggestion::Cut, why);
    }
    if has(HealthFlag::Idle) && f.stage == Stage::Pilot {
        let mut why = vec!["a pilot nobody uses".to_string()];
        why.extend(reasons);
        return (Suggestion::Cut, why);
    }
    if flags.is_empty() {
        let why = match f.kpi {
            Some(k) if k.target_reached => {
                vec!["healthy, and its KPI reached the target".to_string()]
            }
            _ => vec!["healthy: no flag raised".to_string()],
        };
        return (Suggestion::Keep, why);
    }
    (Suggestion::Fix, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(runs: u64, accepted: u64, cost: Option<f64>) -> OutcomeFigures {
        OutcomeFigures {
            runs,
            accepted,
            acceptance_rate: (runs > 0).then(|| accepted as f64 / runs as f64),
            cost_per_accepted_usd: cost,
            ..OutcomeFigures::default()
        }
    }

    fn facts<'a>(this: &'a OutcomeFigures, last: &'a OutcomeFigures) -> Facts<'a> {
        Facts {
            owner: Some("dana@acme.example"),
            stage: Stage::Production,
            days_in_stage: Some(10),
            eval_cases: Some(60),
            last_eval: None,
            this_week: this,
            last_week: last,
            runs_in_idle_window: this.runs + last.runs,
            kpi: None,
            reviews_overdue: 0,
            predicted_minutes_per_week: None,
            drift_alert: false,
        }
    }

    #[test]
    fn a_prediction_missed_by_more_than_half_is_flagged_after_30_days_in_production() {
        let mut week = figures(200, 180, Some(0.01));
        week.minutes_saved = 400.0;
        let mut f = facts(&week, &week);
        f.predicted_minutes_per_week = Some(1000.0);
        assert!(flags_of(&f).is_empty(), "10 days in: too early to tell");
        f.days_in_stage = Some(30);
        let flagged = flags(&f);
        assert_eq!(flagged[0].flag, HealthFlag::PredictionMissed);
        assert!(
            flagged[0]
                .reason
                .contains("saved 400 minutes this week against 1000 predicted"),
            "{flagged:?}"
        );
        week.minutes_saved = 500.0;
        let f = Facts {
            this_week: &week,
            predicted_minutes_per_week: Some(1000.0),
            days_in_stage: Some(40),
            ..facts(&week, &week)
        };
        assert!(flags_of(&f).is_empty(), "half of the prediction is no miss");
    }

    #[test]
    fn a_healthy_workflow_is_kept() {
        let week = figures(200, 180, Some(0.01));
        let f = facts(&week, &week);
        let flags = flags(&f);
        assert!(flags.is_empty(), "{flags:?}");
        assert_eq!(suggest(&f, &flags).0, Suggestion::Keep);
    }

    #[test]
    fn falling_acceptance_and_rising_cost_are_fixed() {
        let (this, last) = (figures(200, 120, Some(0.02)), figures(200, 180, Some(0.01)));
        let f = facts(&this, &last);
        let flags = flags(&f);
        let kinds: Vec<HealthFlag> = flags.iter().map(|x| x.flag).collect();
        assert_eq!(
            kinds,
            [HealthFlag::AcceptanceFalling, HealthFlag::CostRising]
        );
        assert_eq!(suggest(&f, &flags).0, Suggestion::Fix);
        // A small wobble is not significant.
        let (this, last) = (figures(20, 17, None), figures(20, 18, None));
        assert!(flags_of(&facts(&this, &last)).is_empty());
    }

    fn flags_of(f: &Facts<'_>) -> Vec<HealthFlag> {
        flags(f).into_iter().map(|x| x.flag).collect()
    }

    #[test]
    fn a_long_pilot_going_nowhere_is_cut() {
        let week = figures(50, 40, None);
        let mut f = facts(&week, &week);
        f.stage = Stage::Pilot;
        f.days_in_stage = Some(120);
        f.owner = None;
        f.eval_cases = Some(12);
        assert_eq!(
            flags_of(&f),
            [
                HealthFlag::NoOwner,
                HealthFlag::SmallEvalSet,
                HealthFlag::LongPilot
            ]
        );
        let (suggestion, reasons) = suggest(&f, &flags(&f));
        assert_eq!(suggestion, Suggestion::Cut);
        assert!(reasons[0].starts_with("a long pilot"), "{reasons:?}");
        // An idle pilot is cut too; an idle draft is not flagged.
        let none = figures(0, 0, None);
        let mut idle = facts(&none, &none);
        idle.stage = Stage::Pilot;
        assert_eq!(suggest(&idle, &flags(&idle)).0, Suggestion::Cut);
        idle.stage = Stage::Draft;
        assert!(flags_of(&idle).is_empty());
    }
}
