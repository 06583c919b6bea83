//! Experiments across replicas on one real PostgreSQL database: an experiment started on one
//! engine is seen by the other, both put every user in the same arm, and a stop on one ends
//! the split on both.

use std::time::Duration;

use serde_json::json;
use shopfloor_core::experiment::{Metric, Verdict};
use shopfloor_engine::{Engine, EngineOptions, EvalRequest, ExperimentStart};
use shopfloor_store::testing::TestPostgres;
use shopfloor_testkit::{
    self as testkit, openai_completion, FakeServer, OpenAiModel, ReceivedRequest, Reply,
    WorkflowToml,
};

fn billing(_: &ReceivedRequest) -> Reply {
    Reply::Json(200, openai_completion("billing", 20, 1))
}

async fn replica(dir: &std::path::Path, url: &str) -> Engine {
    Engine::open(EngineOptions {
        project_dir: dir.to_path_buf(),
        database_url: Some(url.to_string()),
        ..EngineOptions::default()
    })
    .await
    .unwrap()
}

/// The arm each of `users` lands in on `engine`.
async fn arms(engine: &Engine, users: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for user in users {
        let run = engine
            .run_workflow(
                "triage",
                json!({"subject": "refund"}),
                None,
                None,
                Some(user),
            )
            .await
            .unwrap();
        out.push(run.experiment.map_or("none".to_string(), |e| e.arm));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_postgres_database_assign_every_user_alike() {
    let upstream = FakeServer::start(billing).await;
    let dir = tempfile::tempdir().unwrap();
    let model = OpenAiModel::new("fake", &upstream.base_url()).classes(&["internal"]);
    let triage = WorkflowToml::new(&["subject"], "Subject: {{ subject }}").then(
        "[output]\nlabels = [\"billing\", \"bug\"]\n[route]\nmodels = [\"fake\"]\n\
         [eval]\ndataset = \"cases.jsonl\"\nscorers = [\"label_accuracy\"]\n\
         gate = { label_accuracy = 0.5 }\n\
         [variants.warm]\nroute = { temperature = 0.7 }\n",
    );
    testkit::write_project(dir.path(), &model.to_string(), &[("triage", &triage)]);
    std::fs::write(
        dir.path().join("cases.jsonl"),
        r#"{"id": "c1", "input": {"subject": "refund"}, "expected": "billing"}"#,
    )
    .unwrap();
    let db = TestPostgres::create().await;
    let (a, b) = (
        replica(dir.path(), db.url()).await,
        replica(dir.path(), db.url()).await,
    );
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    // Before any experiment, no run is in one.
    assert!(arms(&b, &users[..3]).await.iter().all(|a| a == "none"));

    a.run_eval(
        &EvalRequest {
            workflow: "triage".into(),
            variant: Some("warm".into()),
            concurrency: 1,
            ..Default::default()
        },
        &(),
        std::future::pending(),
    )
    .await
    .unwrap();
    let started = a
        .start_experiment(
            "ann",
            ExperimentStart {
                workflow: "triage".into(),
                variant: "warm".into(),
                hypothesis: "a warmer answer reads better".into(),
                metric: Metric::AcceptanceRate,
                guardrails: Vec::new(),
                share: Some(0.5),
                min_runs: None,
                mde: None,
                subject_field: None,
            },
        )
        .await
        .unwrap();
    // The other replica reads the running experiments again within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let on_a = arms(&a, &users).await;
    let on_b = arms(&b, &users).await;
    assert_eq!(on_a, on_b);
    let warm = on_a.iter().filter(|arm| *arm == "warm").count();
    assert!((8..=32).contains(&warm), "{on_a:?}");
    assert!(on_a.iter().all(|arm| arm == "warm" || arm == "control"));

    a.flush().await;
    let status = &b.experiment_status("triage").await.unwrap()[0];
    assert_eq!(status.record.id, started.record.id);
    assert_eq!(
        status.figures.control.runs + status.figures.variant.runs,
        80
    );
    b.stop_experiment("bob", "triage", Verdict::Cut, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(arms(&a, &users[..5]).await.iter().all(|a| a == "none"));
    a.close().await;
    b.close().await;
}
