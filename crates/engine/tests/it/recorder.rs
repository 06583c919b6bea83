//! The run recorder against a real SQLite file: one run the store cannot take (a count past
//! the database's integers) is recorded as failed with the reason, and the runs written with
//! it are kept as they are.

use serde_json::json;
use shopfloor_engine::Recorder;
use shopfloor_store::{RunFilter, RunRecord, RunStatus};

fn run(id: &str, prompt_tokens: u64) -> RunRecord {
    RunRecord {
        batch_id: Some("b".into()),
        case_index: Some(id.len() as u64),
        prompt_tokens,
        cost_usd: 0.001,
        latency_ms: 10,
        ..crate::common::recorded(id, "triage", "v1", "bug", 1_000)
    }
}

#[tokio::test]
async fn one_unstorable_run_is_recorded_as_failed_and_takes_no_other_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = shopfloor_store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let (recorder, task) = Recorder::spawn(store.clone());
    for (id, tokens) in [("a", 10), ("bb", u64::MAX), ("ccc", 12)] {
        recorder.record(run(id, tokens)).await;
    }
    recorder.flush().await;
    drop(recorder);
    task.close().await;
    let runs = store
        .list_runs(&RunFilter {
            batch_id: Some("b".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 3, "every run is recorded: {runs:?}");
    for id in ["a", "ccc"] {
        let good = store.get_run(id).await.unwrap().unwrap();
        assert_eq!(
            (good.status, good.output),
            (RunStatus::Ok, Some(json!("bug")))
        );
    }
    let bad = store.get_run("bb").await.unwrap().unwrap();
    assert_eq!(bad.status, RunStatus::Failed);
    assert_eq!(bad.prompt_tokens, 0);
    let error = bad.error.unwrap_or_default();
    assert!(
        error.contains("could not be recorded") && error.contains("prompt_tokens"),
        "{error}"
    );
    assert_eq!(shopfloor_engine::not_recorded(), 0);
}
