//! Drift of a workflow: its current version's last 24 hours and 7 days against a reference —
//! the version's first 7 days in production, or, before those have `min_runs` runs (and for a
//! workflow not in production), the eval set's expected labels. The store aggregates; core's
//! `drift::checks` decides.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use shopfloor_core::dataset::{parse_dataset, DatasetFormat};
use shopfloor_core::drift::checks::{alerts, evaluate, DriftCheck, RateCounts, WindowData};
use shopfloor_core::spec::OutputContract;
use shopfloor_core::spec::Stage;
use shopfloor_store::{AuditAction, RunStatus, RunWindow};

use crate::{Engine, EngineError};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Runs sampled per window for lengths and words: enough for the KS test to see a shift of a
/// few percent, and bounded whatever the traffic (the exact KS p-value costs m·n steps).
pub const SAMPLE_RUNS: u32 = 2000;
/// The current windows: name and length.
const WINDOWS: [(&str, i64); 2] = [("24h", DAY_MS), ("7d", 7 * DAY_MS)];

/// Where the reference came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    /// The version's first 7 days in production.
    Production,
    /// The eval set's expected outputs (labels only).
    Eval,
    /// Neither: no production week with enough runs, and no labelled eval set.
    None,
}

/// The reference a workflow's windows are compared with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReference {
    pub kind: ReferenceKind,
    /// The production week, for a production reference.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Runs (or eval cases) in it.
    pub runs: u64,
}

/// One current window and its checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftWindow {
    pub name: &'static str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub runs: u64,
    pub drift: bool,
    pub checks: Vec<DriftCheck>,
}

/// What `shopfloor drift` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub workflow: String,
    pub version: String,
    pub reference: DriftReference,
    pub windows: Vec<DriftWindow>,
    /// Any check of any window alerts.
    pub drift: bool,
}

impl Engine {
    /// The drift report of `workflow`'s current version at `now_ms`. A report that alerts is
    /// logged at WARN.
    pub async fn drift(&self, workflow: &str, now_ms: i64) -> Result<DriftReport, EngineError> {
        let loaded = self.project.workflow(workflow)?;
        let settings = self.project.config.monitoring.drift;
        let labelled = matches!(loaded.spec.output.contract, OutputContract::Labels(_));
        let mut reference = DriftReference {
            kind: ReferenceKind::None,
            from_ms: None,
            to_ms: None,
            runs: 0,
        };
        let mut reference_data = WindowData::default();
        let production = self.production_week(workflow, &loaded).await?;
        let current: Vec<RunWindow<'_>> = WINDOWS
            .iter()
            .map(|(_, length)| RunWindow {
                workflow,
                version: &loaded.version,
                from_ms: now_ms - length,
                to_ms: now_ms,
            })
            .collect();
        // The reference and the current windows are read at once: each is a few independent
        // queries, and the store has connections to spare.
        let reference_read = async {
            match production {
                Some((from_ms, to_ms)) => {
                    let window = RunWindow {
                        workflow,
                        version: &loaded.version,
                        from_ms,
                        to_ms,
                    };
                    Ok(Some((
                        from_ms,
                        to_ms,
                        self.window_data(&window, labelled).await?,
                    )))
                }
                None => Ok::<_, EngineError>(None),
            }
        };
        let (production_data, current_data) = tokio::try_join!(
            reference_read,
            futures::future::try_join_all(current.iter().map(|w| self.window_data(w, labelled)))
        )?;
        if let Some((from_ms, to_ms, data)) = production_data {
            if data.runs >= settings.min_runs {
                reference = DriftReference {
                    kind: ReferenceKind::Production,
                    from_ms: Some(from_ms),
                    to_ms: Some(to_ms),
                    runs: data.runs,
                };
                reference_data = data;
            }
        }
        if reference.kind == ReferenceKind::None && labelled {
            if let Some(labels) = self.eval_labels(&loaded)? {
                reference.kind = ReferenceKind::Eval;
                reference.runs = labels.values().sum();
                reference_data = WindowData {
                    runs: reference.runs,
                    labels,
                    ..WindowData::default()
                };
            }
        }
        let mut windows = Vec::with_capacity(WINDOWS.len());
        for (((name, _), window), data) in WINDOWS.iter().zip(&current).zip(current_data) {
            let name = *name;
            let checks = if reference.kind == ReferenceKind::None {
                Vec::new()
            } else {
                evaluate(&reference_data, &data, &settings)
            };
            windows.push(DriftWindow {
                name,
                from_ms: window.from_ms,
                to_ms: window.to_ms,
                runs: data.runs,
                drift: alerts(&checks),
                checks,
            });
        }
        let report = DriftReport {
            workflow: workflow.to_string(),
            version: loaded.version.clone(),
            drift: windows.iter().any(|w| w.drift),
            reference,
            windows,
        };
        if report.drift {
            let drifted: Vec<String> = report
                .windows
                .iter()
                .flat_map(|w| {
                    w.checks
                        .iter()
                        .filter(|c| c.drift)
                        .map(move |c| format!("{}:{}", w.name, c.name))
                })
                .collect();
            tracing::warn!(
                workflow,
                version = %report.version,
                checks = %drifted.join(","),
                "drift detected"
            );
        }
        Ok(report)
    }

    /// Whether `workflow`'s latest drift check at `now_ms` alerts (the portfolio's flag).
    pub async fn drift_alert(&self, workflow: &str, now_ms: i64) -> Result<bool, EngineError> {
        Ok(self.drift(workflow, now_ms).await?.drift)
    }

    /// The first 7 days of the current version in production: from its first run at or after
    /// the latest promotion (or from its first run, for a workflow written as in production).
    async fn production_week(
        &self,
        workflow: &str,
        loaded: &crate::LoadedWorkflow,
    ) -> Result<Option<(i64, i64)>, EngineError> {
        if loaded.spec.stage != Stage::Production {
            return Ok(None);
        }
        let store = self.store();
        let promoted_at = store
            .latest_audit(AuditAction::WorkflowPromote, workflow)
            .await?
            .filter(|e| e.promotion().is_some_and(|p| p.to == Stage::Production))
            .map_or(0, |e| e.at_ms);
        let first = store
            .first_run_at(workflow, &loaded.version, promoted_at)
            .await?;
        Ok(first.map(|from| (from, from + 7 * DAY_MS)))
    }

    /// A window's counts, p95 latency and bounded sample.
    async fn window_data(
        &self,
        window: &RunWindow<'_>,
        labelled: bool,
    ) -> Result<WindowData, EngineError> {
        let store = self.store();
        let (counts, sample, latency_p95_ms) = tokio::try_join!(
            store.window_counts(window),
            store.window_sample(window, SAMPLE_RUNS),
            store.window_latency_percentile(window, 95.0)
        )?;
        let runs = counts.runs();
        let labels = if labelled {
            counts
                .outputs
                .iter()
                .map(|(text, n)| (label_of(text), *n))
                .fold(BTreeMap::new(), |mut labels, (label, n)| {
                    *labels.entry(label).or_insert(0) += n;
                    labels
                })
        } else {
            BTreeMap::new()
        };
        Ok(WindowData {
            runs,
            labels,
            rates: Some(RateCounts {
                runs,
                invalid: counts.with_status(RunStatus::Invalid),
                refused: counts.with_status(RunStatus::Refused),
                fallbacks: counts.fallbacks,
                accepted: counts.with_status(RunStatus::Ok),
            }),
            latency_p95_ms,
            input_tokens: sample.iter().map(|s| s.prompt_tokens).collect(),
            output_tokens: sample.iter().map(|s| s.completion_tokens).collect(),
            inputs: sample.into_iter().map(|s| input_text(&s.input)).collect(),
        })
    }

    /// The eval set's expected labels, counted; `None` without a dataset or any string label.
    fn eval_labels(
        &self,
        loaded: &crate::LoadedWorkflow,
    ) -> Result<Option<BTreeMap<String, u64>>, EngineError> {
        let Some(file) = loaded.spec.eval.as_ref().and_then(|e| e.dataset.as_ref()) else {
            return Ok(None);
        };
        let path = self.project.root.join(&file.value);
        let text = std::fs::read_to_string(&path).map_err(EngineError::io(path))?;
        let (cases, _) = parse_dataset(&text, DatasetFormat::from_path(&file.value));
        let mut labels = BTreeMap::new();
        for case in cases {
            if let Value::String(label) = case.expected {
                *labels.entry(label).or_insert(0) += 1;
            }
        }
        Ok((!labels.is_empty()).then_some(labels))
    }
}

/// A stored output's label: the JSON string's value, or the JSON text itself.
fn label_of(stored: &str) -> String {
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::String(label)) => label,
        _ => stored.to_string(),
    }
}

/// The words of an input: its string values, joined (keys are the schema's, not the user's).
fn input_text(stored: &str) -> String {
    fn collect(value: &Value, out: &mut String) {
        match value {
            Value::String(s) => {
                out.push_str(s);
                out.push(' ');
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            Value::Object(map) => map.values().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    match serde_json::from_str::<Value>(stored) {
        Ok(value) => collect(&value, &mut out),
        Err(_) => out.push_str(stored),
    }
    out
}

impl Engine {
    /// The scheduled drift check (`[monitoring] every`): every workflow in pilot or production
    /// is checked at `now_ms`; each that alerts gets a `drift.detected` event on its
    /// `[review] webhook`. The event's id names the workflow, its version and the period of
    /// `every_ms` that `now_ms` falls in, so replicas checking at once send it once, and an
    /// alert that lasts is sent again once a period. Returns each workflow's verdict.
    pub async fn drift_sweep(
        &self,
        now_ms: i64,
        every_ms: i64,
    ) -> Result<Vec<(String, bool)>, EngineError> {
        let mut verdicts = Vec::new();
        for (name, workflow) in &self.project.workflows {
            if !matches!(workflow.spec.stage, Stage::Pilot | Stage::Production) {
                continue;
            }
            let report = self.drift(name, now_ms).await?;
            if report.drift {
                let hook = self.project.config.monitoring.webhook.clone();
                if let Some(hook) = hook.or_else(|| self.webhook(name)) {
                    let alerting: Vec<serde_json::Value> = report
                        .windows
                        .iter()
                        .flat_map(|w| {
                            w.checks
                                .iter()
                                .filter(|c| c.drift)
                                .map(move |c| serde_json::json!({"window": w.name, "check": c}))
                        })
                        .collect();
                    let period = now_ms.div_euclid(every_ms.max(1));
                    let id = format!("drift_{name}_{}_{period}", report.version);
                    let about = crate::webhooks::About {
                        workflow: name,
                        version: &report.version,
                        run_id: None,
                    };
                    let data =
                        serde_json::json!({"alerts": alerting, "reference": report.reference});
                    let event = crate::webhooks::event_about(
                        &hook,
                        id,
                        shopfloor_store::EventKind::DriftDetected,
                        about,
                        data,
                        now_ms,
                    );
                    self.store.enqueue_events(&[event]).await?;
                }
            }
            verdicts.push((name.clone(), report.drift));
        }
        Ok(verdicts)
    }
}
