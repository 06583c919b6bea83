//! Records of eval runs: a workflow version scored against a dataset, case by case.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_core::scorers::CaseScores;

use crate::RunStatus;

/// State of an eval run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalStatus {
    /// Cases are being run (or the eval was interrupted and can be resumed).
    Running,
    /// Every case ran and the summary is written.
    Done,
    /// Stopped before the end; its cases are not served from the eval cache.
    Cancelled,
}

impl EvalStatus {
    /// Every status, in declaration order.
    pub const ALL: [EvalStatus; 3] = [EvalStatus::Running, EvalStatus::Done, EvalStatus::Cancelled];

    /// The text stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            EvalStatus::Running => "running",
            EvalStatus::Done => "done",
            EvalStatus::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`EvalStatus::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One eval run of a workflow version over a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Time-ordered unique id (UUID v7 text).
    pub id: String,
    pub workflow: String,
    pub version: String,
    /// The dataset path as given, relative to the project folder.
    pub dataset: String,
    /// SHA-256 (hex) of the dataset file's bytes: tells whether two evals saw the same cases.
    pub dataset_hash: String,
    /// The model forced for this eval (`--model`), if any.
    pub model_override: Option<String>,
    pub status: EvalStatus,
    /// Cases in the dataset (valid ones).
    pub total_cases: u64,
    /// Aggregates written when the eval ends: per-scorer means and intervals, invalid rate,
    /// latency percentiles, tokens, cost, gate results. Opaque JSON to the store.
    pub summary: Option<Value>,
    /// Whether every gate passed; `None` while running or when no gate is configured.
    pub passed: Option<bool>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// Only the first N answered cases were run (`eval --limit N`); `None` when the eval ran
    /// the whole dataset. A limited eval proves nothing about its version's gates.
    #[serde(default)]
    pub case_limit: Option<u64>,
}

impl EvalRecord {
    /// Whether the eval ran its whole dataset to the end: only such an eval proves (or
    /// disproves) its version's gates, for promotion and for a variant's eligibility.
    pub fn complete(&self) -> bool {
        self.status == EvalStatus::Done && self.case_limit.is_none()
    }
}

/// The result of one dataset case within an eval run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCaseRecord {
    pub eval_id: String,
    /// The case's id in the dataset.
    pub case_id: String,
    /// The case's line in the dataset file (orders results).
    pub line: u64,
    /// The run that produced the output (for a cached case: the run it was reused from).
    pub run_id: String,
    /// SHA-256 (hex) of the canonical JSON of the case's input: the cache key with the version.
    pub input_hash: String,
    pub status: RunStatus,
    pub output: Option<Value>,
    pub raw_output: Option<String>,
    pub expected: Value,
    /// Every scorer's verdict, keyed by scorer name.
    pub scores: CaseScores,
    pub tags: Vec<String>,
    pub latency_ms: u64,
    pub cost_usd: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Reused from an earlier eval of the same version and input instead of calling a model.
    pub cached: bool,
}
