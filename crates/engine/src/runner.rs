//! One run of a workflow on one input: render → route (retries, timeouts, fallbacks) →
//! parse and validate → a [`RunRecord`] that says everything that happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use shopfloor_core::pii::{detect, redact, restore, summarize, Redactions};
use shopfloor_core::spec::{
    DataClass, ExternalAction, ModelSpec, PiiPolicy, ProjectConfig, RiskTier,
};
use shopfloor_core::template::RenderedPrompt;
use shopfloor_providers::{ChatRequest, ChatResponse, Message, Provider, ProviderError, Role};
use shopfloor_store::{AttemptOutcome, AttemptRecord, RunRecord, RunStatus};
use tracing::Instrument;

use crate::models::ModelPool;
use crate::project::LoadedWorkflow;
use crate::trace;

/// How long to wait between retries of one model.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first wait; doubled on each retry, with jitter.
    pub base: Duration,
    /// No computed wait is longer.
    pub max: Duration,
    /// A server's `Retry-After` is honoured up to this long.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): exponential with full jitter between
    /// half and all of it, or what the server asked for if that is longer.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max);
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max_retry_after)),
            None => jittered,
        }
    }
}

/// Where a run belongs and which model to force.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Use only this model (a name from `shopfloor.toml`) instead of the workflow's route.
    pub model_override: Option<String>,
    /// The batch and 1-based case number, for batch runs.
    pub batch: Option<(String, u64)>,
    /// Who asked for the run (through the server).
    pub caller: Option<shopfloor_store::Caller>,
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

    /// Run `workflow` on `input` (already validated against the input schema). Never fails:
    /// every outcome, including refusals and provider errors, is a record.
    pub async fn run(
        &self,
        workflow: &LoadedWorkflow,
        input: Value,
        options: &RunOptions,
    ) -> RunRecord {
        let started = Instant::now();
        let mut run = new_run(
            workflow.spec.name.as_str(),
            &workflow.version,
            input,
            options.batch.clone(),
            options.caller.clone(),
        );
        let span = trace::run_span(workflow.spec.name.as_str());
        match workflow.templates.render(&run.input) {
            Ok(prompt) => {
                run.prompt = prompt_json(&prompt);
                self.route(workflow, &prompt, options, &mut run)
                    .instrument(span.clone())
                    .await;
            }
            Err(e) => run.error = Some(format!("{}: {}", e.field, e.message)),
        }
        run.prompt_tokens = run.attempts.iter().map(|a| a.prompt_tokens).sum();
        run.completion_tokens = run.attempts.iter().map(|a| a.completion_tokens).sum();
        run.cost_usd = run.attempts.iter().map(|a| a.cost_usd).sum();
        run.latency_ms = started.elapsed().as_millis() as u64;
        apply_review_policy(workflow, &mut run);
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
        let names: Vec<String> = match &options.model_override {
            Some(name) => vec![name.clone()],
            None => workflow
                .spec
                .route
                .models
                .iter()
                .map(|m| m.value.clone())
                .collect(),
        };
        let mut refused = 0;
        let mut last_error = None;
        // One mapping per run: the same value gets the same placeholder in every message and
        // every attempt, and exists only in memory for this run.
        let mut redactions = Redactions::new();
        for name in &names {
            let Some(spec) = self.config.models.get(name) else {
                last_error = Some(format!("unknown model \"{name}\""));
                continue;
            };
            match self
                .try_model(workflow, prompt, spec, run, &mut redactions)
                .await
            {
                Ok(()) => return,
                Err(Fallback::Failed(message)) => last_error = Some(message),
                Err(Fallback::Refused(message)) => {
                    refused += 1;
                    last_error = Some(message);
                }
            }
        }
        if refused == names.len() && refused > 0 {
            run.status = RunStatus::Refused;
        } else {
            run.status = RunStatus::Failed;
        }
        run.error = Some(match last_error {
            Some(e) if names.len() > 1 => format!("every routed model failed; last error: {e}"),
            Some(e) => e,
            None => "no model to route to".to_string(),
        });
    }

    /// Attempts at one model, with retries. `Ok` when the run is settled (valid or invalid
    /// output); `Err` when the next model should be tried.
    async fn try_model(
        &self,
        workflow: &LoadedWorkflow,
        prompt: &RenderedPrompt,
        spec: &ModelSpec,
        run: &mut RunRecord,
        redactions: &mut Redactions,
    ) -> Result<(), Fallback> {
        let mut outgoing = messages(prompt);
        let mut prefix = prompt.assistant_prefix.clone();
        let redacting = match self.guard_outbound(
            spec,
            workflow.spec.data_class,
            &mut outgoing,
            &mut prefix,
            redactions,
        ) {
            Ok(redacting) => redacting,
            Err(refusal) => {
                run.attempts.push(error_attempt(
                    run.attempts.len(),
                    spec,
                    now_ms(),
                    0,
                    refusal.clone(),
                ));
                return Err(Fallback::Refused(refusal));
            }
        };
        let provider = match self.models.provider(spec) {
            Ok(p) => p,
            Err(e) => {
                let message = e.to_string();
                run.attempts.push(error_attempt(
                    run.attempts.len(),
                    spec,
                    now_ms(),
                    0,
                    message.clone(),
                ));
                return Err(Fallback::Failed(message));
            }
        };
        let capabilities = provider.capabilities();
        let route = &workflow.spec.route;
        let mut request = ChatRequest {
            model: spec.model.clone(),
            messages: outgoing,
            max_tokens: route.max_tokens,
            temperature: Some(route.temperature),
            top_p: route.top_p,
            seed: route.seed,
            assistant_prefix: prefix.filter(|_| capabilities.assistant_prefix),
            choices: None,
        };
        if workflow.spec.output.constrained && capabilities.constrained_choice {
            request.choices = workflow.output.labels().map(<[String]>::to_vec);
        }
        let timeout = Duration::from_millis(route.timeout_ms);
        let mut retry = 0;
        let mut asked_again = false;
        loop {
            let started_at = now_ms();
            let clock = Instant::now();
            let result =
                complete_within(&*provider, spec, run.attempts.len(), &request, timeout).await;
            let latency_ms = clock.elapsed().as_millis() as u64;
            match result {
                Ok(mut response) => {
                    // The model saw placeholders; the caller gets the originals back.
                    let sent_back = response.text.clone();
                    if redacting {
                        response.text = restore(&response.text, redactions);
                    }
                    let parsed = workflow.output.parse(&response.text);
                    let attempt = answered_attempt(
                        run.attempts.len(),
                        spec,
                        started_at,
                        latency_ms,
                        &response,
                        &parsed,
                    );
                    run.attempts.push(attempt);
                    run.model = Some(spec.name.clone());
                    run.raw_output = Some(response.text.clone());
                    match parsed {
                        Ok(output) => {
                            run.output = Some(output);
                            run.status = RunStatus::Ok;
                            run.error = None;
                            return Ok(());
                        }
                        Err(problem) if workflow.spec.output.retry_on_invalid && !asked_again => {
                            asked_again = true;
                            let mut problem = correction(&problem);
                            if redacting {
                                // The problem quotes the restored answer: redact it again.
                                problem = self.redact_outbound(&problem, redactions);
                            }
                            request
                                .messages
                                .push(Message::new(Role::Assistant, sent_back));
                            request.messages.push(Message::new(Role::User, problem));
                        }
                        Err(problem) => {
                            run.status = RunStatus::Invalid;
                            run.error = Some(problem);
                            return Ok(());
                        }
                    }
                }
                Err(e) => {
                    run.attempts.push(error_attempt(
                        run.attempts.len(),
                        spec,
                        started_at,
                        latency_ms,
                        e.to_string(),
                    ));
                    if !e.is_retryable() || retry >= route.retries {
                        return Err(Fallback::Failed(format!("model \"{}\": {e}", spec.name)));
                    }
                    tokio::time::sleep(self.retry.delay(retry, e.retry_after())).await;
                    retry += 1;
                }
            }
        }
    }
}

/// The risk tier's review path: a high-risk output is held until a reviewer approves it; a
/// medium-risk output is released and, at `[review] sample_rate`, picked for review after.
fn apply_review_policy(workflow: &LoadedWorkflow, run: &mut RunRecord) {
    if run.status != RunStatus::Ok {
        return;
    }
    match workflow.spec.risk {
        RiskTier::High => run.status = RunStatus::Held,
        RiskTier::Medium => {
            run.sampled_for_review = rand::random::<f64>() < workflow.spec.review.sample_rate;
        }
        RiskTier::Low => {}
    }
}

/// A run that has produced nothing yet: failed, with no attempts, until one settles it.
pub(crate) fn new_run(
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
    }
}

/// The output a caller may see: none while the run is held for review.
pub fn released_output(run: &RunRecord) -> Option<&Value> {
    match run.status {
        RunStatus::Held => None,
        _ => run.output.as_ref(),
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
    /// policy (data classes, PII), timeout and retry rules as workflow runs.
    pub async fn ask(
        &self,
        model: &str,
        data_class: DataClass,
        mut messages: Vec<Message>,
        max_tokens: u32,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let spec = self
            .config
            .models
            .get(model)
            .ok_or_else(|| format!("unknown model \"{model}\""))?;
        // The answer is a verdict about the text, not the text: nothing to restore.
        self.guard_outbound(
            spec,
            data_class,
            &mut messages,
            &mut None,
            &mut Redactions::new(),
        )?;
        let provider = self.models.provider(spec).map_err(|e| e.to_string())?;
        let request = ChatRequest {
            model: spec.model.clone(),
            messages,
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            ..ChatRequest::default()
        };
        let mut retry = 0;
        loop {
            match complete_within(&*provider, spec, retry as usize, &request, timeout).await {
                Ok(response) => {
                    let prompt_tokens = u64::from(response.usage.prompt_tokens);
                    let completion_tokens = u64::from(response.usage.completion_tokens);
                    return Ok(Answer {
                        text: response.text,
                        prompt_tokens,
                        completion_tokens,
                        cost_usd: spec.price.cost(prompt_tokens, completion_tokens),
                    });
                }
                Err(e) if e.is_retryable() && retry < 2 => {
                    tokio::time::sleep(self.retry.delay(retry, e.retry_after())).await;
                    retry += 1;
                }
                Err(e) => return Err(format!("model \"{model}\": {e}")),
            }
        }
    }
}

impl Runner {
    /// Apply the policy to text bound for `spec`: the model must be allowed `data_class`
    /// (defence in depth: `check` rejects such routes, but an override or an edited config must
    /// never reach it), and personal data bound for a model outside the building is redacted in
    /// place, or the call refused. `Ok(true)` when text was redacted and answers need restoring;
    /// `Err` with the refusal, which names kinds of data, never the data.
    pub(crate) fn guard_outbound(
        &self,
        spec: &ModelSpec,
        data_class: DataClass,
        messages: &mut [Message],
        prefix: &mut Option<String>,
        redactions: &mut Redactions,
    ) -> Result<bool, String> {
        if !spec.data_classes.contains(&data_class) {
            return Err(format!(
                "refused by policy: model \"{}\" may not see {data_class} data",
                spec.name
            ));
        }
        let Some(policy) = self.external_pii(spec) else {
            return Ok(false);
        };
        match policy.on_external {
            ExternalAction::Allow => Ok(false),
            ExternalAction::Block => {
                let texts = messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .chain(prefix.as_deref());
                let found: Vec<_> = texts
                    .flat_map(|text| detect(text, &policy.detect))
                    .collect();
                if found.is_empty() {
                    return Ok(false);
                }
                let kinds: Vec<String> = summarize(&found)
                    .into_iter()
                    .map(|(kind, n)| format!("{n} {}", kind.as_str()))
                    .collect();
                Err(format!(
                    "blocked by policy: the input contains {} and model \"{}\" is not on premises",
                    kinds.join(", "),
                    spec.name
                ))
            }
            ExternalAction::Redact => {
                for m in messages.iter_mut() {
                    m.content = redact(&m.content, &policy.detect, redactions);
                }
                if let Some(p) = prefix.as_mut() {
                    *p = redact(p, &policy.detect, redactions);
                }
                Ok(true)
            }
        }
    }

    /// The PII policy that applies to text bound for `spec`, if any.
    fn external_pii(&self, spec: &ModelSpec) -> Option<&PiiPolicy> {
        self.config
            .pii
            .as_ref()
            .filter(|p| !spec.on_premises && !p.detect.is_empty())
    }

    /// Redact more text of a run already being redacted (same mapping, same placeholders).
    fn redact_outbound(&self, text: &str, redactions: &mut Redactions) -> String {
        match self.config.pii.as_ref() {
            Some(policy) => redact(text, &policy.detect, redactions),
            None => text.to_string(),
        }
    }
}

/// Attempt `attempt` (0-based) at `spec`: one call, cut at `timeout` (dropping the future
/// cancels it), in an `attempt` span.
pub(crate) async fn complete_within(
    provider: &dyn Provider,
    spec: &ModelSpec,
    attempt: usize,
    request: &ChatRequest,
    timeout: Duration,
) -> Result<ChatResponse, ProviderError> {
    let span = trace::attempt_span(spec, attempt);
    let call = async {
        match tokio::time::timeout(timeout, provider.complete(request)).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout(timeout)),
        }
    };
    let result = call.instrument(span.clone()).await;
    trace::record_attempt(&span, result.as_ref().map(|answer| Some(answer.usage)));
    result
}

/// Why a model gave up on a run, so the route tries the next one.
enum Fallback {
    /// Errors, retries exhausted.
    Failed(String),
    /// Policy would not send the input to this model.
    Refused(String),
}

fn correction(problem: &str) -> String {
    format!("Your answer could not be used: {problem}. Answer again, following the required format exactly, with nothing else.")
}

fn messages(prompt: &RenderedPrompt) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &prompt.system {
        messages.push(Message::new(Role::System, system.clone()));
    }
    messages.push(Message::new(Role::User, prompt.user.clone()));
    messages
}

fn prompt_json(prompt: &RenderedPrompt) -> Value {
    json!({
        "messages": messages(prompt),
        "assistant_prefix": prompt.assistant_prefix,
    })
}

pub(crate) fn error_attempt(
    index: usize,
    spec: &ModelSpec,
    started_at_ms: i64,
    latency_ms: u64,
    error: String,
) -> AttemptRecord {
    AttemptRecord {
        n: index as u32 + 1,
        model: spec.name.clone(),
        provider: spec.provider.as_str().to_string(),
        started_at_ms,
        latency_ms,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 0.0,
        outcome: AttemptOutcome::Error,
        error: Some(error),
        raw_output: None,
    }
}

fn answered_attempt(
    index: usize,
    spec: &ModelSpec,
    started_at_ms: i64,
    latency_ms: u64,
    response: &ChatResponse,
    parsed: &Result<Value, String>,
) -> AttemptRecord {
    let prompt_tokens = u64::from(response.usage.prompt_tokens);
    let completion_tokens = u64::from(response.usage.completion_tokens);
    AttemptRecord {
        n: index as u32 + 1,
        model: spec.name.clone(),
        provider: spec.provider.as_str().to_string(),
        started_at_ms,
        latency_ms,
        prompt_tokens,
        completion_tokens,
        cost_usd: spec.price.cost(prompt_tokens, completion_tokens),
        outcome: if parsed.is_ok() {
            AttemptOutcome::Ok
        } else {
            AttemptOutcome::Invalid
        },
        error: parsed.as_ref().err().cloned(),
        raw_output: Some(response.text.clone()),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_honour_retry_after() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
        };
        for retry in 0..6 {
            let d = policy.delay(retry, None);
            let full = Duration::from_millis(100 * (1 << retry)).min(Duration::from_secs(1));
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(30))),
            Duration::from_secs(5)
        );
    }
}
