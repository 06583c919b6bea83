//! One run of a workflow on one input: render → route (retries, timeouts, fallbacks) →
//! parse and validate → a [`RunRecord`] that says everything that happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shopfloor_core::pii::{restore, Redactions};
use shopfloor_core::review::{entry_reason, holds_invalid, ReviewReason};
use shopfloor_core::spec::{DataClass, ModelSpec, OutputContract, ProjectConfig};
use shopfloor_core::template::RenderedPrompt;
use shopfloor_providers::{ChatExtras, ChatRequest, Message, Provider, ResponseFormat, Role};
use shopfloor_store::{ErrorKind, ReviewTicket, RunOrigin, RunRecord, RunStatus};
use tracing::Instrument;

use crate::attempt::{self, Attempts, CallFailure, Ending, RetryPolicy, Route};
use crate::models::ModelPool;
use crate::outbound::Guard;
use crate::pipeline::{Complete, Ready};
use crate::project::LoadedWorkflow;
use crate::trace;

/// Where a run belongs and which model to force.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Use only this model (a name from `shopfloor.toml`) instead of the workflow's route.
    pub model_override: Option<String>,
    /// The batch and 1-based case number, for batch runs.
    pub batch: Option<(String, u64)>,
    /// Who asked for the run (through the server).
    pub caller: Option<shopfloor_store::Caller>,
    /// A run of an eval: its output is held as any other, but never queued for review.
    pub evaluation: bool,
    /// The experiment and arm the run is in, when its workflow has one running.
    pub experiment: Option<shopfloor_store::ExperimentArm>,
}

/// Runs workflows against the project's models.
pub struct Runner {
    pub(crate) config: Arc<ProjectConfig>,
    pub(crate) models: Arc<ModelPool>,
    pub(crate) retry: RetryPolicy,
}

impl Runner {
    pub fn new(config: Arc<ProjectConfig>, models: Arc<ModelPool>, retry: RetryPolicy) -> Self {
        Self {
            config,
            models,
            retry,
        }
    }

    /// The outbound policy (data classes, personal data) of this project.
    pub(crate) fn guard(&self) -> Guard<'_> {
        Guard {
            config: &self.config,
        }
    }

    /// Run `workflow` on `input` (already validated against the input schema). Never fails:
    /// every outcome, including refusals and provider errors, is a record.
    pub async fn run(
        &self,
        workflow: &LoadedWorkflow,
        input: Value,
        options: &RunOptions,
    ) -> RunRecord {
        let started = Instant::now();
        let origin = match (options.evaluation, &options.batch) {
            (true, _) => RunOrigin::Eval,
            (false, Some(_)) => RunOrigin::Batch,
            (false, None) => RunOrigin::Run,
        };
        let mut run = new_run(
            origin,
            workflow.spec.name.as_str(),
            &workflow.version,
            input,
            options.batch.clone(),
            options.caller.clone(),
        );
        run.experiment = options.experiment.clone();
        let span = trace::run_span(workflow.spec.name.as_str());
        match render_prompt(workflow, &run.input, options.evaluation).await {
            Ok(prompt) => {
                run.prompt = prompt_json(&prompt);
                self.route(workflow, &prompt, options, &mut run)
                    .instrument(span.clone())
                    .await;
            }
            Err(e) => run.error = Some(e),
        }
        attempt::finish_totals(&mut run, started);
        apply_review_policy(workflow, &mut run, !options.evaluation);
        trace::record_run(&span, &run);
        run
    }

    /// Try each routed model in order until one answers.
    async fn route(
        &self,
        workflow: &LoadedWorkflow,
        prompt: &RenderedPrompt,
        options: &RunOptions,
        run: &mut RunRecord,
    ) {
        let names: Vec<&str> = match &options.model_override {
            Some(name) => vec![name.as_str()],
            None => workflow
                .spec
                .route
                .models
                .iter()
                .map(|m| m.value.as_str())
                .collect(),
        };
        let mut route = Route::default();
        // One mapping per run: the same value gets the same placeholder in every message and
        // every attempt, and exists only in memory for this run.
        let mut redactions = Redactions::new();
        for name in names {
            let spec = match self.spec(name) {
                Ok(spec) => spec,
                Err(unknown) => {
                    route.failed(unknown);
                    continue;
                }
            };
            match self
                .try_model(workflow, prompt, spec, run, &mut redactions)
                .await
            {
                Ok(()) => return,
                Err(failure) => route.failed(failure),
            }
        }
        let failure = route.failure();
        run.status = match failure.kind {
            ErrorKind::Refused => RunStatus::Refused,
            _ => RunStatus::Failed,
        };
        run.error = Some(failure.message);
    }

    /// Attempts at one model, with retries and one re-ask after an invalid answer. `Ok` when
    /// the run is settled (valid or invalid output); `Err` when the next model should be tried.
    async fn try_model(
        &self,
        workflow: &LoadedWorkflow,
        prompt: &RenderedPrompt,
        spec: &ModelSpec,
        run: &mut RunRecord,
        redactions: &mut Redactions,
    ) -> Result<(), CallFailure> {
        let route = &workflow.spec.route;
        let request = ChatRequest {
            messages: messages(prompt),
            max_tokens: route.max_tokens,
            temperature: Some(route.temperature),
            top_p: route.top_p,
            seed: route.seed,
            assistant_prefix: prompt.assistant_prefix.clone(),
            ..ChatRequest::default()
        };
        let mut model = self
            .clear(
                spec,
                workflow.spec.data_class,
                request,
                redactions,
                &mut run.attempts,
            )?
            .connect(&self.models, &mut run.attempts)?;
        fit(workflow, &mut model);
        let timeout = Duration::from_millis(route.timeout_ms);
        let mut attempts = Attempts::new(spec, timeout, route.retries, self.retry);
        let mut asked_again = false;
        loop {
            let answer = model
                .send::<Complete>(&mut attempts, &mut run.attempts)
                .await?;
            let mut response = answer.value;
            // The model saw placeholders; the caller gets the originals back.
            let sent_back = response.text.clone();
            if model.redacting {
                response.text = restore(&response.text, redactions);
            }
            let parsed = workflow.output.parse(&response.text);
            run.attempts.push(attempt::answered(
                run.attempts.len(),
                spec,
                answer.started_at_ms,
                answer.latency,
                response.usage.unwrap_or_default(),
                &response.text,
                match &parsed {
                    Ok(_) => Ending::Valid,
                    Err(problem) => Ending::Invalid(problem),
                },
            ));
            run.model = Some(spec.name.clone());
            run.raw_output = Some(response.text);
            match parsed {
                Ok(output) => {
                    run.output = Some(output);
                    run.confidence = response.choice_probability;
                    run.status = RunStatus::Ok;
                    run.error = None;
                    return Ok(());
                }
                Err(problem) if workflow.spec.output.retry_on_invalid && !asked_again => {
                    asked_again = true;
                    let mut problem = correction(problem.for_model());
                    if model.redacting {
                        // The problem quotes the restored answer: redact it again.
                        problem = self.guard().redact_more(&problem, redactions);
                    }
                    let messages = &mut model.request.messages;
                    messages.push(Message::new(Role::Assistant, sent_back));
                    messages.push(Message::new(Role::User, problem));
                }
                Err(problem) => {
                    run.status = RunStatus::Invalid;
                    run.error = Some(problem.to_string());
                    return Ok(());
                }
            }
        }
    }
}

/// Fit the request to what the model's provider can do: an assistant prefix only where it is
/// honoured, decoding constrained to the labels or the output schema where it can be.
fn fit(workflow: &LoadedWorkflow, model: &mut Ready<'_>) {
    let capabilities = model.provider.capabilities();
    let request = &mut model.request;
    if !capabilities.assistant_prefix {
        request.assistant_prefix = None;
    }
    if workflow.spec.output.constrained && capabilities.constrained_choice {
        request.choices = workflow.output.labels().map(<[String]>::to_vec);
    }
    if workflow.spec.output.constrained && capabilities.constrained_json {
        if let OutputContract::Json(schema) = &workflow.spec.output.contract {
            constrain_json(request, workflow, schema, &*model.provider);
        }
    }
}

/// Ask `provider` for JSON decoded under `schema`. A schema the provider cannot enforce
/// leaves the request as it was: the answer is then free text, validated as before
/// (`shopfloor check` warns about such a workflow).
fn constrain_json(
    request: &mut ChatRequest,
    workflow: &LoadedWorkflow,
    schema: &Value,
    provider: &dyn Provider,
) {
    request.extras = Some(Box::new(ChatExtras {
        response_format: Some(ResponseFormat::JsonSchema {
            name: workflow.spec.name.to_string(),
            description: None,
            schema: Some(schema.clone()),
            strict: Some(true),
        }),
        ..ChatExtras::default()
    }));
    if let Some(unsupported) = provider.unsupported(request) {
        tracing::warn!(
            workflow = %workflow.spec.name,
            reason = %unsupported.reason,
            "the output schema is not enforced while decoding"
        );
        request.extras = None;
    }
}

/// The review path (`shopfloor_core::review::entry_reason`): a high-risk output, one with a
/// held label or one below the confidence threshold is held until a reviewer decides; a
/// medium-risk output is released and, at `[review] sample_rate` (decided by the run id),
/// queued for a look after. An answer that broke the contract is held too where the workflow
/// holds outputs at all (`holds_invalid`). An eval's runs are held alike but never queued:
/// nobody reviews a test set's answers.
fn apply_review_policy(workflow: &LoadedWorkflow, run: &mut RunRecord, queue: bool) {
    let spec = &workflow.spec.review;
    let reason = match (run.status, &run.output) {
        (RunStatus::Ok, Some(output)) => {
            entry_reason(spec, workflow.spec.risk, &run.id, output, run.confidence)
        }
        // An answer that broke the contract, where outputs are held: a person corrects or
        // rejects it. Only for runs that can be queued: an eval's invalid answers stay invalid.
        (RunStatus::Invalid, _) if queue && holds_invalid(spec, workflow.spec.risk) => {
            Some(ReviewReason::InvalidOutput)
        }
        _ => None,
    };
    let Some(reason) = reason else {
        return;
    };
    if reason.holds() {
        run.status = RunStatus::Held;
    } else {
        run.sampled_for_review = true;
    }
    if queue {
        run.review = Some(ReviewTicket {
            reason,
            approvals_required: if reason.holds() {
                spec.approvals_required
            } else {
                1
            },
            due_at_ms: spec
                .sla_minutes
                .map(|minutes| run.created_at_ms + i64::from(minutes) * 60_000),
        });
    }
}

/// A run that has produced nothing yet: failed, with no attempts, until one settles it.
pub(crate) fn new_run(
    origin: RunOrigin,
    workflow: &str,
    version: &str,
    input: Value,
    batch: Option<(String, u64)>,
    caller: Option<shopfloor_store::Caller>,
) -> RunRecord {
    let (batch_id, case_index) = batch.unzip();
    RunRecord {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: workflow.to_string(),
        version: version.to_string(),
        batch_id,
        case_index,
        status: RunStatus::Failed,
        input,
        prompt: Value::Null,
        raw_output: None,
        output: None,
        error: None,
        model: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 0.0,
        latency_ms: 0,
        created_at_ms: now_ms(),
        attempts: Vec::new(),
        caller,
        sampled_for_review: false,
        confidence: None,
        review: None,
        origin,
        experiment: None,
    }
}

/// A model's answer to a one-off request (not a workflow run), e.g. an eval judge.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

impl Runner {
    /// Ask one model (a name from `shopfloor.toml`) about data of `data_class`, under the same
    /// policy (data classes, PII) and attempt loop as workflow runs.
    pub async fn ask(
        &self,
        model: &str,
        data_class: DataClass,
        messages: Vec<Message>,
        max_tokens: u32,
        budget: CallBudget,
    ) -> Result<Answer, CallFailure> {
        let spec = self.spec(model)?;
        let request = ChatRequest {
            messages,
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            ..ChatRequest::default()
        };
        // Nothing here is a run's: what was tried is not kept. The answer is a verdict about
        // the text, not the text: nothing to restore.
        let log = &mut Vec::new();
        let ready = self
            .clear(spec, data_class, request, &mut Redactions::new(), log)?
            .connect(&self.models, log)?;
        let mut attempts = Attempts::new(spec, budget.timeout, budget.retries, self.retry);
        let response = ready.send::<Complete>(&mut attempts, log).await?.value;
        let usage = response.usage.unwrap_or_default();
        let prompt_tokens = u64::from(usage.prompt_tokens);
        let completion_tokens = u64::from(usage.completion_tokens);
        Ok(Answer {
            text: response.text,
            prompt_tokens,
            completion_tokens,
            cost_usd: spec.price.cost(prompt_tokens, completion_tokens),
        })
    }
}

/// How long one call may take, and how many times a retryable failure is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBudget {
    pub timeout: Duration,
    pub retries: u32,
}

/// The prompt for `input`, with the examples `[prompt] examples` chooses for it (never the
/// input itself in an `evaluation`), or why there is none.
async fn render_prompt(
    workflow: &LoadedWorkflow,
    input: &Value,
    evaluation: bool,
) -> Result<RenderedPrompt, String> {
    let templates = &workflow.templates;
    let describe =
        |e: shopfloor_core::template::TemplateError| format!("{}: {}", e.field, e.message);
    let prompt = templates.render(input).map_err(describe)?;
    let Some(set) = &workflow.examples else {
        return Ok(prompt);
    };
    let shots = crate::examples::choose(set, &prompt.user, input, evaluation)
        .await
        .map_err(|e| format!("prompt.examples: {e}"))?;
    templates
        .with_examples(prompt, input, shots)
        .map_err(describe)
}

fn correction(problem: &str) -> String {
    format!("Your answer could not be used: {problem}. Answer again, following the required format exactly, with nothing else.")
}

/// The system message, the examples as user/assistant turns, then the input.
fn messages(prompt: &RenderedPrompt) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2 + 2 * prompt.examples.len());
    if let Some(system) = &prompt.system {
        messages.push(Message::new(Role::System, system.clone()));
    }
    let turns = if prompt.examples_in_template {
        &[][..]
    } else {
        &prompt.examples[..]
    };
    for shot in turns {
        messages.push(Message::new(Role::User, shot.user.clone()));
        messages.push(Message::new(Role::Assistant, shot.answer.clone()));
    }
    messages.push(Message::new(Role::User, prompt.user.clone()));
    messages
}

fn prompt_json(prompt: &RenderedPrompt) -> Value {
    let mut prompt_json = json!({
        "messages": messages(prompt),
        "assistant_prefix": prompt.assistant_prefix,
    });
    if !prompt.examples.is_empty() {
        // Which cases the run was shown, by their ids in the examples file.
        let ids: Vec<&str> = prompt.examples.iter().map(|s| s.id.as_str()).collect();
        prompt_json["examples"] = json!(ids);
    }
    prompt_json
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
