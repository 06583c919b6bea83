//! Eval runs: a workflow version scored against a dataset with known answers, stored case by
//! case, compared with the workflow's baseline and judged by its gates.

mod aggregate;

use std::future::Future;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use shopfloor_core::dataset::{parse_dataset, DatasetCase, DatasetFormat};
use shopfloor_core::scorers::{
    parse_judge_verdict, CaseFacts, CaseScores, Score, Scorer, JUDGE_SCORER,
};
use shopfloor_core::spec::JudgeSpec;
use shopfloor_providers::{Message, Role};
use shopfloor_store::{EvalCaseRecord, EvalRecord, EvalStatus};

pub use aggregate::{
    BaselineComparison, EvalSummary, ExampleCounts, GateKind, GateResult, ScoreDelta, ScoreSummary,
    WorstCase,
};

use crate::batch::validate_input;
use crate::concurrency::run_bounded;
use crate::project::LoadedWorkflow;
use crate::runner::{now_ms, RunOptions};
use crate::{Engine, EngineError};

/// A scorer of an eval: pure (in core) or a model acting as judge.
#[derive(Debug, Clone)]
enum EvalScorer {
    Pure(Scorer),
    Judge(JudgeSpec),
}

impl EvalScorer {
    fn metric(&self) -> aggregate::Metric {
        match self {
            EvalScorer::Pure(s) => aggregate::Metric {
                name: s.name().to_string(),
                higher_is_better: s.higher_is_better(),
            },
            EvalScorer::Judge(_) => aggregate::Metric {
                name: JUDGE_SCORER.to_string(),
                higher_is_better: true,
            },
        }
    }
}

/// The judge's answer is short JSON; anything longer is not a verdict.
const JUDGE_MAX_TOKENS: u32 = 256;

/// Case results written to the store per transaction.
const FLUSH_CASES: usize = 256;
/// Baseline cases read per page when comparing.
const PAGE: u32 = 2000;

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalRequest {
    pub workflow: String,
    /// Default: the workflow's `[eval] dataset`.
    pub dataset: Option<PathBuf>,
    pub model_override: Option<String>,
    pub concurrency: usize,
    /// Only the first N cases.
    pub limit: Option<usize>,
    /// Call the model even when an answer for this version and input is stored.
    pub no_cache: bool,
    /// Run the valid cases of a dataset that has invalid ones.
    pub skip_invalid: bool,
    /// Examples other than the workflow's own, to see what they change: evaluated as the
    /// version of the workflow they make.
    pub examples: ExamplesSetting,
    /// Compare with this eval (its cases, paired by id) instead of the workflow's baseline.
    pub compare_with: Option<String>,
    /// Evaluate this `[variants.NAME]` of the workflow (its own version) instead of the
    /// workflow itself.
    pub variant: Option<String>,
}

/// Which examples an eval shows the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExamplesSetting {
    /// As the workflow's `[prompt] examples` says.
    #[default]
    AsConfigured,
    /// None at all.
    Without,
    /// The `k` most similar: from the workflow's examples file, else its eval dataset (an
    /// eval never shows a case itself).
    Similar(usize),
}

/// Told about an eval's progress.
pub trait EvalObserver: Send + Sync {
    /// About to run `cases` cases; `skipped` invalid lines were left out (with --skip-invalid).
    fn started(&self, eval_id: &str, cases: u64, skipped: u64);
    /// A case was scored.
    fn finished(&self, case: &EvalCaseRecord);
}

/// No observer: an eval run for its result alone.
impl EvalObserver for () {
    fn started(&self, _: &str, _: u64, _: u64) {}
    fn finished(&self, _: &EvalCaseRecord) {}
}

/// The SHA-256 of a value's canonical JSON: the eval cache key's half.
pub fn input_hash(input: &Value) -> String {
    hex::encode(Sha256::digest(
        shopfloor_core::canonical_json(input).as_bytes(),
    ))
}

impl Engine {
    /// Run an eval. `stop` resolving stops launching cases; the eval is then stored as cancelled.
    pub async fn run_eval(
        &self,
        request: &EvalRequest,
        observer: &dyn EvalObserver,
        stop: impl Future<Output = ()>,
    ) -> Result<EvalSummary, EngineError> {
        let workflow = self.workflow_for_eval(request)?;
        if let Some(id) = &request.compare_with {
            if self.store.get_eval(id).await?.is_none() {
                return Err(EngineError::UnknownEval(id.clone()));
            }
        }
        if let Some(model) = &request.model_override {
            self.check_model(model)?;
        }
        let spec = workflow.spec.eval.as_ref();
        let scorers = scorers_for(&workflow)?;
        let (relative, path) = self.dataset_path(&workflow, request.dataset.as_deref())?;
        let bytes = std::fs::read(&path).map_err(EngineError::io(path.clone()))?;
        let text = String::from_utf8_lossy(&bytes);
        let (mut cases, bad) = load_cases(&text, &relative, &workflow);
        if !bad.is_empty() && !request.skip_invalid {
            return Err(EngineError::InvalidDataset(bad));
        }
        // A case from a rejected review waits for a person to write its answer.
        let before = cases.len();
        cases.retain(|c| !c.expected.is_null());
        let unanswered = (before - cases.len()) as u64;
        if let Some(min) = spec.and_then(|e| e.min_cases) {
            if (cases.len() as u64) < min && request.dataset.is_none() {
                return Err(EngineError::InvalidField {
                    field: "dataset",
                    message: format!(
                        "{relative} has {} answered case(s); this workflow asks for at least \
                         {min} before its first eval ([eval] min_cases): add known-good cases of \
                         your own, one JSON object per line with its input and expected output",
                        cases.len()
                    ),
                });
            }
        }
        // A limit that leaves cases out makes the eval partial: it proves no gate.
        let case_limit = request
            .limit
            .filter(|&limit| limit < cases.len())
            .map(|limit| limit as u64);
        if let Some(limit) = request.limit {
            cases.truncate(limit);
        }
        let eval = EvalRecord {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: request.workflow.clone(),
            version: workflow.version.clone(),
            dataset: relative.clone(),
            dataset_hash: hex::encode(Sha256::digest(&bytes)),
            model_override: request.model_override.clone(),
            status: EvalStatus::Running,
            total_cases: cases.len() as u64,
            summary: None,
            passed: None,
            created_at_ms: now_ms(),
            finished_at_ms: None,
            case_limit,
        };
        self.store.create_eval(&eval).await?;
        observer.started(&eval.id, cases.len() as u64, bad.len() as u64);

        let use_cache = !request.no_cache && workflow.spec.route.temperature == 0.0;
        let metrics: Vec<aggregate::Metric> = scorers.iter().map(EvalScorer::metric).collect();
        let mut acc = aggregate::Accumulator::new(&metrics);
        let mut buffer = Vec::with_capacity(FLUSH_CASES);
        let interrupted = run_bounded(
            cases,
            request.concurrency,
            stop,
            |case| self.eval_case(&workflow, &eval, &scorers, case, use_cache),
            async |result: Result<(EvalCaseRecord, Option<usize>), EngineError>| {
                let (mut record, shown) = result?;
                acc.add(&record)?;
                if let Some(shown) = shown.filter(|_| workflow.examples.is_some()) {
                    acc.examples_shown(shown);
                }
                observer.finished(&record);
                if let Some(redactor) = &self.store_redactor {
                    redactor.eval_case(&mut record);
                }
                buffer.push(record);
                if buffer.len() >= FLUSH_CASES {
                    self.store.insert_eval_cases(&buffer).await?;
                    buffer.clear();
                }
                Ok::<(), EngineError>(())
            },
        )
        .await?;
        self.store.insert_eval_cases(&buffer).await?;
        self.recorder.flush().await;

        let baseline = self
            .compare_with_baseline(&workflow, &eval.id, request.compare_with.as_deref(), &acc)
            .await?;
        let scores = acc.scores();
        let gates = aggregate::gates(spec, &scores, baseline.as_ref());
        let passed = gates.iter().all(|g| g.passed) && !interrupted;
        let latencies = acc.latency_percentiles(&[50.0, 95.0]);
        let summary = EvalSummary {
            eval_id: eval.id.clone(),
            workflow: eval.workflow.clone(),
            version: eval.version.clone(),
            dataset: relative,
            model_override: eval.model_override.clone(),
            cases: acc.cases,
            cached_cases: acc.cached,
            scores,
            invalid: acc.invalid,
            failed: acc.failed,
            invalid_rate: if acc.cases == 0 {
                0.0
            } else {
                acc.invalid as f64 / acc.cases as f64
            },
            invalid_rate_ci: shopfloor_core::stats::wilson_interval(
                acc.invalid,
                acc.cases,
                shopfloor_core::stats::Z_95,
            ),
            latency_p50_ms: latencies[0],
            latency_p95_ms: latencies[1],
            prompt_tokens: acc.prompt_tokens,
            completion_tokens: acc.completion_tokens,
            cost_usd: acc.cost_usd,
            labels: acc.label_report(),
            worst: acc.worst(),
            gates,
            baseline,
            passed,
            judge_errors: acc.judge_errors,
            judge_cost_usd: acc.judge_cost_usd,
            interrupted,
            review_slice: acc.review_slice(),
            unanswered_cases: unanswered,
            examples: acc.examples,
        };
        let status = if interrupted {
            EvalStatus::Cancelled
        } else {
            EvalStatus::Done
        };
        let mut summary_json = serde_json::to_value(&summary).unwrap_or(Value::Null);
        if let Some(redactor) = &self.store_redactor {
            // The worst cases quote outputs: the stored summary follows the store policy too.
            redactor.json(&mut summary_json);
        }
        let verdict = spec
            .filter(|s| !s.gate.is_empty() || !s.max_regression.is_empty())
            .map(|_| passed);
        self.store
            .finish_eval(&eval.id, status, &summary_json, verdict, now_ms())
            .await?;
        Ok(summary)
    }

    /// Run (or reuse from the cache) one case and score it.
    async fn eval_case(
        &self,
        workflow: &LoadedWorkflow,
        eval: &EvalRecord,
        scorers: &[EvalScorer],
        case: DatasetCase,
        use_cache: bool,
    ) -> Result<(EvalCaseRecord, Option<usize>), EngineError> {
        let hash = input_hash(&case.input);
        // Kept only when a judge needs to read it.
        let case_input = scorers
            .iter()
            .any(|s| matches!(s, EvalScorer::Judge(_)))
            .then(|| case.input.clone());
        if use_cache {
            let cached = self
                .store
                .cached_eval_case(
                    &eval.workflow,
                    &eval.version,
                    eval.model_override.as_deref(),
                    &hash,
                )
                .await?;
            if let Some(hit) = cached {
                let mut record = EvalCaseRecord {
                    eval_id: eval.id.clone(),
                    case_id: case.id,
                    line: case.line,
                    expected: case.expected,
                    tags: case.tags,
                    cached: true,
                    ..hit
                };
                record.scores = self
                    .score_all(workflow, scorers, &record, &case_input_of(&case_input))
                    .await;
                // What a reused answer was shown is in its run, not read back here.
                return Ok((record, None));
            }
        }
        let options = RunOptions {
            model_override: eval.model_override.clone(),
            batch: Some((eval.id.clone(), case.line)),
            caller: None,
            evaluation: true,
            experiment: None,
        };
        let run = self.runner.run(workflow, case.input, &options).await;
        let mut record = EvalCaseRecord {
            eval_id: eval.id.clone(),
            case_id: case.id,
            line: case.line,
            run_id: run.id.clone(),
            input_hash: hash,
            status: run.status,
            output: run.output.clone(),
            raw_output: run.raw_output.clone(),
            expected: case.expected,
            scores: CaseScores::new(),
            tags: case.tags,
            latency_ms: run.latency_ms,
            cost_usd: run.cost_usd,
            prompt_tokens: run.prompt_tokens,
            completion_tokens: run.completion_tokens,
            cached: false,
        };
        record.scores = self
            .score_all(workflow, scorers, &record, &case_input_of(&case_input))
            .await;
        // The examples the run was given, by id in its recorded prompt (none: 0).
        let shown = run
            .prompt
            .get("examples")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        self.record(run).await;
        Ok((record, Some(shown)))
    }

    /// Every scorer's verdict on one case, keyed by scorer name.
    async fn score_all(
        &self,
        workflow: &LoadedWorkflow,
        scorers: &[EvalScorer],
        record: &EvalCaseRecord,
        input: &Value,
    ) -> CaseScores {
        let facts = CaseFacts {
            output: record.output.as_ref(),
            raw_output: record.raw_output.as_deref(),
            expected: &record.expected,
            latency_ms: record.latency_ms,
            cost_usd: record.cost_usd,
        };
        let mut scores = CaseScores::new();
        for scorer in scorers {
            let score = match scorer {
                EvalScorer::Pure(s) => s.score(&facts),
                EvalScorer::Judge(judge) => self.judge(workflow, judge, record, input).await,
            };
            scores.insert(scorer.metric().name, score);
        }
        scores
    }

    /// Ask the judge model; an unparseable verdict or a failed call is an error, never a pass.
    async fn judge(
        &self,
        workflow: &LoadedWorkflow,
        judge: &JudgeSpec,
        record: &EvalCaseRecord,
        input: &Value,
    ) -> Score {
        let (low, high) = judge.scale.bounds();
        let output = match (&record.output, &record.raw_output) {
            (Some(o), _) => o.to_string(),
            (None, Some(raw)) => raw.clone(),
            (None, None) => return Score::binary(false, Some("no output to judge".into())),
        };
        let messages = vec![
            Message::new(
                Role::System,
                format!(
                    "You are a strict evaluator. Grade the OUTPUT against the RUBRIC, using the INPUT and the EXPECTED answer as reference. \
                     Reply with only a JSON object: {{\"score\": <number from {low} to {high}>, \"pass\": <true or false>, \"reason\": \"<one sentence>\"}}."
                ),
            ),
            Message::new(
                Role::User,
                format!("RUBRIC:\n{}\n\nINPUT:\n{input}\n\nEXPECTED:\n{}\n\nOUTPUT:\n{output}", judge.rubric, record.expected),
            ),
        ];
        let budget = crate::CallBudget {
            timeout: std::time::Duration::from_millis(workflow.spec.route.timeout_ms),
            retries: workflow.spec.route.retries,
        };
        match self
            .runner
            .ask(
                &judge.model.value,
                workflow.spec.data_class,
                messages,
                JUDGE_MAX_TOKENS,
                budget,
            )
            .await
        {
            Ok(answer) => match parse_judge_verdict(&answer.text, judge.scale) {
                Ok(verdict) => Score::judged(verdict, answer.cost_usd),
                Err(e) => Score::judge_error(
                    format!("judge error: unparseable verdict: {e}"),
                    answer.cost_usd,
                ),
            },
            Err(e) => Score::judge_error(format!("judge error: {e}"), 0.0),
        }
    }

    fn dataset_path(
        &self,
        workflow: &LoadedWorkflow,
        given: Option<&Path>,
    ) -> Result<(String, PathBuf), EngineError> {
        let relative = match given {
            Some(p) => p.display().to_string(),
            None => workflow
                .spec
                .eval
                .as_ref()
                .and_then(|e| e.dataset.as_ref())
                .map(|d| d.value.clone())
                .ok_or_else(|| EngineError::NoDataset(workflow.spec.name.to_string()))?,
        };
        let path = self.project.root.join(&relative);
        if !path.is_file() {
            return Err(EngineError::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "dataset file not found"),
            });
        }
        Ok((relative, path))
    }

    /// The workflow an eval runs: as loaded, or with the examples `request` asks for.
    pub(crate) fn workflow_for_eval(
        &self,
        request: &EvalRequest,
    ) -> Result<std::sync::Arc<LoadedWorkflow>, EngineError> {
        let name = request.workflow.as_str();
        let mut spec = match (&request.variant, request.examples) {
            (None, ExamplesSetting::AsConfigured) => return self.project.workflow(name),
            (None, _) => self.project.workflow(name)?.spec.clone(),
            (Some(variant), _) => self.project.variant_spec(name, variant)?,
        };
        match request.examples {
            ExamplesSetting::AsConfigured => {}
            ExamplesSetting::Without => spec.prompt.examples = None,
            ExamplesSetting::Similar(k) => {
                let from = match &spec.prompt.examples {
                    Some(examples) => examples.from.clone(),
                    None => spec
                        .eval
                        .as_ref()
                        .and_then(|e| e.dataset.clone())
                        .ok_or_else(|| EngineError::NoDataset(name.to_string()))?,
                };
                spec.prompt.examples = Some(shopfloor_core::spec::ExamplesSpec {
                    from,
                    k,
                    select: shopfloor_core::spec::ExampleSelect::Similar,
                });
            }
        }
        self.project.compile(spec)
    }

    async fn compare_with_baseline(
        &self,
        workflow: &LoadedWorkflow,
        eval_id: &str,
        compare_with: Option<&str>,
        acc: &aggregate::Accumulator,
    ) -> Result<Option<BaselineComparison>, EngineError> {
        let baseline_id = match compare_with {
            // Checked to exist before the eval began.
            Some(id) => id.to_string(),
            None => match self.store.baseline(workflow.spec.name.as_str()).await? {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        if baseline_id == eval_id {
            return Ok(None);
        }
        let Some(baseline) = self.store.get_eval(&baseline_id).await? else {
            return Ok(None);
        };
        let cases = self.records.all_eval_cases(&baseline_id).await?;
        Ok(Some(acc.compare(&baseline_id, &baseline.version, &cases)))
    }
}

impl crate::Records {
    /// Every case result of an eval, read page by page (no engine or project needed).
    pub async fn all_eval_cases(&self, eval_id: &str) -> Result<Vec<EvalCaseRecord>, EngineError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store().eval_cases(eval_id, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.line;
            let full = page.len() == PAGE as usize;
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }
}

fn case_input_of(input: &Option<Value>) -> Value {
    // Only read by a judge; without one nothing is cloned.
    input.clone().unwrap_or(Value::Null)
}

/// The workflow's scorers, budgets taken from its gates.
fn scorers_for(workflow: &LoadedWorkflow) -> Result<Vec<EvalScorer>, EngineError> {
    let Some(spec) = &workflow.spec.eval else {
        return Err(EngineError::NoDataset(workflow.spec.name.to_string()));
    };
    let names: Vec<&str> = if spec.scorers.is_empty() {
        vec![default_scorer(workflow)]
    } else {
        spec.scorers.iter().map(String::as_str).collect()
    };
    names
        .into_iter()
        .map(|name| {
            if name == JUDGE_SCORER {
                return spec.judge.clone().map(EvalScorer::Judge).ok_or_else(|| {
                    EngineError::InvalidProject(vec![shopfloor_core::Diagnostic::new(
                        &workflow.spec.file,
                        None,
                        "eval.judge",
                        "llm_judge needs judge = { model = \"NAME\", rubric = \"…\" }",
                    )])
                });
            }
            let scorer = Scorer::parse(name).map_err(|m| {
                EngineError::InvalidProject(vec![shopfloor_core::Diagnostic::new(
                    &workflow.spec.file,
                    None,
                    "eval.scorers",
                    m,
                )])
            })?;
            let gate = spec.gate.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
            Ok(EvalScorer::Pure(match gate {
                Some(g) => scorer.with_gate(g),
                None => scorer,
            }))
        })
        .collect()
}

fn default_scorer(workflow: &LoadedWorkflow) -> &'static str {
    match workflow.spec.output.contract {
        shopfloor_core::spec::OutputContract::Labels(_) => "label_accuracy",
        shopfloor_core::spec::OutputContract::Json(_) => "json_match",
        shopfloor_core::spec::OutputContract::Text { .. } => "similarity",
    }
}

/// Parse a dataset and check every input against the workflow's schema.
fn load_cases(
    text: &str,
    file: &str,
    workflow: &LoadedWorkflow,
) -> (Vec<DatasetCase>, Vec<String>) {
    let (cases, bad) = parse_dataset(text, DatasetFormat::from_path(file));
    let mut problems: Vec<(u64, String)> = bad.into_iter().map(|b| (b.line, b.message)).collect();
    let mut valid = Vec::with_capacity(cases.len());
    for case in cases {
        match validate_input(workflow, &case.input) {
            Ok(()) => valid.push(case),
            Err(message) => problems.push((case.line, format!("input {message}"))),
        }
    }
    problems.sort_by_key(|(line, _)| *line);
    (
        valid,
        problems
            .into_iter()
            .map(|(line, m)| format!("{file}:{line}: {m}"))
            .collect(),
    )
}
