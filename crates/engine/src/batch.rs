//! Batch runs over a JSONL file of inputs: validated line by line, run with bounded
//! concurrency, recorded as they finish, resumable after a crash.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use shopfloor_store::{BatchRecord, BatchStatus, RunRecord, RunStatus};

use crate::concurrency::run_bounded;
use crate::project::LoadedWorkflow;
use crate::runner::{now_ms, RunOptions};
use crate::{Engine, EngineError};

/// What to run.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub workflow: String,
    pub input: PathBuf,
    pub concurrency: usize,
    pub model_override: Option<String>,
    /// Finish this earlier batch instead of starting a new one.
    pub resume: Option<String>,
    /// Append one JSON line per finished case to this file.
    pub out: Option<PathBuf>,
}

/// Told about a batch's progress (the CLI draws a progress bar with it).
pub trait BatchObserver: Send + Sync {
    /// The batch is about to run `to_run` cases; `already_done` were recorded before (resume).
    fn started(&self, batch_id: &str, resumed: bool, to_run: u64, already_done: u64);
    /// A line of the input was not a valid case; the rest go on.
    fn rejected(&self, line: u64, message: &str);
    /// A case finished and was queued for recording.
    fn finished(&self, run: &RunRecord);
}

/// What a batch did.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub batch_id: String,
    pub resumed: bool,
    /// Cases recorded before this invocation (on resume).
    pub already_done: u64,
    pub rejected: u64,
    pub ok: u64,
    pub invalid: u64,
    pub failed: u64,
    pub refused: u64,
    pub held: u64,
    /// Rejected by a reviewer: never so for a run just made, counted for completeness.
    pub review_rejected: u64,
    /// Latency of each case run now, in milliseconds, sorted.
    pub latencies_ms: Vec<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// Stopped early (Ctrl-C): resumable.
    pub interrupted: bool,
}

impl BatchReport {
    /// The `p`-th percentile latency (0–100) of the cases run now.
    pub fn latency_percentile(&self, p: f64) -> Option<u64> {
        shopfloor_core::stats::percentile(&self.latencies_ms, p)
    }

    fn count(&mut self, run: &RunRecord) {
        match run.status {
            RunStatus::Ok => self.ok += 1,
            RunStatus::Invalid => self.invalid += 1,
            RunStatus::Failed => self.failed += 1,
            RunStatus::Refused => self.refused += 1,
            RunStatus::Held => self.held += 1,
            RunStatus::Rejected => self.review_rejected += 1,
        }
        self.latencies_ms.push(run.latency_ms);
        self.prompt_tokens += run.prompt_tokens;
        self.completion_tokens += run.completion_tokens;
        self.cost_usd += run.cost_usd;
    }
}

/// One valid case of an input file.
#[derive(Debug, Clone)]
pub struct Case {
    /// 1-based line number: the case's identity within its batch.
    pub line: u64,
    pub input: Value,
}

/// An input line that is not a valid case: its 1-based number and why.
pub type Rejected = (u64, String);

/// Read an input file: valid cases, and the lines rejected with why.
pub fn read_cases(
    path: &Path,
    workflow: &LoadedWorkflow,
) -> Result<(Vec<Case>, Vec<Rejected>), EngineError> {
    let bytes = std::fs::read(path).map_err(EngineError::io(path.to_path_buf()))?;
    // Editors on Windows start UTF-8 files with a byte order mark; it is not part of line 1.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut cases = Vec::new();
    let mut rejected = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = i as u64 + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A line that is not UTF-8 is one bad line, not a bad file.
        let line = match std::str::from_utf8(line) {
            Ok(line) => line,
            Err(e) => {
                rejected.push((
                    number,
                    format!("not valid UTF-8 (byte {})", e.valid_up_to() + 1),
                ));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value) => match case_input(value, workflow) {
                Ok(input) => cases.push(Case {
                    line: number,
                    input,
                }),
                Err(message) => rejected.push((number, message)),
            },
            Err(e) => rejected.push((number, format!("not valid JSON: {e}"))),
        }
    }
    Ok((cases, rejected))
}

/// A line is either the input object itself, or a dataset case `{"input": {...}, "expected": …}`.
fn case_input(value: Value, workflow: &LoadedWorkflow) -> Result<Value, String> {
    let declares_input = workflow
        .spec
        .input_schema
        .pointer("/properties/input")
        .is_some();
    let input = match value {
        Value::Object(mut map)
            if !declares_input && map.get("input").is_some_and(Value::is_object) =>
        {
            map.remove("input").unwrap_or(Value::Null)
        }
        other => other,
    };
    validate_input(workflow, &input)?;
    Ok(input)
}

/// Check an input against the workflow's input schema; the message lists what is wrong.
pub fn validate_input(workflow: &LoadedWorkflow, input: &Value) -> Result<(), String> {
    let errors = shopfloor_core::output::schema_problems(&workflow.input_schema, input);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "does not match the input schema of {}: {}",
            workflow.spec.name,
            errors.join("; ")
        ))
    }
}

impl Engine {
    /// Run a batch. `stop` resolving (e.g. Ctrl-C) stops launching cases; those in flight finish
    /// and are recorded, and the batch stays resumable.
    pub async fn run_batch(
        &self,
        request: &BatchRequest,
        observer: &dyn BatchObserver,
        stop: impl Future<Output = ()>,
    ) -> Result<BatchReport, EngineError> {
        let workflow = self.project.workflow(&request.workflow)?;
        if let Some(model) = &request.model_override {
            self.check_model(model)?;
        }
        let (cases, rejected) = read_cases(&request.input, &workflow)?;
        let mut report = BatchReport::default();
        let (batch, done) = match &request.resume {
            Some(id) => self.resume_batch(id, &workflow).await?,
            None => {
                let batch = BatchRecord {
                    id: uuid::Uuid::now_v7().to_string(),
                    workflow: request.workflow.clone(),
                    version: workflow.version.clone(),
                    source: request.input.display().to_string(),
                    total_cases: (cases.len() + rejected.len()) as u64,
                    model_override: request.model_override.clone(),
                    status: BatchStatus::Running,
                    created_at_ms: now_ms(),
                    finished_at_ms: None,
                    caller: None,
                };
                self.store.create_batch(&batch).await?;
                (batch, HashSet::new())
            }
        };
        report.batch_id = batch.id.clone();
        report.resumed = request.resume.is_some();
        let runner = runner_id();
        self.lease_batch(&batch.id, &runner).await?;
        let renewing = {
            let (store, id, runner) = (self.store.clone(), batch.id.clone(), runner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW).await;
                    let until = now_ms() + LEASE_MS;
                    if let Err(e) = store.lease_batch(&id, &runner, now_ms(), until, None).await {
                        tracing::warn!(batch = %id, "renewing the batch's lease failed: {e}");
                    }
                }
            })
        };
        let todo: Vec<Case> = cases
            .into_iter()
            .filter(|c| !done.contains(&c.line))
            .collect();
        report.already_done = done.len() as u64;
        observer.started(
            &batch.id,
            report.resumed,
            todo.len() as u64,
            report.already_done,
        );
        for (line, message) in &rejected {
            observer.rejected(*line, message);
        }
        report.rejected = rejected.len() as u64;

        let mut out = match &request.out {
            Some(path) => Some(open_out(path)?),
            None => None,
        };
        let model_override = request
            .model_override
            .clone()
            .or(batch.model_override.clone());
        let work = |case: Case| {
            let options = RunOptions {
                model_override: model_override.clone(),
                batch: Some((batch.id.clone(), case.line)),
                caller: None,
                evaluation: false,
                experiment: None,
            };
            let workflow = workflow.clone();
            async move { self.runner.run(&workflow, case.input, &options).await }
        };
        let ran = run_bounded(
            todo,
            request.concurrency,
            stop,
            work,
            async |run: RunRecord| {
                report.count(&run);
                observer.finished(&run);
                if let Some(out) = out.as_mut() {
                    write_result(out, &run, request.out.as_deref())?;
                }
                self.record(run).await;
                Ok::<(), EngineError>(())
            },
        )
        .await;
        renewing.abort();
        self.recorder.flush().await;
        if let Err(e) = self.store.release_batch(&batch.id, &runner).await {
            tracing::warn!(batch = %batch.id, "releasing the batch's lease failed: {e}");
        }
        report.interrupted = ran?;
        if let Some(path) = &request.out {
            // One line per recorded case, whatever earlier runs of the batch appended.
            self.rewrite_out(path, &batch.id).await?;
        }
        if !report.interrupted {
            self.store
                .set_batch_status(&batch.id, BatchStatus::Done, now_ms())
                .await?;
        }
        report.latencies_ms.sort_unstable();
        Ok(report)
    }

    /// Take the batch's lease for this process, or say who runs it.
    async fn lease_batch(&self, id: &str, runner: &str) -> Result<(), EngineError> {
        let now = now_ms();
        let mut replacing = None;
        loop {
            match self
                .store
                .lease_batch(id, runner, now, now + LEASE_MS, replacing.as_deref())
                .await?
            {
                None => return Ok(()),
                Some((holder, _)) if replacing.is_none() && gone(&holder) => {
                    replacing = Some(holder);
                }
                Some((holder, until)) => {
                    return Err(EngineError::BatchMismatch(format!(
                        "batch {id} is being run by {holder} (its lease runs to {} UTC); wait for it to finish, or for its lease to end if it stopped",
                        shopfloor_core::calendar::utc_datetime(until)
                    )))
                }
            }
        }
    }

    /// Rewrite `path` from the store: one line per recorded case of the batch, in case order.
    async fn rewrite_out(&self, path: &Path, batch_id: &str) -> Result<(), EngineError> {
        let partial = path.with_file_name(format!(
            ".{}.partial",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("out")
        ));
        let file = std::fs::File::create(&partial).map_err(EngineError::io(partial.clone()))?;
        let mut out = std::io::BufWriter::new(file);
        let mut after = 0;
        loop {
            let page = self.store.batch_runs(batch_id, after, 1_000).await?;
            let Some(last) = page.last() else { break };
            after = last.case_index.unwrap_or(u64::MAX);
            for run in &page {
                write_result(&mut out, run, Some(&partial))?;
            }
        }
        drop(out);
        std::fs::rename(&partial, path).map_err(EngineError::io(path.to_path_buf()))
    }

    async fn resume_batch(
        &self,
        id: &str,
        workflow: &LoadedWorkflow,
    ) -> Result<(BatchRecord, HashSet<u64>), EngineError> {
        let batch = self
            .store
            .get_batch(id)
            .await?
            .ok_or_else(|| EngineError::UnknownBatch(id.to_string()))?;
        if batch.workflow != workflow.spec.name.as_str() {
            return Err(EngineError::BatchMismatch(format!(
                "batch {id} ran workflow \"{}\", not \"{}\"",
                batch.workflow, workflow.spec.name
            )));
        }
        if batch.version != workflow.version {
            return Err(EngineError::BatchMismatch(format!(
                "batch {id} was started with version {} of {}, which is now version {}; resuming would mix two versions in one batch — start a new batch instead",
                batch.version, batch.workflow, workflow.version
            )));
        }
        let done = self
            .store
            .batch_recorded_cases(id)
            .await?
            .into_iter()
            .collect();
        Ok((batch, done))
    }
}

/// How long a batch's lease lasts without renewal, and how often the runner renews it.
const LEASE_MS: i64 = 30_000;
const LEASE_RENEW: std::time::Duration = std::time::Duration::from_secs(10);

/// This process as a batch's runner: `HOST:PID`.
fn runner_id() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether `holder` (`HOST:PID`) is a process of this machine that no longer runs (known only
/// where `/proc` shows processes).
fn gone(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let proc = Path::new("/proc");
    host == host_name()
        && pid.parse::<u32>().is_ok()
        && proc.join("self").exists()
        && !proc.join(pid).exists()
}

fn open_out(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, EngineError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(EngineError::io(path.to_path_buf()))?;
    Ok(std::io::BufWriter::new(file))
}

fn write_result(
    out: &mut impl Write,
    run: &RunRecord,
    path: Option<&Path>,
) -> Result<(), EngineError> {
    let line = json!({
        "case": run.case_index,
        "run_id": run.id,
        "status": run.status.as_str(),
        "output": crate::released_output(run),
        "error": run.error,
        "model": run.model,
        "latency_ms": run.latency_ms,
        "cost_usd": run.cost_usd,
    });
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(EngineError::io(
            path.map(Path::to_path_buf).unwrap_or_default(),
        ))
}
