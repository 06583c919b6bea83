//! Every call to a model goes through here: the workflow runner, the eval judge and both
//! gateway paths. One attempt loop (a timeout per attempt, retries of retryable errors with
//! exponential backoff and jitter, `Retry-After` honoured), one classification of failures
//! into an [`ErrorKind`], one place that builds an [`AttemptRecord`] and one that sums a run's
//! totals. The route (which model next) stays with the caller: [`Route`] keeps its tally.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use shopfloor_core::spec::ModelSpec;
use shopfloor_providers::{ChatResponse, ProviderError, Usage};
use shopfloor_store::{AttemptOutcome, AttemptRecord, ErrorKind, RunRecord, RunStatus};
use tracing::Instrument;

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

/// Why a call to a model, or a whole route, gave no answer: a kind to match on (statuses,
/// metrics, what to try next) and a message for people that names the model, never a URL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CallFailure {
    pub kind: ErrorKind,
    pub message: String,
    /// The HTTP status the provider answered with, when it answered.
    pub status: Option<u16>,
}

impl CallFailure {
    /// A failure of `kind` with no provider status.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
        }
    }

    /// `error` from a call to the model named `model`.
    pub fn from_provider(model: &str, error: &ProviderError) -> Self {
        Self {
            kind: kind_of(error),
            message: format!("model \"{model}\": {error}"),
            status: match error {
                ProviderError::Status { status, .. } => Some(*status),
                _ => None,
            },
        }
    }
}

/// The one classification of provider errors.
pub fn kind_of(error: &ProviderError) -> ErrorKind {
    match error {
        ProviderError::Status { status: 429, .. } => ErrorKind::RateLimited,
        ProviderError::Status { status: 408, .. } | ProviderError::Timeout(_) => ErrorKind::Timeout,
        ProviderError::Status {
            status: 400 | 413 | 422,
            ..
        } => ErrorKind::Rejected,
        ProviderError::Status { .. }
        | ProviderError::Connection { .. }
        | ProviderError::Malformed { .. } => ErrorKind::Upstream,
        ProviderError::Config(_) | ProviderError::NotRecorded { .. } => ErrorKind::Unavailable,
    }
}

/// What a successful call returns, as far as its trace span needs to know.
pub(crate) trait Answered {
    /// The token counts, when the answer is whole (a stream's are not known at its start).
    fn usage(&self) -> Option<Usage>;
}

impl Answered for ChatResponse {
    fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

/// A call that answered, and when.
pub(crate) struct Timed<T> {
    pub value: T,
    pub started_at_ms: i64,
    pub latency: Duration,
}

/// The attempts at one model: at most `1 + retries` calls, each cut at `timeout`.
pub(crate) struct Attempts<'a> {
    spec: &'a ModelSpec,
    timeout: Duration,
    retries: u32,
    backoff: RetryPolicy,
    /// Retries used so far: a workflow's re-ask after an invalid answer shares the budget.
    used: u32,
    /// Time spent in calls and in waits between them.
    upstream: Duration,
}

impl<'a> Attempts<'a> {
    pub fn new(spec: &'a ModelSpec, timeout: Duration, retries: u32, backoff: RetryPolicy) -> Self {
        Self {
            spec,
            timeout,
            retries,
            backoff,
            used: 0,
            upstream: Duration::ZERO,
        }
    }

    /// Time spent so far in calls to this model and in waits before retrying it.
    pub fn upstream(&self) -> Duration {
        self.upstream
    }

    /// Call `call` until it answers or fails for good. Each failed attempt is appended to
    /// `log` (whose length numbers the attempts); an answer is left for the caller to record
    /// with [`answered`], since only the caller knows whether it meets its contract.
    pub async fn call<T, F, Fut>(
        &mut self,
        log: &mut Vec<AttemptRecord>,
        mut call: F,
    ) -> Result<Timed<T>, ProviderError>
    where
        T: Answered,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        loop {
            let span = trace::attempt_span(self.spec, log.len());
            let started_at_ms = crate::now_ms();
            let clock = Instant::now();
            let result =
                match tokio::time::timeout(self.timeout, call().instrument(span.clone())).await {
                    Ok(result) => result,
                    // Dropping the future cancels the call.
                    Err(_) => Err(ProviderError::Timeout(self.timeout)),
                };
            let latency = clock.elapsed();
            self.upstream += latency;
            trace::record_attempt(&span, result.as_ref().map(Answered::usage));
            let error = match result {
                Ok(value) => {
                    return Ok(Timed {
                        value,
                        started_at_ms,
                        latency,
                    })
                }
                Err(error) => error,
            };
            log.push(failed(
                log.len(),
                self.spec,
                started_at_ms,
                latency,
                &CallFailure::new(kind_of(&error), error.to_string()),
            ));
            if !error.is_retryable() || self.used >= self.retries {
                return Err(error);
            }
            let wait = self.backoff.delay(self.used, error.retry_after());
            tokio::time::sleep(wait).await;
            self.upstream += wait;
            self.used += 1;
        }
    }
}

/// The tally of a route: how many models were tried, how many refused by policy, and the
/// last failure, from which the route's own failure follows.
#[derive(Debug, Default)]
pub(crate) struct Route {
    tried: usize,
    refused: usize,
    last: Option<CallFailure>,
}

impl Route {
    /// A model of the route gave up with `failure`.
    pub fn failed(&mut self, failure: CallFailure) {
        self.tried += 1;
        if failure.kind == ErrorKind::Refused {
            self.refused += 1;
        }
        self.last = Some(failure);
    }

    /// Why the route as a whole failed: refused when policy refused every model; else the
    /// last model's failure (a refusal among failures is not the route's reason).
    pub fn failure(self) -> CallFailure {
        let Some(mut last) = self.last else {
            return CallFailure::new(ErrorKind::Unavailable, "no model to route to");
        };
        if self.refused == self.tried {
            return last;
        }
        if last.kind == ErrorKind::Refused {
            last.kind = ErrorKind::Upstream;
        }
        if self.tried > 1 {
            last.message = format!("every routed model failed; last error: {}", last.message);
        }
        last
    }
}

/// Why a recorded run got no answer, as [`Route::failure`] decided it: `None` unless the run
/// failed or was refused.
pub fn failure_kind(run: &RunRecord) -> Option<ErrorKind> {
    match run.status {
        RunStatus::Refused => Some(ErrorKind::Refused),
        RunStatus::Failed => Some(match run.attempts.last().and_then(|a| a.error_kind) {
            Some(ErrorKind::Refused) | None => ErrorKind::Upstream,
            Some(kind) => kind,
        }),
        _ => None,
    }
}

/// Record that `spec` could not be called at all (policy, configuration): an attempt that
/// took no time.
pub(crate) fn not_called(log: &mut Vec<AttemptRecord>, spec: &ModelSpec, failure: &CallFailure) {
    log.push(failed(
        log.len(),
        spec,
        crate::now_ms(),
        Duration::ZERO,
        failure,
    ));
}

/// The record of attempt `index` (0-based) at `spec` that ended in `failure`.
pub(crate) fn failed(
    index: usize,
    spec: &ModelSpec,
    started_at_ms: i64,
    latency: Duration,
    failure: &CallFailure,
) -> AttemptRecord {
    AttemptRecord {
        outcome: AttemptOutcome::Error,
        error: Some(failure.message.clone()),
        error_kind: Some(failure.kind),
        ..record(index, spec, started_at_ms, latency, Usage::default(), None)
    }
}

/// How an answer ended, for its attempt's record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ending<'a> {
    /// Whole, and it meets the contract.
    Valid,
    /// Whole, but it broke the output contract: why.
    Invalid(&'a shopfloor_core::output::ContractViolation),
    /// A stream that broke off after it started.
    BrokenOff(&'a CallFailure),
}

/// The record of attempt `index` at `spec` that answered `text` and ended as `ending` says.
pub(crate) fn answered(
    index: usize,
    spec: &ModelSpec,
    started_at_ms: i64,
    latency: Duration,
    usage: Usage,
    text: &str,
    ending: Ending<'_>,
) -> AttemptRecord {
    let (outcome, error, error_kind) = match ending {
        Ending::Valid => (AttemptOutcome::Ok, None, None),
        Ending::Invalid(problem) => (AttemptOutcome::Invalid, Some(problem.to_string()), None),
        Ending::BrokenOff(failure) => (
            AttemptOutcome::Error,
            Some(failure.message.clone()),
            Some(failure.kind),
        ),
    };
    AttemptRecord {
        outcome,
        error,
        error_kind,
        ..record(
            index,
            spec,
            started_at_ms,
            latency,
            usage,
            Some(text.to_string()),
        )
    }
}

fn record(
    index: usize,
    spec: &ModelSpec,
    started_at_ms: i64,
    latency: Duration,
    usage: Usage,
    raw_output: Option<String>,
) -> AttemptRecord {
    let prompt_tokens = u64::from(usage.prompt_tokens);
    let completion_tokens = u64::from(usage.completion_tokens);
    AttemptRecord {
        n: index as u32 + 1,
        model: spec.name.clone(),
        provider: spec.provider.as_str().to_string(),
        started_at_ms,
        latency_ms: latency.as_millis() as u64,
        prompt_tokens,
        completion_tokens,
        cost_usd: spec.price.cost(prompt_tokens, completion_tokens),
        outcome: AttemptOutcome::Ok,
        error: None,
        error_kind: None,
        raw_output,
    }
}

/// A run's tokens and cost are the sums over its attempts; its latency is its wall time.
pub(crate) fn finish_totals(run: &mut RunRecord, started: Instant) {
    run.prompt_tokens = run.attempts.iter().map(|a| a.prompt_tokens).sum();
    run.completion_tokens = run.attempts.iter().map(|a| a.completion_tokens).sum();
    run.cost_usd = run.attempts.iter().map(|a| a.cost_usd).sum();
    run.latency_ms = started.elapsed().as_millis() as u64;
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

    fn status(status: u16) -> ProviderError {
        ProviderError::Status {
            provider: "openai".into(),
            status,
            message: "x".into(),
            retry_after: None,
        }
    }

    #[test]
    fn provider_errors_have_one_kind_each() {
        assert_eq!(kind_of(&status(429)), ErrorKind::RateLimited);
        assert_eq!(kind_of(&status(408)), ErrorKind::Timeout);
        assert_eq!(
            kind_of(&ProviderError::Timeout(Duration::from_secs(1))),
            ErrorKind::Timeout
        );
        assert_eq!(kind_of(&status(400)), ErrorKind::Rejected);
        assert_eq!(kind_of(&status(422)), ErrorKind::Rejected);
        // Our key or model id is wrong upstream: the provider's failure, not the client's.
        assert_eq!(kind_of(&status(403)), ErrorKind::Upstream);
        assert_eq!(kind_of(&status(503)), ErrorKind::Upstream);
        assert_eq!(
            kind_of(&ProviderError::Config("no key".into())),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn a_route_is_refused_only_when_every_model_refused() {
        let mut all = Route::default();
        all.failed(CallFailure::new(ErrorKind::Refused, "a refused"));
        all.failed(CallFailure::new(ErrorKind::Refused, "b refused"));
        assert_eq!(all.failure().kind, ErrorKind::Refused);

        let mut mixed = Route::default();
        mixed.failed(CallFailure::new(ErrorKind::Timeout, "a timed out"));
        mixed.failed(CallFailure::new(ErrorKind::Refused, "b refused"));
        let failure = mixed.failure();
        assert_eq!(failure.kind, ErrorKind::Upstream);
        assert_eq!(
            failure.message,
            "every routed model failed; last error: b refused"
        );

        assert_eq!(Route::default().failure().kind, ErrorKind::Unavailable);
    }
}
