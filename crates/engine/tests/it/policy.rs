//! `[policy.pii]` on the run path, against a real HTTP upstream and a real SQLite file: what a
//! model outside the building sees, what the caller gets back, and what the database keeps.

use crate::common;
use common::engine;

use std::path::Path;

use std::time::Duration;

use serde_json::json;
use shopfloor_engine::Engine;
use shopfloor_store::{AuditAction, RunRecord, RunStatus};
use shopfloor_testkit::{
    self as testkit, openai_completion, FakeServer, OpenAiModel, ReceivedRequest, Reply,
    WorkflowToml,
};

const EMAIL: &str = "dana.k@client.example";
const CARD: &str = "4111 1111 1111 1111";

/// `[policy.pii]` with `on_external`, and a text workflow `reply` on the model `external`.
fn write_project(dir: &Path, base_url: &str, on_external: &str, on_premises: bool) {
    let policy = format!(
        "[policy.pii]\ndetect = [\"email\", \"credit_card\"]\non_external = \"{on_external}\"\non_store = \"redact\"\n"
    );
    let external = OpenAiModel::new("external", base_url)
        .classes(&["internal"])
        .line(&format!("on_premises = {on_premises}"));
    let reply = WorkflowToml::new(&["message"], "Draft a reply to: {{ message }}")
        .then("[output]\ntext = { max_chars = 500 }\n[route]\nmodels = [\"external\"]\n");
    testkit::write_project(dir, &format!("{policy}\n{external}"), &[("reply", &reply)]);
}

/// Echoes the placeholder or address it was given, as a model drafting a reply would.
fn echo(request: &ReceivedRequest) -> Reply {
    let prompt = request.body["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let to = if prompt.contains("[EMAIL_1]") {
        "[EMAIL_1]"
    } else {
        EMAIL
    };
    Reply::Json(
        200,
        openai_completion(&format!("Hello, we will write to {to} today."), 20, 10),
    )
}

fn input() -> serde_json::Value {
    json!({"message": format!("Please email {EMAIL}, my card {CARD} was charged twice.")})
}

/// The project of [`write_project`] on `server`, its workflow at `risk` (tier, review sample
/// rate) when given, opened; keep the folder alive with the engine.
async fn open(
    server: &FakeServer,
    on_external: &str,
    on_premises: bool,
    risk: Option<(&str, f64)>,
) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &server.base_url(), on_external, on_premises);
    if let Some((risk, sample_rate)) = risk {
        set_risk(dir.path(), risk, sample_rate);
    }
    let engine = engine(dir.path()).await;
    (dir, engine)
}

/// The run as the store keeps it, as JSON text.
async fn stored_text(engine: &Engine, run: &RunRecord) -> String {
    let stored = engine.store().get_run(&run.id).await.unwrap();
    serde_json::to_string(&stored.expect("the run is recorded")).unwrap()
}

/// Run `reply` on [`input`].
async fn reply(engine: &Engine) -> RunRecord {
    engine.run_one("reply", input(), None).await.unwrap()
}

/// The workflow of [`write_project`] at another risk tier and review sample rate.
fn set_risk(dir: &Path, risk: &str, sample_rate: f64) {
    let path = dir.join("workflows/reply.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        path,
        format!("risk = \"{risk}\"\n{text}\n[review]\nsample_rate = {sample_rate}\n"),
    )
    .unwrap();
}

#[tokio::test]
async fn an_external_model_sees_placeholders_the_caller_gets_the_originals_the_store_keeps_neither()
{
    let server = FakeServer::start(echo).await;
    let (_dir, engine) = open(&server, "redact", false, None).await;

    let run = reply(&engine).await;
    assert_eq!(run.status, RunStatus::Ok, "{run:#?}");
    let sent = server.requests()[0].body.to_string();
    assert!(
        !sent.contains(EMAIL) && !sent.contains("4111"),
        "raw PII left the building: {sent}"
    );
    assert!(
        sent.contains("[EMAIL_1]") && sent.contains("[CARD_1]"),
        "{sent}"
    );
    assert_eq!(
        run.output,
        Some(json!(format!("Hello, we will write to {EMAIL} today.")))
    );

    let stored = stored_text(&engine, &run).await;
    assert!(
        !stored.contains(EMAIL) && !stored.contains("4111"),
        "raw PII stored: {stored}"
    );
    assert!(stored.contains("[EMAIL_1]"), "{stored}");
    engine.close().await;
}

#[tokio::test]
async fn block_refuses_naming_the_kinds_never_the_data_and_is_audited() {
    let server = FakeServer::start(echo).await;
    let (_dir, engine) = open(&server, "block", false, None).await;

    let run = reply(&engine).await;
    assert_eq!(run.status, RunStatus::Refused);
    assert_eq!(server.request_count(), 0);
    let error = run.error.unwrap();
    assert!(
        error.contains("1 email") && error.contains("1 credit_card"),
        "{error}"
    );
    assert!(!error.contains(EMAIL) && !error.contains("4111"), "{error}");
    // The refusal is audited, naming the kinds and never the data.
    let entries = engine.store().audit_entries(0, 100).await.unwrap();
    let refusal = entries
        .iter()
        .find(|e| e.action == AuditAction::PolicyRefuse)
        .expect("the refusal is audited");
    assert_eq!(refusal.subject, "reply");
    assert_eq!(refusal.detail["run_id"], run.id.as_str());
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains(EMAIL) && !text.contains("4111"), "{text}");
    assert!(text.contains("credit_card"), "{text}");
    engine.close().await;
}

#[tokio::test]
async fn an_on_premises_model_sees_the_raw_text_but_the_store_still_redacts() {
    let server = FakeServer::start(echo).await;
    let (_dir, engine) = open(&server, "block", true, None).await;

    let run = reply(&engine).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert!(server.requests()[0].body.to_string().contains(EMAIL));
    let stored = stored_text(&engine, &run).await;
    assert!(!stored.contains(EMAIL), "{stored}");
    engine.close().await;
}

/// `Runner::ask` (the eval judge's path) is under the same policy as workflow runs.
#[tokio::test]
async fn a_judge_outside_the_building_sees_placeholders_too() {
    use std::sync::Arc;

    use shopfloor_core::spec::{parse_config, DataClass};
    use shopfloor_engine::{ModelPool, Runner};
    use shopfloor_providers::{Message, Role};

    let server = FakeServer::start(echo).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &server.base_url(), "redact", false);
    let text = std::fs::read_to_string(dir.path().join("shopfloor.toml")).unwrap();
    let (config, problems) = parse_config("shopfloor.toml", &text);
    assert!(problems.is_empty(), "{problems:?}");
    let models = Arc::new(ModelPool::new(dir.path().to_path_buf(), None));
    let runner = Runner::new(Arc::new(config), models, common::fast_retry());
    let grade = vec![
        Message::new(Role::System, "Grade the reply."),
        Message::new(Role::User, format!("Draft a reply to: write to {EMAIL}")),
    ];
    runner
        .ask("external", DataClass::Internal, grade, 50, budget())
        .await
        .unwrap();
    let sent = server.requests()[0].body.to_string();
    assert!(
        !sent.contains(EMAIL) && sent.contains("[EMAIL_1]"),
        "{sent}"
    );

    let refused = runner
        .ask(
            "external",
            DataClass::Restricted,
            vec![Message::new(Role::User, "x")],
            5,
            budget(),
        )
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("may not see restricted data"),
        "{refused}"
    );
    assert_eq!(server.request_count(), 1);
}

fn budget() -> shopfloor_engine::CallBudget {
    shopfloor_engine::CallBudget {
        timeout: Duration::from_secs(5),
        retries: 2,
    }
}

#[tokio::test]
async fn a_high_risk_output_is_held_and_never_released() {
    let server = FakeServer::start(echo).await;
    let (_dir, engine) = open(&server, "redact", false, Some(("high", 0.0))).await;

    let run = reply(&engine).await;
    assert_eq!(run.status, RunStatus::Held, "{run:#?}");
    assert!(run.output.is_some(), "the reviewer needs the output");
    assert_eq!(shopfloor_engine::released_output(&run), None);
    let stored = engine.store().get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.status, RunStatus::Held);
    engine.close().await;
}

#[tokio::test]
async fn medium_risk_outputs_are_released_and_sampled_for_review() {
    let server = FakeServer::start(echo).await;
    let (_dir, engine) = open(&server, "redact", false, Some(("medium", 1.0))).await;
    let run = reply(&engine).await;
    assert_eq!(run.status, RunStatus::Ok);
    assert!(shopfloor_engine::released_output(&run).is_some());
    assert!(run.sampled_for_review);
    assert!(
        engine
            .store()
            .get_run(&run.id)
            .await
            .unwrap()
            .unwrap()
            .sampled_for_review
    );
    engine.close().await;

    // At rate 0 nothing is sampled.
    let (_dir, unsampled) = open(&server, "redact", false, Some(("medium", 0.0))).await;
    let run = reply(&unsampled).await;
    assert!(!run.sampled_for_review);
    unsampled.close().await;
}
