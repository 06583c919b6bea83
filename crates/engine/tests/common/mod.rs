//! Shared by the engine's integration tests: an engine on a project folder with retries that
//! wait microseconds, not seconds.

#![allow(dead_code)] // Each test file compiles this module; not all of them use every item.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use shopfloor_engine::{Engine, EngineOptions, RetryPolicy};
use shopfloor_store::{RunRecord, RunStatus};

/// Retries as the engine does them, with waits too short to slow a test down.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(1),
        max: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(50),
    }
}

/// Options for the project in `dir` (embedded SQLite under it) with [`fast_retry`].
pub fn options(dir: &Path) -> EngineOptions {
    EngineOptions {
        project_dir: dir.to_path_buf(),
        retry: fast_retry(),
        ..EngineOptions::default()
    }
}

/// Open the project in `dir`.
pub async fn engine(dir: &Path) -> Engine {
    Engine::open(options(dir)).await.unwrap()
}

/// A run of `workflow` at `version` made at `at` that answered the label `output`, as a test
/// records it straight into the store (no attempts, no caller); tests change what they need.
pub fn recorded(id: &str, workflow: &str, version: &str, output: &str, at: i64) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: workflow.into(),
        version: version.into(),
        batch_id: None,
        case_index: None,
        status: RunStatus::Ok,
        input: json!({"text": id}),
        prompt: json!([]),
        raw_output: Some(output.into()),
        output: Some(json!(output)),
        error: None,
        model: Some("m".into()),
        prompt_tokens: 20,
        completion_tokens: 1,
        cost_usd: 0.0,
        latency_ms: 100,
        created_at_ms: at,
        attempts: Vec::new(),
        caller: None,
        sampled_for_review: false,
        confidence: None,
        review: None,
        origin: Default::default(),
        experiment: None,
    }
}
