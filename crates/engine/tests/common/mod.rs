//! Shared by the engine's integration tests: an engine on a project folder with retries that
//! wait microseconds, not seconds.

#![allow(dead_code)] // Each test file compiles this module; not all of them use every item.

use std::path::Path;
use std::time::Duration;

use shopfloor_engine::{Engine, EngineOptions, RetryPolicy};

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
