//! The persistent batch queue that several replicas share: cases claimed with a lease, so that
//! a replica that dies leaves its cases to others.

use std::time::Duration;

use serde_json::Value;
use shopfloor_store::{BatchRecord, BatchStatus, Caller, ClaimedCase, RunRecord};

use crate::audit_detail::{self, AuditDetail};
use crate::batch::validate_input;
use crate::runner::{new_run, now_ms, RunOptions};
use crate::{Engine, EngineError};

/// The `source` of batches submitted through the server.
pub const API_SOURCE: &str = "api";

/// How far a batch has got.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchProgress {
    pub batch: BatchRecord,
    pub total: u64,
    pub recorded: u64,
}

impl BatchProgress {
    /// Every case is recorded.
    pub fn complete(&self) -> bool {
        self.recorded >= self.total
    }
}

impl Engine {
    /// Check every input against the workflow and queue them as one batch, persisted in one
    /// transaction; any replica's worker may run its cases. Nothing is queued when an input
    /// is invalid: the error names each bad one by its 1-based position.
    ///
    /// The batch keeps its caller, so that the worker that runs a case — on any replica —
    /// records the caller on its run, and only the submitter (or a reader of all runs) may read
    /// it. The submission is audited (`batch.submit`, by `actor`).
    pub async fn enqueue_batch(
        &self,
        workflow: &str,
        inputs: Vec<Value>,
        model_override: Option<String>,
        actor: &str,
        caller: Option<Caller>,
    ) -> Result<BatchRecord, EngineError> {
        let loaded = self.project.workflow(workflow)?;
        if let Some(model) = &model_override {
            self.check_model(model)?;
        }
        // The batch, its audit entry and its runs keep the caller as the policy lets the
        // store keep it.
        let caller = match (&self.store_redactor, caller) {
            (Some(redactor), Some(caller)) => Some(redactor.caller(caller)),
            (_, caller) => caller,
        };
        if inputs.is_empty() {
            return Err(EngineError::InvalidInput(
                "a batch needs at least one input".into(),
            ));
        }
        let problems: Vec<String> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, input)| {
                validate_input(&loaded, input)
                    .err()
                    .map(|e| format!("input {}: {e}", i + 1))
            })
            .take(10)
            .collect();
        if !problems.is_empty() {
            return Err(EngineError::InvalidInput(problems.join("; ")));
        }
        let batch = BatchRecord {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: workflow.to_string(),
            version: loaded.version.clone(),
            source: API_SOURCE.to_string(),
            total_cases: inputs.len() as u64,
            model_override,
            status: BatchStatus::Running,
            created_at_ms: now_ms(),
            finished_at_ms: None,
            caller: caller.clone(),
        };
        let detail = AuditDetail::BatchSubmit(audit_detail::BatchSubmit {
            workflow: batch.workflow.clone(),
            version: batch.version.clone(),
            cases: batch.total_cases,
            model_override: batch.model_override.clone(),
            caller: caller.clone(),
        });
        self.audit(actor, &batch.id, detail).await?;
        // The queue is in the database, so it keeps what the policy lets the database keep: under
        // `on_store = "redact"` a case waits, and then runs, with placeholders in its input.
        let cases: Vec<(u64, Value)> = inputs
            .into_iter()
            .enumerate()
            .map(|(i, mut input)| {
                if let Some(redactor) = &self.store_redactor {
                    redactor.json(&mut input);
                }
                (i as u64 + 1, input)
            })
            .collect();
        self.store.enqueue_batch(&batch, &cases).await?;
        Ok(batch)
    }

    /// Lease up to `limit` queued cases to `worker` for `lease`.
    pub async fn claim_cases(
        &self,
        worker: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedCase>, EngineError> {
        let now = now_ms();
        Ok(self
            .store
            .claim_batch_cases(worker, limit, now + lease.as_millis() as i64, now)
            .await?)
    }

    /// Extend every lease `worker` holds by `lease` from now; returns how many it holds.
    pub async fn extend_leases(&self, worker: &str, lease: Duration) -> Result<u64, EngineError> {
        Ok(self
            .store
            .extend_batch_leases(worker, now_ms() + lease.as_millis() as i64)
            .await?)
    }

    /// Run a claimed case and queue its run for recording (which takes it off the queue).
    /// A case whose workflow is gone, or changed since the batch was queued, is recorded as
    /// failed with the reason rather than run on another version.
    pub async fn run_claimed(
        &self,
        case: ClaimedCase,
        batch_version: &str,
        caller: Option<Caller>,
    ) -> RunRecord {
        let options = RunOptions {
            model_override: case.model_override.clone(),
            batch: Some((case.batch_id.clone(), case.case_index)),
            caller: caller.clone(),
            evaluation: false,
            experiment: None,
        };
        let run = match self.project.workflow(&case.workflow) {
            Ok(workflow) if workflow.version == batch_version => {
                self.runner.run(&workflow, case.input, &options).await
            }
            Ok(workflow) => not_run(
                &case.batch_id,
                case.case_index,
                &case.workflow,
                batch_version,
                case.input,
                format!(
                    "the batch was queued for version {batch_version} of {}, but this replica runs version {}; a batch never mixes versions",
                    case.workflow, workflow.version
                ),
            ),
            Err(e) => not_run(
                &case.batch_id,
                case.case_index,
                &case.workflow,
                batch_version,
                case.input,
                e.to_string(),
            ),
        };
        let run = RunRecord {
            caller: run.caller.or(caller),
            ..run
        };
        self.record(run.clone()).await;
        run
    }

    /// Who submitted a batch through the server.
    pub async fn batch_caller(&self, batch_id: &str) -> Result<Option<Caller>, EngineError> {
        Ok(self
            .store
            .get_batch(batch_id)
            .await?
            .ok_or_else(|| EngineError::UnknownBatch(batch_id.to_string()))?
            .caller)
    }

    /// Wait until every run queued so far is written.
    pub async fn flush(&self) {
        self.recorder.flush().await;
    }

    /// A batch and how many of its cases are recorded; marks it done once all are.
    pub async fn batch_progress(&self, batch_id: &str) -> Result<BatchProgress, EngineError> {
        let mut batch = self
            .store
            .get_batch(batch_id)
            .await?
            .ok_or_else(|| EngineError::UnknownBatch(batch_id.to_string()))?;
        let (total, recorded) = self.store.batch_progress(batch_id).await?;
        if recorded >= total && batch.status == BatchStatus::Running {
            let at = now_ms();
            self.store
                .set_batch_status(batch_id, BatchStatus::Done, at)
                .await?;
            batch.status = BatchStatus::Done;
            batch.finished_at_ms = Some(at);
        }
        Ok(BatchProgress {
            batch,
            total,
            recorded,
        })
    }
}

/// The record of a case that was not run, so that it leaves the queue with its reason.
fn not_run(
    batch_id: &str,
    case_index: u64,
    workflow: &str,
    version: &str,
    input: Value,
    error: String,
) -> RunRecord {
    RunRecord {
        error: Some(error),
        ..new_run(
            shopfloor_store::RunOrigin::Batch,
            workflow,
            version,
            input,
            Some((batch_id.to_string(), case_index)),
            None,
        )
    }
}
