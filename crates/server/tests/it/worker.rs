//! The batch worker never runs a case on another version than its batch's: when the store
//! cannot say what the batch is, the case waits and asks again, and then runs (or fails) for
//! the batch's own version. A real SQLite file, its batch row made unreadable and mended with
//! Python's sqlite3 module (no test hook in the server).

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use shopfloor_server::ServerConfig;
use shopfloor_store::{BatchRecord, BatchStatus, RunStatus};
use shopfloor_testkit::FakeServer;

/// Run `sql` on the SQLite file at `db`.
fn sqlite(db: &std::path::Path, sql: &str) {
    let script = format!(
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute({sql:?})\nc.commit()\n"
    );
    let status = std::process::Command::new("python3")
        .args(["-c", &script])
        .arg(db)
        .status()
        .expect("python3 runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_batch_is_never_run_on_the_current_version() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let queuing = TestServer::start(
        dir.path(),
        ServerConfig {
            worker: None,
            ..test_config()
        },
    )
    .await;
    let keys = queuing.keys.clone();
    let batch = BatchRecord {
        id: "b-old".into(),
        workflow: "triage".into(),
        version: "v-old".into(),
        source: "api".into(),
        total_cases: 1,
        model_override: None,
        status: BatchStatus::Running,
        created_at_ms: 1,
        finished_at_ms: None,
        caller: None,
    };
    queuing
        .store()
        .enqueue_batch(&batch, &[(1, json!({"text": "bug"}))])
        .await
        .unwrap();
    queuing.stop().await;
    let db = dir.path().join(".shopfloor/shopfloor.db");
    sqlite(
        &db,
        "UPDATE batches SET total_cases = -1 WHERE id = 'b-old'",
    );

    let server = TestServer::restart(dir.path(), test_config(), keys).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.state.engine.flush().await;
    assert!(
        server
            .store()
            .batch_recorded_cases("b-old")
            .await
            .unwrap()
            .is_empty(),
        "nothing ran while the batch could not be read"
    );

    sqlite(&db, "UPDATE batches SET total_cases = 1 WHERE id = 'b-old'");
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        server.state.engine.flush().await;
        let page = server
            .store()
            .list_runs(&shopfloor_store::RunFilter {
                batch_id: Some("b-old".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        if let Some(run) = page.into_iter().next() {
            break server.recorded(&run.id).await;
        }
        assert!(
            Instant::now() < deadline,
            "the case ran once the batch could be read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run.version, "v-old", "recorded for its batch's version");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("queued for version v-old"),
        "{run:?}"
    );
    server.stop().await;
}
