//! One run of a workflow on one input: what the workflow API (`POST /v1/workflows/{name}/runs`)
//! and the CLI's `shopfloor run --json` start. Batches, evals and the batch queue run their
//! cases through the same [`crate::runner::Runner`].

use serde_json::Value;
use shopfloor_store::{Caller, RunRecord};

use crate::batch::validate_input;
use crate::runner::RunOptions;
use crate::{Engine, EngineError};

impl Engine {
    /// Run a workflow on one input and queue the run for recording (the store is not waited
    /// for). The caller gets the whole record, unredacted.
    ///
    /// When the workflow has a running experiment, the run goes to the arm that `subject`
    /// (the caller's end user, or the input field the experiment names) hashes to; without
    /// either, the run draws its own.
    pub async fn run_workflow(
        &self,
        workflow: &str,
        input: Value,
        model_override: Option<String>,
        caller: Option<Caller>,
        subject: Option<&str>,
    ) -> Result<RunRecord, EngineError> {
        let workflow = self.project.workflow(workflow)?;
        if let Some(model) = &model_override {
            self.check_model(model)?;
        }
        validate_input(&workflow, &input).map_err(EngineError::InvalidInput)?;
        let (workflow, experiment, check_guardrails) = self
            .arm_for(workflow, &input, subject, model_override.is_some())
            .await;
        let options = RunOptions {
            model_override,
            batch: None,
            caller,
            evaluation: false,
            experiment,
        };
        let run = self.runner.run(&workflow, input, &options).await;
        self.record(run.clone()).await;
        if let Some(live) = check_guardrails {
            self.check_guardrails_now(&live).await;
        }
        Ok(run)
    }

    /// Run a workflow on one input and wait until the run is recorded.
    pub async fn run_one(
        &self,
        workflow: &str,
        input: Value,
        model_override: Option<String>,
    ) -> Result<RunRecord, EngineError> {
        let run = self
            .run_workflow(workflow, input, model_override, None, None)
            .await?;
        self.recorder.flush().await;
        Ok(run)
    }
}
