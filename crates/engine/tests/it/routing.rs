//! The run path end to end against real HTTP servers on 127.0.0.1 and a real SQLite file:
//! retries, timeouts, fallbacks, output validation, policy refusals, recording.

use crate::common;
use common::engine;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shopfloor_engine::Engine;
use shopfloor_store::{AttemptOutcome, RunRecord, RunStatus};
use shopfloor_testkit::{
    openai_completion, openai_error, write_project, FakeServer, OpenAiModel, ReceivedRequest,
    Reply, Script, WorkflowToml,
};

/// A labels workflow routed to `primary` then `backup`, with two retries of 300 ms each.
fn workflow() -> String {
    WorkflowToml::new(&["subject"], "Subject: {{ subject }}")
        .line("description = \"Route tickets\"")
        .system("Route the ticket.")
        .then(
            "[output]\nlabels = [\"billing\", \"bug\", \"account\", \"other\"]\n\
             [route]\nmodels = [\"primary\", \"backup\"]\ntimeout_ms = 300\nretries = 2\n",
        )
}

/// Two servers, `primary` and `backup`, answering with these handlers, and the project routed
/// to them, opened.
async fn servers<P, B>(primary: P, backup: B) -> (FakeServer, FakeServer, tempfile::TempDir, Engine)
where
    P: Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static,
    B: Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static,
{
    let primary = FakeServer::start(primary).await;
    let backup = FakeServer::start(backup).await;
    let dir = tempfile::tempdir().unwrap();
    write_triage(dir.path(), &primary.base_url(), &backup.base_url());
    let engine = engine(dir.path()).await;
    (primary, backup, dir, engine)
}

/// Run `triage` on a ticket with this subject, on its route or on `model`.
async fn triage(engine: &Engine, subject: impl Into<Value>, model: Option<&str>) -> RunRecord {
    engine
        .run_one(
            "triage",
            json!({"subject": subject.into()}),
            model.map(Into::into),
        )
        .await
        .unwrap()
}

fn write_triage(dir: &Path, primary: &str, backup: &str) {
    let config = [
        OpenAiModel::new("primary", primary)
            .id("primary-model")
            .price(1.0, 2.0),
        OpenAiModel::new("backup", backup).id("backup-model"),
        OpenAiModel::new("public-only", backup)
            .id("p")
            .classes(&["public"]),
    ]
    .map(|m| m.to_string())
    .join("\n");
    write_project(dir, &config, &[("triage", &workflow())]);
}

fn always(text: &'static str) -> impl Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static {
    move |_| Reply::Json(200, openai_completion(text, 100, 5))
}

#[tokio::test]
async fn a_valid_answer_is_parsed_priced_and_recorded() {
    let (primary, backup, _dir, engine) = servers(always("Billing."), always("bug")).await;

    let run = triage(&engine, "refund please", None).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.output, Some(json!("billing")));
    assert_eq!(run.model.as_deref(), Some("primary"));
    assert_eq!((run.prompt_tokens, run.completion_tokens), (100, 5));
    assert!((run.cost_usd - (100.0 * 1.0 + 5.0 * 2.0) / 1e6).abs() < 1e-12);
    assert_eq!(backup.request_count(), 0);

    // The request on the wire carries the rendered prompt and the vendor's model id.
    let sent = &primary.requests()[0].body;
    assert_eq!(sent["model"], "primary-model");
    assert_eq!(sent["messages"][1]["content"], "Subject: refund please");

    let stored = engine
        .store()
        .get_run(&run.id)
        .await
        .unwrap()
        .expect("run recorded");
    assert_eq!(stored.status, RunStatus::Ok);
    assert_eq!(stored.attempts.len(), 1);
    assert_eq!(stored.prompt["messages"][0]["content"], "Route the ticket.");
    engine.close().await;
}

#[tokio::test]
async fn retryable_errors_are_retried_then_succeed() {
    let script = Script::new(
        [
            Reply::Json(429, openai_error("slow down", "rate_limit"))
                .with_header("Retry-After", "0"),
            Reply::Json(503, openai_error("overloaded", "server_error")),
        ],
        Reply::Json(200, openai_completion("bug", 10, 1)),
    );
    let (_primary, backup, _dir, engine) = servers(script.handler(), always("other")).await;

    let run = triage(&engine, "crash", None).await;
    assert_eq!(run.status, RunStatus::Ok, "{run:#?}");
    assert_eq!(run.output, Some(json!("bug")));
    let outcomes: Vec<_> = run.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::Error,
            AttemptOutcome::Error,
            AttemptOutcome::Ok
        ]
    );
    assert!(run.attempts[0].error.as_deref().unwrap().contains("429"));
    assert_eq!(backup.request_count(), 0);
    engine.close().await;
}

#[tokio::test]
async fn non_retryable_errors_fall_back_at_once() {
    let (primary, _backup, _dir, engine) = servers(
        |_| Reply::Json(401, openai_error("bad key", "invalid_api_key")),
        always("account"),
    )
    .await;

    let run = triage(&engine, "login", None).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.model.as_deref(), Some("backup"));
    assert_eq!(primary.request_count(), 1, "401 must not be retried");
    assert_eq!(run.attempts.len(), 2);
    engine.close().await;
}

#[tokio::test]
async fn timeouts_are_retried_then_the_next_model_answers() {
    let (_primary, _backup, _dir, engine) = servers(
        |_| Reply::Json(200, openai_completion("bug", 1, 1)).delayed(Duration::from_secs(2)),
        always("other"),
    )
    .await;

    let run = triage(&engine, "?", None).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.model.as_deref(), Some("backup"));
    // 1 try + 2 retries on the primary, each cut at timeout_ms, then the backup.
    assert_eq!(run.attempts.len(), 4);
    for a in &run.attempts[..3] {
        assert_eq!(a.model, "primary");
        assert!(a.error.as_deref().unwrap().contains("timed out"), "{a:?}");
        assert!(a.latency_ms >= 250 && a.latency_ms < 1500, "{a:?}");
    }
    engine.close().await;
}

#[tokio::test]
async fn every_model_failing_records_a_failed_run() {
    let (primary, backup, _dir, engine) = servers(
        |_| Reply::Json(500, openai_error("boom", "server_error")),
        |_| Reply::Raw(200, "{not json".into()),
    )
    .await;

    let run = triage(&engine, "?", None).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(primary.request_count(), 3);
    assert_eq!(backup.request_count(), 1, "malformed JSON is not retried");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("every routed model failed"),
        "{:?}",
        run.error
    );
    let stored = engine.store().get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.attempts.len(), 4);
    engine.close().await;
}

#[tokio::test]
async fn an_invalid_answer_is_asked_again_once_with_the_problem() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let first_invalid = move |_: &ReceivedRequest| {
        let text = if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            "I think it is about payments"
        } else {
            "billing"
        };
        Reply::Json(200, openai_completion(text, 10, 3))
    };
    let (primary, _backup, _dir, engine) = servers(first_invalid, always("other")).await;

    let run = triage(&engine, "refund", None).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(
        run.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![AttemptOutcome::Invalid, AttemptOutcome::Ok]
    );
    let second = &primary.requests()[1].body;
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        4,
        "system, user, the invalid answer, the correction"
    );
    assert!(messages[3]["content"]
        .as_str()
        .unwrap()
        .contains("not one of the allowed labels"));
    assert_eq!(run.prompt_tokens, 20);
    engine.close().await;
}

#[tokio::test]
async fn an_answer_that_stays_invalid_is_recorded_invalid_never_guessed() {
    let (primary, backup, _dir, engine) =
        servers(always("billing or maybe bug"), always("other")).await;

    let run = triage(&engine, "?", None).await;
    assert_eq!(run.status, RunStatus::Invalid);
    assert_eq!(run.output, None);
    assert_eq!(run.raw_output.as_deref(), Some("billing or maybe bug"));
    assert_eq!(primary.request_count(), 2);
    assert_eq!(
        backup.request_count(),
        0,
        "an invalid answer is not a reason to fall back"
    );
    engine.close().await;
}

#[tokio::test]
async fn a_model_that_may_not_see_the_data_is_never_called() {
    let (_primary, backup, _dir, engine) = servers(always("bug"), always("bug")).await;

    let run = triage(&engine, "?", Some("public-only")).await;
    assert_eq!(run.status, RunStatus::Refused);
    assert!(run
        .error
        .as_deref()
        .unwrap()
        .contains("may not see internal data"));
    assert_eq!(backup.request_count(), 0);
    assert!(
        engine.store().get_run(&run.id).await.unwrap().is_some(),
        "refusals are recorded"
    );
    engine.close().await;
}

#[tokio::test]
async fn input_that_breaks_the_schema_is_rejected_before_any_call() {
    let primary = FakeServer::start(always("bug")).await;
    let dir = tempfile::tempdir().unwrap();
    write_triage(dir.path(), &primary.base_url(), &primary.base_url());
    let engine = engine(dir.path()).await;
    let err = engine
        .run_one("triage", json!({"subject": 42}), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/subject"), "{err}");
    assert_eq!(primary.request_count(), 0);
    engine.close().await;
}
