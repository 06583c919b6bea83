//! The records the store keeps. Enums are stored as text through `as_str` / `parse`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a run came from. Evals are not production traffic: drift, outcomes and spend per
/// workflow leave them out by this, not by guessing from the batch id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOrigin {
    /// One run of a workflow: the CLI's `run`, or `POST /v1/workflows/NAME/runs`.
    #[default]
    Run,
    /// A case of a batch (the CLI's or the server's queue).
    Batch,
    /// A call through the gateway's model APIs.
    Gateway,
    /// A case of an eval; its `batch_id` is the eval's id.
    Eval,
}

impl RunOrigin {
    pub const ALL: [RunOrigin; 4] = [
        RunOrigin::Run,
        RunOrigin::Batch,
        RunOrigin::Gateway,
        RunOrigin::Eval,
    ];

    /// The text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOrigin::Run => "run",
            RunOrigin::Batch => "batch",
            RunOrigin::Gateway => "gateway",
            RunOrigin::Eval => "eval",
        }
    }

    /// The inverse of [`RunOrigin::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A valid output was produced.
    Ok,
    /// The model answered, but the output broke the workflow's output contract.
    Invalid,
    /// No model produced an answer (errors, timeouts, every fallback exhausted).
    Failed,
    /// Policy refused to send the input to any routed model.
    Refused,
    /// A valid output held back for review before release.
    Held,
    /// A reviewer decided the output must not be released.
    Rejected,
}

impl RunStatus {
    /// Every status, in declaration order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Ok,
        RunStatus::Invalid,
        RunStatus::Failed,
        RunStatus::Refused,
        RunStatus::Held,
        RunStatus::Rejected,
    ];

    /// The text stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Invalid => "invalid",
            RunStatus::Failed => "failed",
            RunStatus::Refused => "refused",
            RunStatus::Held => "held",
            RunStatus::Rejected => "rejected",
        }
    }

    /// The inverse of [`RunStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// How one attempt at a model ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The model answered and the answer met the output contract.
    Ok,
    /// The model answered but the answer broke the output contract.
    Invalid,
    /// The call failed (HTTP error, timeout, connection, malformed response).
    Error,
}

impl AttemptOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [AttemptOutcome; 3] = [
        AttemptOutcome::Ok,
        AttemptOutcome::Invalid,
        AttemptOutcome::Error,
    ];

    /// The text stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Invalid => "invalid",
            AttemptOutcome::Error => "error",
        }
    }

    /// The inverse of [`AttemptOutcome::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Why an attempt failed, as a kind callers match on; the message beside it is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Policy would not send the text to this model (its data class, personal data).
    Refused,
    /// The model cannot be called as configured: a missing key, missing weights, no recording.
    Unavailable,
    /// The attempt took longer than its timeout.
    Timeout,
    /// The provider asked for fewer requests (HTTP 429).
    RateLimited,
    /// The provider refused the request itself as invalid (400, 413, 422): the same request
    /// fails the same way.
    Rejected,
    /// The provider failed: a 5xx (or a 401/403/404 for our own key or model id), a broken
    /// connection, a malformed answer.
    Upstream,
    /// The caller went away before the answer was complete.
    Cancelled,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Refused,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::RateLimited,
        ErrorKind::Rejected,
        ErrorKind::Upstream,
        ErrorKind::Cancelled,
    ];

    /// The text stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`ErrorKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One call to one model within a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based position within the run.
    pub n: u32,
    /// The model's name in `shopfloor.toml`.
    pub model: String,
    /// The provider kind (`openai`, `local`, …).
    pub provider: String,
    pub started_at_ms: i64,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub outcome: AttemptOutcome,
    /// The error or validation message, if any.
    pub error: Option<String>,
    /// What kind of failure `error` is, when the call failed (`None` for an invalid answer).
    #[serde(default)]
    pub error_kind: Option<ErrorKind>,
    /// The text the model answered, if it answered.
    pub raw_output: Option<String>,
}

/// One execution of a workflow on one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Time-ordered unique id (UUID v7 text).
    pub id: String,
    pub workflow: String,
    /// The workflow's version hash at the time of the run.
    pub version: String,
    pub batch_id: Option<String>,
    /// 1-based line number of the case within its batch input.
    pub case_index: Option<u64>,
    pub status: RunStatus,
    pub input: Value,
    /// The rendered messages sent to the model, as JSON.
    pub prompt: Value,
    /// The final answer text.
    pub raw_output: Option<String>,
    /// The parsed, validated output.
    pub output: Option<Value>,
    /// Why the run is invalid / failed / refused.
    pub error: Option<String>,
    /// The model (name in config) that produced the final answer.
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// Wall time of the whole run, all attempts and backoff included.
    pub latency_ms: u64,
    pub created_at_ms: i64,
    pub attempts: Vec<AttemptRecord>,
    /// Who made the run through the server; `None` for the CLI.
    #[serde(default)]
    pub caller: Option<crate::Caller>,
    /// A released output picked for review after the fact (medium risk, `[review] sample_rate`).
    #[serde(default)]
    pub sampled_for_review: bool,
    /// How sure the model was of the output, where the provider says (the chosen label's
    /// probability under constrained choice).
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Why and how the run waits for a reviewer, when it does.
    #[serde(default)]
    pub review: Option<crate::ReviewTicket>,
    /// Where the run came from.
    #[serde(default)]
    pub origin: RunOrigin,
    /// The experiment and arm the run ran in, when its workflow had one running.
    #[serde(default)]
    pub experiment: Option<ExperimentArm>,
}

/// An experiment's id and the arm a run ran in: `control` or the variant's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentArm {
    pub id: String,
    pub arm: String,
}

/// A run as listed (no prompt, input or attempts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub workflow: String,
    pub version: String,
    pub batch_id: Option<String>,
    pub status: RunStatus,
    pub model: Option<String>,
    pub latency_ms: u64,
    pub cost_usd: f64,
    pub created_at_ms: i64,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub batch_id: Option<String>,
    pub status: Option<RunStatus>,
    /// The model that gave the final answer.
    pub model: Option<String>,
    /// The workflow version hash.
    pub version: Option<String>,
    /// The end user recorded as the caller (the gateway's `user`, else the key's name).
    pub caller: Option<String>,
    /// Runs made at or after this time.
    pub since_ms: Option<i64>,
    /// Runs made before this time.
    pub until_ms: Option<i64>,
    /// Only runs older than this one (`created_at_ms`, `id`): the next page after it.
    pub before: Option<(i64, String)>,
    /// At most this many (newest first); `None` means a default of 50.
    pub limit: Option<u32>,
}

/// State of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Running,
    Done,
    Cancelled,
}

impl BatchStatus {
    /// Every status, in declaration order.
    pub const ALL: [BatchStatus; 3] = [
        BatchStatus::Running,
        BatchStatus::Done,
        BatchStatus::Cancelled,
    ];

    /// The text stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Running => "running",
            BatchStatus::Done => "done",
            BatchStatus::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`BatchStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A batch run of a workflow over an input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub id: String,
    pub workflow: String,
    pub version: String,
    /// Where the inputs came from (a path, or `api`).
    pub source: String,
    /// Number of cases in the input (valid and invalid lines).
    pub total_cases: u64,
    /// Model override for the whole batch, if any.
    pub model_override: Option<String>,
    pub status: BatchStatus,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// Who submitted the batch through the server; `None` for the CLI.
    #[serde(default)]
    pub caller: Option<crate::Caller>,
}
