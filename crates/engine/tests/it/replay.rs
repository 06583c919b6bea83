//! Record what a real provider answered, then run the same inputs from the recording with the
//! upstream gone: the replay provider makes evals possible in CI with no key and no cost.

use crate::common;

use serde_json::json;
use shopfloor_engine::{Engine, EngineOptions};
use shopfloor_store::{RunRecord, RunStatus};
use shopfloor_testkit::{
    self as testkit, openai_completion, FakeServer, OpenAiModel, Reply, WorkflowToml,
};

/// Labels routed to `live` at `base_url`; `recorded` replays `recordings/triage.jsonl`.
fn write_project(dir: &std::path::Path, base_url: &str) {
    let live = OpenAiModel::new("live", base_url)
        .id("vendor-model-1")
        .classes(&["internal"]);
    let recorded = "[models.recorded]\nprovider = \"replay\"\nmodel = \"vendor-model-1\"\n\
                    file = \"recordings/triage.jsonl\"\ndata_classes = [\"internal\"]\n";
    let triage = WorkflowToml::new(&["subject"], "Subject: {{ subject }}")
        .then("[output]\nlabels = [\"billing\", \"bug\"]\n[route]\nmodels = [\"live\"]\n");
    testkit::write_project(dir, &format!("{live}\n{recorded}"), &[("triage", &triage)]);
}

fn options(dir: &std::path::Path, record: bool) -> EngineOptions {
    EngineOptions {
        record_to: record.then(|| dir.join("recordings/triage.jsonl")),
        ..common::options(dir)
    }
}

/// Run `triage` on this subject with the model `recorded`.
async fn replayed(engine: &Engine, subject: &str) -> RunRecord {
    engine
        .run_one(
            "triage",
            json!({"subject": subject}),
            Some("recorded".into()),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn recorded_answers_replay_without_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("recordings")).unwrap();
    let server = FakeServer::start(|r| {
        let label = if r.body.to_string().contains("refund") {
            "billing"
        } else {
            "bug"
        };
        Reply::Json(200, openai_completion(label, 7, 1))
    })
    .await;
    write_project(dir.path(), &server.base_url());

    let engine = Engine::open(options(dir.path(), true)).await.unwrap();
    for subject in ["refund please", "it crashes"] {
        let run = engine
            .run_one("triage", json!({"subject": subject}), None)
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Ok);
    }
    engine.close().await;
    drop(server);

    let engine = Engine::open(options(dir.path(), false)).await.unwrap();
    let billing = replayed(&engine, "refund please").await;
    assert_eq!(billing.status, RunStatus::Ok, "{billing:#?}");
    assert_eq!(billing.output, Some(json!("billing")));
    assert_eq!(billing.prompt_tokens, 7);
    let bug = replayed(&engine, "it crashes").await;
    assert_eq!(bug.output, Some(json!("bug")));

    // An input that was never recorded fails clearly, and is not retried.
    let missing = replayed(&engine, "new ticket").await;
    assert_eq!(missing.status, RunStatus::Failed);
    assert_eq!(missing.attempts.len(), 1);
    assert!(
        missing
            .error
            .as_deref()
            .unwrap()
            .contains("no recorded response"),
        "{:?}",
        missing.error
    );
    engine.close().await;
}
