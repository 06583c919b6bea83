//! Experiments (`experiments`) and the figures of their arms, counted from the runs that
//! carry the experiment's id and the reviews of those runs. At most one experiment of a
//! workflow is live (running or halted) at a time: a partial unique index holds that across
//! replicas.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use shopfloor_core::experiment::{ArmFigures, Guardrail, Metric};

use crate::Result;

shopfloor_core::text_enum! {
    /// Where an experiment stands.
    pub enum ExperimentState {
        /// The variant takes its share of the workflow's traffic.
        Running => "running",
        /// A guardrail was breached: the variant takes no traffic until someone decides.
        Halted => "halted",
        /// Decided (keep or cut) and closed.
        Stopped => "stopped",
    }
}

/// An experiment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// Time-ordered unique id (UUID v7 text); the assignment hash is keyed by it.
    pub id: String,
    pub workflow: String,
    pub variant: String,
    /// The variant's version hash when the experiment started.
    pub variant_version: String,
    /// The workflow's own version hash then.
    pub control_version: String,
    /// What the variant is expected to do, in words.
    pub hypothesis: String,
    pub metric: Metric,
    pub guardrails: Vec<Guardrail>,
    /// The share of subjects the variant gets, in (0, 1).
    pub share: f64,
    /// The planned outcomes per arm: the confidence sequence is tuned for them, and after them
    /// a variant that has not shown the minimum detectable effect is cut.
    pub min_runs: u64,
    /// The minimum detectable effect; `None`: the metric's default.
    pub mde: Option<f64>,
    /// The input field whose value is the subject; `None`: the caller's `user`.
    pub subject_field: Option<String>,
    pub state: ExperimentState,
    pub started_at_ms: i64,
    pub started_by: String,
    pub ended_at_ms: Option<i64>,
    pub ended_by: Option<String>,
    /// `keep` or `cut`, once stopped.
    pub decision: Option<String>,
    pub note: Option<String>,
    /// The guardrail breach that halted it.
    pub halted_reason: Option<String>,
}

/// How an experiment ends or halts.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentEnd {
    pub state: ExperimentState,
    pub at_ms: i64,
    pub by: String,
    pub decision: Option<String>,
    pub note: Option<String>,
    pub halted_reason: Option<String>,
}

impl ExperimentRecord {
    /// The record as [`ExperimentStore::end_experiment`] leaves it after `end`.
    pub fn ended(mut self, end: &ExperimentEnd) -> Self {
        self.state = end.state;
        self.ended_at_ms = Some(end.at_ms);
        self.ended_by = Some(end.by.clone());
        self.decision = end.decision.clone();
        self.note = end.note.clone();
        if end.halted_reason.is_some() {
            self.halted_reason = end.halted_reason.clone();
        }
        self
    }
}

/// The figures of each arm of an experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExperimentFigures {
    pub control: ArmFigures,
    pub variant: ArmFigures,
}

/// Columns of `experiments`.
pub(crate) const EXPERIMENT_COLUMNS: &str = "id, workflow, variant, variant_version, \
     control_version, hypothesis, metric, guardrails, share, min_runs, mde, subject_field, \
     state, started_at_ms, started_by, ended_at_ms, ended_by, decision, note, halted_reason";

/// An experiment from a row of [`EXPERIMENT_COLUMNS`].
pub(crate) fn experiment_from_row(row: &impl crate::codec::Columns) -> Result<ExperimentRecord> {
    use crate::StoreError;
    const T: &str = "experiments";
    let corrupt = |column: &'static str, message: String| StoreError::Corrupt {
        table: T,
        column,
        message,
    };
    let metric = row.text("metric")?;
    let state = row.text("state")?;
    let min_runs = row.int("min_runs")?;
    Ok(ExperimentRecord {
        id: row.text("id")?,
        workflow: row.text("workflow")?,
        variant: row.text("variant")?,
        variant_version: row.text("variant_version")?,
        control_version: row.text("control_version")?,
        hypothesis: row.text("hypothesis")?,
        metric: Metric::parse(&metric)
            .ok_or_else(|| corrupt("metric", format!("unknown metric {metric:?}")))?,
        guardrails: serde_json::from_str(&row.text("guardrails")?)
            .map_err(|e| corrupt("guardrails", e.to_string()))?,
        share: row.float("share")?,
        min_runs: u64::try_from(min_runs)
            .map_err(|_| corrupt("min_runs", format!("negative: {min_runs}")))?,
        mde: row.opt_float("mde")?,
        subject_field: row.opt_text("subject_field")?,
        state: ExperimentState::parse(&state)
            .ok_or_else(|| corrupt("state", format!("unknown state {state:?}")))?,
        started_at_ms: row.int("started_at_ms")?,
        started_by: row.text("started_by")?,
        ended_at_ms: row.opt_int("ended_at_ms")?,
        ended_by: row.opt_text("ended_by")?,
        decision: row.opt_text("decision")?,
        note: row.opt_text("note")?,
        halted_reason: row.opt_text("halted_reason")?,
    })
}

/// The experiment part of the store.
#[async_trait]
pub trait ExperimentStore {
    /// Record a new experiment; [`crate::StoreError::Duplicate`] when its workflow already has
    /// a live one (running or halted), whichever replica started it.
    async fn insert_experiment(&self, experiment: &ExperimentRecord) -> Result<()>;

    /// The experiments of `workflow` (every workflow's when `None`), newest first.
    async fn experiments(&self, workflow: Option<&str>) -> Result<Vec<ExperimentRecord>>;

    /// The running experiments: the ones that take traffic.
    async fn running_experiments(&self) -> Result<Vec<ExperimentRecord>>;

    /// Halt or stop a live experiment; false when it is not live (already stopped, or halted
    /// when halting).
    async fn end_experiment(&self, id: &str, end: &ExperimentEnd) -> Result<bool>;

    /// What each arm's runs add up to.
    async fn experiment_figures(&self, id: &str) -> Result<ExperimentFigures>;
}

/// `impl ExperimentStore for $store` over `$db`.
macro_rules! experiment_store_impl {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::experiments::ExperimentStore for $store {
            async fn insert_experiment(
                &self,
                e: &$crate::experiments::ExperimentRecord,
            ) -> $crate::Result<()> {
                use $crate::experiments::EXPERIMENT_COLUMNS;
                let guardrails = serde_json::to_string(&e.guardrails)
                    .expect("guardrails serialise to JSON");
                let min_runs = i64::try_from(e.min_runs).map_err(|_| {
                    $crate::StoreError::OutOfRange {
                        field: "experiments.min_runs",
                        value: e.min_runs,
                    }
                })?;
                // The partial unique index on live experiments turns a second one of the
                // workflow into no row, on either database.
                let inserted = sqlx::query::<$db>(&format!(
                    "INSERT INTO experiments ({EXPERIMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, \
                     $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(&e.id)
                .bind(&e.workflow)
                .bind(&e.variant)
                .bind(&e.variant_version)
                .bind(&e.control_version)
                .bind(&e.hypothesis)
                .bind(e.metric.as_str())
                .bind(guardrails)
                .bind(e.share)
                .bind(min_runs)
                .bind(e.mde)
                .bind(&e.subject_field)
                .bind(e.state.as_str())
                .bind(e.started_at_ms)
                .bind(&e.started_by)
                .bind(e.ended_at_ms)
                .bind(&e.ended_by)
                .bind(&e.decision)
                .bind(&e.note)
                .bind(&e.halted_reason)
                .execute(self.writer())
                .await?
                .rows_affected();
                if inserted == 0 {
                    return Err($crate::StoreError::Duplicate {
                        kind: "live experiment of workflow",
                        name: e.workflow.clone(),
                    });
                }
                Ok(())
            }

            async fn experiments(
                &self,
                workflow: Option<&str>,
            ) -> $crate::Result<Vec<$crate::experiments::ExperimentRecord>> {
                use $crate::experiments::{experiment_from_row, EXPERIMENT_COLUMNS};
                let rows = sqlx::query::<$db>(&format!(
                    "SELECT {EXPERIMENT_COLUMNS} FROM experiments \
                     WHERE ($1 IS NULL OR workflow = $1) ORDER BY started_at_ms DESC, id DESC"
                ))
                .bind(workflow)
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(experiment_from_row).collect()
            }

            async fn running_experiments(
                &self,
            ) -> $crate::Result<Vec<$crate::experiments::ExperimentRecord>> {
                use $crate::experiments::{experiment_from_row, EXPERIMENT_COLUMNS};
                let rows = sqlx::query::<$db>(&format!(
                    "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE state = 'running'"
                ))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(experiment_from_row).collect()
            }

            async fn end_experiment(
                &self,
                id: &str,
                end: &$crate::experiments::ExperimentEnd,
            ) -> $crate::Result<bool> {
                use $crate::experiments::ExperimentState;
                // Halting takes a running experiment; stopping a running or halted one.
                let from: &[&str] = match end.state {
                    ExperimentState::Halted => &["running", "running"],
                    _ => &["running", "halted"],
                };
                let changed = sqlx::query::<$db>(
                    "UPDATE experiments SET state = $1, ended_at_ms = $2, ended_by = $3, \
                     decision = $4, note = $5, \
                     halted_reason = COALESCE($6, halted_reason) \
                     WHERE id = $7 AND state IN ($8, $9)",
                )
                .bind(end.state.as_str())
                .bind(end.at_ms)
                .bind(&end.by)
                .bind(&end.decision)
                .bind(&end.note)
                .bind(&end.halted_reason)
                .bind(id)
                .bind(from[0])
                .bind(from[1])
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(changed == 1)
            }

            async fn experiment_figures(
                &self,
                id: &str,
            ) -> $crate::Result<$crate::experiments::ExperimentFigures> {
                use ::shopfloor_core::experiment::{ArmFigures, CONTROL};
                use $crate::codec::Columns;
                let rows = sqlx::query::<$db>(
                    "SELECT r.arm AS arm, COUNT(*) AS runs, \
                     CAST(SUM(CASE WHEN r.status = 'invalid' THEN 1 ELSE 0 END) AS BIGINT) \
                       AS invalid, \
                     CAST(SUM(CASE WHEN v.status IN ('approved', 'edited', 'rejected') \
                       THEN 1 ELSE 0 END) AS BIGINT) AS reviewed, \
                     CAST(SUM(CASE WHEN v.status = 'approved' THEN 1 ELSE 0 END) AS BIGINT) \
                       AS accepted, \
                     SUM(r.cost_usd) AS cost, SUM(r.cost_usd * r.cost_usd) AS cost_sq \
                     FROM runs r LEFT JOIN reviews v ON v.run_id = r.id \
                     WHERE r.experiment_id = $1 GROUP BY r.arm",
                )
                .bind(id)
                .fetch_all(self.reader())
                .await?;
                let mut figures = $crate::experiments::ExperimentFigures::default();
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                for row in &rows {
                    let arm = row.opt_text("arm")?.unwrap_or_default();
                    let runs = count(row.int("runs")?);
                    let offset = i64::try_from(runs.saturating_mul(95).div_ceil(100))
                        .unwrap_or(i64::MAX)
                        .saturating_sub(1)
                        .max(0);
                    let p95 = sqlx::query_scalar::<$db, i64>(
                        "SELECT latency_ms FROM runs WHERE experiment_id = $1 AND arm = $2 \
                         ORDER BY latency_ms LIMIT 1 OFFSET $3",
                    )
                    .bind(id)
                    .bind(&arm)
                    .bind(offset)
                    .fetch_optional(self.reader())
                    .await?;
                    let arm_figures = ArmFigures {
                        runs,
                        invalid: count(row.opt_int("invalid")?.unwrap_or(0)),
                        reviewed: count(row.opt_int("reviewed")?.unwrap_or(0)),
                        accepted: count(row.opt_int("accepted")?.unwrap_or(0)),
                        cost_usd: row.opt_float("cost")?.unwrap_or(0.0),
                        cost_sq: row.opt_float("cost_sq")?.unwrap_or(0.0),
                        p95_latency_ms: p95.map(count),
                    };
                    if arm == CONTROL {
                        figures.control = arm_figures;
                    } else {
                        figures.variant = arm_figures;
                    }
                }
                Ok(figures)
            }
        }
    };
}

pub(crate) use experiment_store_impl;
