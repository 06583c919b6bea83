//! Experiments: a variant of a workflow takes a share of its single runs, assigned by a hash
//! of (experiment, subject) so that one person sees one variant on every replica; each run
//! records its experiment and arm; the arms' figures, an always-valid interval on the metric
//! and the guardrails say keep, cut or wait. A breached guardrail halts the variant at once.
//!
//! Batches run the version they were queued for and evals the version they evaluate: only
//! single runs (the workflow API, `workflow:NAME` on the gateway, `shopfloor run`) take part.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use shopfloor_core::experiment::{
    assign, format_value, recommend, Guardrail, Metric, Recommendation, Verdict, CONTROL,
    GUARDRAIL_WINDOW,
};
use shopfloor_store::{
    ExperimentArm, ExperimentEnd, ExperimentFigures, ExperimentRecord, ExperimentState, StoreError,
};
use tokio::sync::RwLock;

use crate::audit_detail::{AuditDetail, ExperimentHalted, ExperimentStarted, ExperimentStopped};
use crate::{now_ms, Engine, EngineError, LoadedWorkflow};

/// How long a replica trusts its list of running experiments before reading it again: an
/// experiment started, halted or stopped on another replica reaches this one within it.
const REFRESH: Duration = Duration::from_secs(1);
/// The share of subjects the variant gets when the experiment names none.
pub const DEFAULT_SHARE: f64 = 0.1;
/// The planned outcomes per arm when the experiment names none.
pub const DEFAULT_MIN_RUNS: u64 = 1000;

/// What starts an experiment.
#[derive(Debug, Clone)]
pub struct ExperimentStart {
    pub workflow: String,
    pub variant: String,
    pub hypothesis: String,
    pub metric: Metric,
    pub guardrails: Vec<Guardrail>,
    /// `None`: [`DEFAULT_SHARE`].
    pub share: Option<f64>,
    /// `None`: [`DEFAULT_MIN_RUNS`].
    pub min_runs: Option<u64>,
    pub mde: Option<f64>,
    pub subject_field: Option<String>,
}

/// A metric's value in each arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricValues {
    pub metric: Metric,
    pub control: Option<f64>,
    pub variant: Option<f64>,
}

/// An experiment with its figures and, while live, what they recommend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentStatus {
    #[serde(flatten)]
    pub record: ExperimentRecord,
    pub figures: ExperimentFigures,
    /// Every metric's value in each arm.
    pub values: Vec<MetricValues>,
    /// What the numbers say, while the experiment is live.
    pub recommendation: Option<Recommendation>,
}

impl ExperimentStatus {
    /// The status in a few lines, for the terminal.
    pub fn summary(&self) -> String {
        let r = &self.record;
        let mut out = format!(
            "experiment {} of {}: variant {} ({}), {}\n  hypothesis: {}\n",
            r.id, r.workflow, r.variant, r.variant_version, r.state, r.hypothesis
        );
        let arm = |f: &shopfloor_core::experiment::ArmFigures| {
            format!(
                "{} runs, {} reviewed, {} accepted",
                f.runs, f.reviewed, f.accepted
            )
        };
        out.push_str(&format!(
            "  control: {}\n  {}: {}\n",
            arm(&self.figures.control),
            r.variant,
            arm(&self.figures.variant)
        ));
        for v in &self.values {
            let show = |x: Option<f64>| x.map_or("–".to_string(), |x| format_value(v.metric, x));
            let marker = if v.metric == r.metric {
                " (metric)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {}{marker}: control {}, variant {}\n",
                v.metric,
                show(v.control),
                show(v.variant)
            ));
        }
        if let Some(reason) = &r.halted_reason {
            out.push_str(&format!("  halted: {reason}\n"));
        }
        if let Some(rec) = &self.recommendation {
            out.push_str(&format!(
                "  recommendation: {} — {}\n",
                rec.verdict, rec.reason
            ));
        }
        if let Some(decision) = &r.decision {
            out.push_str(&format!(
                "  decided: {decision} by {}{}\n",
                r.ended_by.as_deref().unwrap_or("?"),
                r.note
                    .as_deref()
                    .map(|n| format!(" — {n}"))
                    .unwrap_or_default()
            ));
        }
        out
    }
}

/// A running experiment with its variant compiled, as the run path uses it.
pub(crate) struct Live {
    record: ExperimentRecord,
    variant: Arc<LoadedWorkflow>,
    /// Runs this replica gave either arm: every few, the guardrails are read at once.
    runs: AtomicU64,
}

/// Whether the experiment's `n`th run on this replica reads the guardrails after it: every
/// 5th through the first windows, so that a breach stops the variant within its first window
/// rather than at the background job's next pass; every 100th after that.
fn guardrails_due(n: u64) -> bool {
    if n <= 20 * GUARDRAIL_WINDOW {
        n.is_multiple_of(5)
    } else {
        n.is_multiple_of(100)
    }
}

/// The running experiments by workflow, read from the store at most every [`REFRESH`].
#[derive(Default)]
pub(crate) struct LiveExperiments {
    cache: RwLock<Cache>,
}

#[derive(Default)]
struct Cache {
    read_at: Option<Instant>,
    by_workflow: HashMap<String, Arc<Live>>,
}

impl Engine {
    /// Start an experiment: the variant must exist and have passed the workflow's gates, the
    /// metric must be testable, and the workflow must have no live experiment. Audited
    /// (`experiment.start`).
    pub async fn start_experiment(
        &self,
        actor: &str,
        start: ExperimentStart,
    ) -> Result<ExperimentStatus, EngineError> {
        let invalid =
            |field: &'static str, message: String| EngineError::InvalidField { field, message };
        let control = self.project.workflow(&start.workflow)?;
        let variant = self.project.variant(&start.workflow, &start.variant)?;
        let statuses = self
            .records
            .variant_statuses(&self.project, &start.workflow)
            .await?;
        if let Some(status) = statuses.iter().find(|s| s.name == start.variant) {
            if !status.eligible {
                return Err(invalid(
                    "variant",
                    format!(
                        "variant {} of {} may not take traffic yet: {}",
                        start.variant,
                        start.workflow,
                        status.reason(&start.workflow)
                    ),
                ));
            }
        }
        let hypothesis = start.hypothesis.trim();
        if hypothesis.is_empty() {
            return Err(invalid(
                "hypothesis",
                "an experiment needs a hypothesis: what the variant should change, and why".into(),
            ));
        }
        if !start.metric.testable() {
            let testable: Vec<&str> = Metric::ALL
                .iter()
                .filter(|m| m.testable())
                .map(|m| m.as_str())
                .collect();
            return Err(invalid(
                "metric",
                format!(
                    "{} is a ratio or a percentile, which the always-valid test cannot decide on; \
                     make it a guardrail, and choose the metric from: {}",
                    start.metric,
                    testable.join(", ")
                ),
            ));
        }
        let share = start.share.unwrap_or(DEFAULT_SHARE);
        if !(share > 0.0 && share < 1.0) {
            return Err(invalid(
                "share",
                format!("{share} is not a share between 0 and 1 (exclusive), e.g. 0.1"),
            ));
        }
        let min_runs = start.min_runs.unwrap_or(DEFAULT_MIN_RUNS);
        if min_runs == 0 {
            return Err(invalid("min_runs", "must be at least 1 run per arm".into()));
        }
        if let Some(mde) = start.mde {
            if !(mde.is_finite() && mde > 0.0) {
                return Err(invalid("mde", format!("{mde} is not a positive effect")));
            }
        }
        let subject_field = start
            .subject_field
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty());
        let record = ExperimentRecord {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: start.workflow.clone(),
            variant: start.variant.clone(),
            variant_version: variant.version.clone(),
            control_version: control.version.clone(),
            hypothesis: hypothesis.to_string(),
            metric: start.metric,
            guardrails: start.guardrails,
            share,
            min_runs,
            mde: start.mde,
            subject_field,
            state: ExperimentState::Running,
            started_at_ms: now_ms(),
            started_by: actor.to_string(),
            ended_at_ms: None,
            ended_by: None,
            decision: None,
            note: None,
            halted_reason: None,
        };
        match self.store.insert_experiment(&record).await {
            Ok(()) => {}
            Err(StoreError::Duplicate { .. }) => {
                let live = self
                    .store
                    .experiments(Some(&start.workflow))
                    .await?
                    .into_iter()
                    .find(|e| e.state != ExperimentState::Stopped);
                return Err(EngineError::ExperimentConflict(match live {
                    Some(e) => format!(
                        "workflow {} already has a live experiment ({}, variant {}, {}); stop it with a decision first",
                        e.workflow, e.id, e.variant, e.state
                    ),
                    None => format!("workflow {} already has a live experiment", start.workflow),
                }));
            }
            Err(e) => return Err(e.into()),
        }
        let detail = AuditDetail::ExperimentStart(ExperimentStarted {
            experiment: record.id.clone(),
            variant: record.variant.clone(),
            variant_version: record.variant_version.clone(),
            control_version: record.control_version.clone(),
            hypothesis: record.hypothesis.clone(),
            metric: record.metric,
            guardrails: record.guardrails.iter().map(Guardrail::text).collect(),
            share: record.share,
            min_runs: record.min_runs,
            mde: record.mde,
            subject_field: record.subject_field.clone(),
        });
        self.audit(actor, &record.workflow, detail).await?;
        self.experiments.invalidate().await;
        self.status_of(record).await
    }

    /// The experiments of `workflow`, newest first, with their figures; a running one whose
    /// guardrail is breached is halted first.
    pub async fn experiment_status(
        &self,
        workflow: &str,
    ) -> Result<Vec<ExperimentStatus>, EngineError> {
        self.project.workflow(workflow)?;
        self.flush().await;
        let mut out = Vec::new();
        for record in self.store.experiments(Some(workflow)).await? {
            let status = self.status_of(record).await?;
            out.push(self.halt_if_breached(status).await?);
        }
        Ok(out)
    }

    /// Every live experiment of the project with its figures, read only (the weekly review
    /// writes nothing; the background job and `status` halt breached ones).
    pub async fn live_experiments(&self) -> Result<Vec<ExperimentStatus>, EngineError> {
        let mut out = Vec::new();
        for record in self.store.experiments(None).await? {
            if record.state == ExperimentState::Stopped
                || self.project.workflow(&record.workflow).is_err()
            {
                continue;
            }
            out.push(self.status_of(record).await?);
        }
        Ok(out)
    }

    /// Check every running experiment's guardrails and halt the breached ones: the
    /// background job's pass. Returns the experiments it halted.
    pub async fn check_experiments(&self) -> Result<Vec<ExperimentStatus>, EngineError> {
        let mut halted = Vec::new();
        for record in self.store.running_experiments().await? {
            let status = self.status_of(record).await?;
            let status = self.halt_if_breached(status).await?;
            if status.record.state == ExperimentState::Halted {
                halted.push(status);
            }
        }
        Ok(halted)
    }

    /// End `workflow`'s live experiment with a decision: `keep` (the variant earned the
    /// traffic: make it the workflow) or `cut`. Audited (`experiment.stop`) with the
    /// hypothesis and the figures.
    pub async fn stop_experiment(
        &self,
        actor: &str,
        workflow: &str,
        decision: Verdict,
        note: Option<String>,
    ) -> Result<ExperimentStatus, EngineError> {
        if decision == Verdict::Continue {
            return Err(EngineError::InvalidField {
                field: "decision",
                message: "a decision is keep or cut".into(),
            });
        }
        self.project.workflow(workflow)?;
        self.flush().await;
        let live = self
            .store
            .experiments(Some(workflow))
            .await?
            .into_iter()
            .find(|e| e.state != ExperimentState::Stopped)
            .ok_or_else(|| {
                EngineError::NoExperiment(format!("workflow {workflow} has no live experiment"))
            })?;
        let before = self.status_of(live).await?;
        let live = &before.record;
        let end = ExperimentEnd {
            state: ExperimentState::Stopped,
            at_ms: now_ms(),
            by: actor.to_string(),
            decision: Some(decision.as_str().to_string()),
            note: note.clone(),
            halted_reason: None,
        };
        if !self.store.end_experiment(&live.id, &end).await? {
            return Err(EngineError::ExperimentConflict(format!(
                "experiment {} was stopped meanwhile",
                live.id
            )));
        }
        self.experiments.invalidate().await;
        let detail = AuditDetail::ExperimentStop(ExperimentStopped {
            experiment: live.id.clone(),
            variant: live.variant.clone(),
            hypothesis: live.hypothesis.clone(),
            decision,
            note,
            metric: live.metric,
            figures: json!(before.figures),
            recommendation: json!(before.recommendation),
        });
        self.audit(actor, workflow, detail).await?;
        // Stopping changes the record, not the figures: no need to count them again.
        Ok(ExperimentStatus {
            record: before.record.ended(&end),
            recommendation: None,
            ..before
        })
    }

    /// The arm a single run of `workflow` runs in: the workflow itself when it has no running
    /// experiment or the caller pinned a model, else the arm the subject hashes to; and the
    /// experiment, when its guardrails are to be read once the run is recorded.
    pub(crate) async fn arm_for(
        &self,
        workflow: Arc<LoadedWorkflow>,
        input: &Value,
        subject: Option<&str>,
        pinned_model: bool,
    ) -> (
        Arc<LoadedWorkflow>,
        Option<ExperimentArm>,
        Option<Arc<Live>>,
    ) {
        if pinned_model {
            return (workflow, None, None);
        }
        let Some(live) = self.live(workflow.spec.name.as_str()).await else {
            return (workflow, None, None);
        };
        let from_input = live
            .record
            .subject_field
            .as_deref()
            .and_then(|field| input.get(field))
            .filter(|v| !v.is_null())
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        // Without a subject each run draws its own arm.
        let subject = from_input
            .or_else(|| subject.map(str::to_string))
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let due =
            guardrails_due(live.runs.fetch_add(1, Ordering::Relaxed) + 1).then(|| live.clone());
        if assign(&live.record.id, &subject, live.record.share) {
            let arm = ExperimentArm {
                id: live.record.id.clone(),
                arm: live.record.variant.clone(),
            };
            (live.variant.clone(), Some(arm), due)
        } else {
            let arm = ExperimentArm {
                id: live.record.id.clone(),
                arm: CONTROL.to_string(),
            };
            (workflow, Some(arm), due)
        }
    }

    /// Read the guardrails of a running experiment now (its runs so far written first), and
    /// halt it if one is breached.
    pub(crate) async fn check_guardrails_now(&self, live: &Live) {
        self.flush().await;
        let checked = async {
            let status = self.status_of(live.record.clone()).await?;
            self.halt_if_breached(status).await
        };
        if let Err(e) = checked.await {
            tracing::warn!(experiment = %live.record.id, "guardrail check failed: {e}");
        }
    }

    /// The running experiment of `workflow`, from the cache or, when it is stale, the store.
    async fn live(&self, workflow: &str) -> Option<Arc<Live>> {
        {
            let cache = self.experiments.cache.read().await;
            if cache.read_at.is_some_and(|at| at.elapsed() < REFRESH) {
                return cache.by_workflow.get(workflow).cloned();
            }
        }
        let mut cache = self.experiments.cache.write().await;
        if cache.read_at.is_none_or(|at| at.elapsed() >= REFRESH) {
            match self.store.running_experiments().await {
                Ok(records) => {
                    let mut by_workflow = HashMap::with_capacity(records.len());
                    for record in records {
                        // A variant already compiled for this experiment is kept.
                        if let Some(known) = cache.by_workflow.get(&record.workflow) {
                            if known.record.id == record.id {
                                by_workflow.insert(record.workflow.clone(), known.clone());
                                continue;
                            }
                        }
                        match self.project.variant(&record.workflow, &record.variant) {
                            Ok(variant) => {
                                by_workflow.insert(
                                    record.workflow.clone(),
                                    Arc::new(Live {
                                        record,
                                        variant,
                                        runs: AtomicU64::new(0),
                                    }),
                                );
                            }
                            // The running project no longer has the workflow or variant:
                            // its runs are the workflow's own.
                            Err(e) => tracing::warn!(
                                experiment = %record.id,
                                "experiment's variant is not in this project: {e}"
                            ),
                        }
                    }
                    cache.by_workflow = by_workflow;
                }
                Err(e) => tracing::warn!("cannot read running experiments: {e}"),
            }
            cache.read_at = Some(Instant::now());
        }
        cache.by_workflow.get(workflow).cloned()
    }

    /// An experiment's figures, values and (while live) recommendation.
    async fn status_of(&self, record: ExperimentRecord) -> Result<ExperimentStatus, EngineError> {
        let figures = self.store.experiment_figures(&record.id).await?;
        let values = Metric::ALL
            .iter()
            .map(|&metric| MetricValues {
                metric,
                control: figures.control.value(metric),
                variant: figures.variant.value(metric),
            })
            .collect();
        let recommendation = (record.state != ExperimentState::Stopped).then(|| {
            let mde = record.mde.unwrap_or_else(|| {
                record
                    .metric
                    .default_mde(figures.control.value(record.metric))
            });
            recommend(
                record.metric,
                &figures.control,
                &figures.variant,
                record.min_runs,
                mde,
            )
        });
        Ok(ExperimentStatus {
            record,
            figures,
            values,
            recommendation,
        })
    }

    /// Halt a running experiment whose guardrail is breached; audited (`experiment.halt`).
    async fn halt_if_breached(
        &self,
        mut status: ExperimentStatus,
    ) -> Result<ExperimentStatus, EngineError> {
        if status.record.state != ExperimentState::Running {
            return Ok(status);
        }
        let Some(reason) = status
            .record
            .guardrails
            .iter()
            .find_map(|g| g.breach(&status.figures.control, &status.figures.variant))
        else {
            return Ok(status);
        };
        let end = ExperimentEnd {
            state: ExperimentState::Halted,
            at_ms: now_ms(),
            by: crate::SYSTEM_ACTOR.to_string(),
            decision: None,
            note: None,
            halted_reason: Some(reason.clone()),
        };
        if self.store.end_experiment(&status.record.id, &end).await? {
            self.experiments.invalidate().await;
            let detail = AuditDetail::ExperimentHalt(ExperimentHalted {
                experiment: status.record.id.clone(),
                variant: status.record.variant.clone(),
                reason,
                figures: json!(status.figures),
            });
            self.audit(crate::SYSTEM_ACTOR, &status.record.workflow, detail)
                .await?;
        }
        status.record = status.record.ended(&end);
        Ok(status)
    }
}

impl LiveExperiments {
    /// Read the store again at the next run: this replica changed an experiment.
    async fn invalidate(&self) {
        self.cache.write().await.read_at = None;
    }
}
