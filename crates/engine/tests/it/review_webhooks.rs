//! The review loop's webhook and SLA against a real HTTP receiver and a real SQLite file:
//! a decision's event is delivered signed, once; a failed delivery waits in the outbox, across
//! a restart, until its retry is due; items past their SLA are escalated once or rejected.

use crate::common;
use common::engine;

use std::path::Path;

use serde_json::{json, Value};
use shopfloor_core::webhook::{verify_signature, EVENT_ID_HEADER, SIGNATURE_HEADER};
use shopfloor_engine::{DecisionRequest, Engine, Reviewer};
use shopfloor_store::{AuditAction, DeliveryState, EventFilter, EventKind, RunStatus};
use shopfloor_testkit::{
    self as testkit, openai_completion, FakeServer, OpenAiModel, Reply, Script, WorkflowToml,
};

const SECRET_ENV: &str = "SHOPFLOOR_TEST_REVIEW_HOOK_SECRET";
const SECRET: &str = "whsec-test-7f3a";

/// A high-risk text workflow `reply` on `upstream`, its review events sent to `receiver`.
fn write_project(dir: &Path, upstream: &str, receiver: &str, on_sla: &str) {
    std::env::set_var(SECRET_ENV, SECRET);
    let model = OpenAiModel::new("external", upstream).classes(&["internal"]);
    let reply = WorkflowToml::new(&["message"], "Draft a reply to: {{ message }}")
        .line("risk = \"high\"")
        .then(&format!(
            "[output]\ntext = {{ max_chars = 500 }}\n[route]\nmodels = [\"external\"]\n\
             [review]\nsla_minutes = 1\non_sla = \"{on_sla}\"\n\
             webhook = {{ url = \"{receiver}/hooks/review\", secret_env = \"{SECRET_ENV}\" }}\n"
        ));
    testkit::write_project(dir, &model.to_string(), &[("reply", &reply)]);
}

/// `http://HOST:PORT` of a fake server.
fn origin(server: &FakeServer) -> String {
    format!("http://{}", server.addr())
}

async fn upstream() -> FakeServer {
    FakeServer::start(|_| Reply::Json(200, openai_completion("We will refund you.", 20, 5))).await
}

async fn held_run(engine: &Engine) -> String {
    let run = engine
        .run_one("reply", json!({"message": "refund please"}), None)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Held);
    engine.flush().await;
    run.id
}

fn reviewer(name: &str) -> Reviewer {
    Reviewer {
        name: name.into(),
        key_id: None,
    }
}

#[tokio::test]
async fn a_decision_is_delivered_signed_and_a_failure_waits_in_the_outbox_across_a_restart() {
    let upstream = upstream().await;
    // The receiver fails the first delivery, then takes every one after.
    let script = Script::new([Reply::Json(500, json!({}))], Reply::Json(200, json!({})));
    let receiver = FakeServer::start(script.handler()).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &upstream.base_url(),
        &origin(&receiver),
        "escalate",
    );
    let engine = engine(dir.path()).await;
    let run_id = held_run(&engine).await;
    engine
        .review_decide(
            &run_id,
            &reviewer("rita"),
            DecisionRequest::Approve { note: None },
        )
        .await
        .unwrap();
    let now = shopfloor_engine::now_ms();
    let first = engine.deliver_due_at(now).await.unwrap();
    assert_eq!((first.delivered, first.retrying), (0, 1));
    let pending = engine
        .deliveries(&EventFilter {
            state: Some(DeliveryState::Pending),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let event = &pending[0];
    assert_eq!((event.kind, event.attempts), (EventKind::ReviewReleased, 1));
    assert_eq!(event.last_status, Some(500));
    assert!(
        event.next_attempt_at_ms.unwrap() >= now + 30_000,
        "the retry waits: {event:?}"
    );
    assert_eq!(
        engine.deliver_due_at(now + 1_000).await.unwrap().delivered,
        0,
        "not due again yet"
    );
    engine.close().await;

    // A restart: the event is still there and goes out when its retry is due.
    let engine = common::engine(dir.path()).await;
    let second = engine.deliver_due_at(now + 31_000).await.unwrap();
    assert_eq!((second.delivered, second.retrying), (1, 0));
    assert_eq!(
        engine
            .deliver_due_at(now + 600_000)
            .await
            .unwrap()
            .delivered,
        0
    );
    let delivered = engine.deliveries(&EventFilter::default()).await.unwrap();
    assert_eq!(delivered[0].state(), DeliveryState::Delivered);
    assert_eq!(delivered[0].attempts, 2);
    engine.close().await;

    let received = receiver.requests();
    assert_eq!(received.len(), 2, "one failed try, one delivery");
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r.header(EVENT_ID_HEADER).unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "a retry carries the same event id");
    let last = &received[1];
    assert_eq!(last.path, "/hooks/review");
    verify_signature(
        SECRET.as_bytes(),
        last.header(SIGNATURE_HEADER).unwrap(),
        &last.raw_body,
        shopfloor_engine::now_ms() / 1000,
        300,
    )
    .expect("the receiver can verify the signature");
    let body: Value = serde_json::from_slice(&last.raw_body).unwrap();
    assert_eq!(body["id"], ids[0]);
    assert_eq!(body["type"], "review.released");
    assert_eq!(body["run_id"], run_id.as_str());
    assert_eq!(body["data"]["by"], "rita");
    assert_eq!(body["data"]["output"], "We will refund you.");
}

#[tokio::test]
async fn past_its_sla_an_item_is_escalated_once_or_rejected() {
    let upstream = upstream().await;
    let receiver = FakeServer::start(|_| Reply::Json(200, json!({}))).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &upstream.base_url(),
        &origin(&receiver),
        "escalate",
    );
    let engine = engine(dir.path()).await;
    let escalated = held_run(&engine).await;
    let now = shopfloor_engine::now_ms();
    assert_eq!(engine.review_sweep_at(now).await.unwrap().escalated, 0);
    let later = now + 61_000;
    let sweep = engine.review_sweep_at(later).await.unwrap();
    assert_eq!((sweep.escalated, sweep.rejected), (1, 0));
    assert_eq!(
        engine.review_sweep_at(later + 1).await.unwrap().escalated,
        0,
        "escalated once"
    );
    let item = engine.review_show(&escalated).await.unwrap().item;
    assert_eq!(item.escalated_at_ms, Some(later));
    let events = engine.deliveries(&EventFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::ReviewOverdue);
    engine.close().await;

    // With on_sla = "reject", the next overdue item is rejected by the SLA.
    write_project(
        dir.path(),
        &upstream.base_url(),
        &origin(&receiver),
        "reject",
    );
    let engine = common::engine(dir.path()).await;
    let rejected = held_run(&engine).await;
    let later = shopfloor_engine::now_ms() + 61_000;
    let sweep = engine.review_sweep_at(later).await.unwrap();
    assert_eq!((sweep.escalated, sweep.rejected), (0, 1));
    let run = engine.store().get_run(&rejected).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Rejected);
    assert_eq!(
        run.error.as_deref(),
        Some("rejected by review: sla_expired")
    );
    let mut kinds: Vec<EventKind> = engine
        .deliveries(&EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.run_id.as_deref() == Some(rejected.as_str()))
        .map(|e| e.kind)
        .collect();
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(kinds, [EventKind::ReviewOverdue, EventKind::ReviewRejected]);
    let audit = engine.store().audit_entries(0, 100).await.unwrap();
    assert!(
        audit.iter().any(|e| e.action == AuditAction::ReviewReject
            && e.actor == "shopfloor"
            && e.subject == rejected),
        "the SLA's reject is in the audit chain"
    );
    // Events are due when written (as of the sweep's clock here).
    assert_eq!(engine.deliver_due_at(later).await.unwrap().delivered, 3);
    assert_eq!(receiver.request_count(), 3);
    engine.close().await;
}

/// A pilot labels workflow whose eval set expects `billing`, its events sent to `receiver`.
fn write_labelled_project(dir: &Path, receiver: &str) {
    std::env::set_var(SECRET_ENV, SECRET);
    let model = OpenAiModel::new("external", "http://127.0.0.1:9/v1").classes(&["internal"]);
    let triage = WorkflowToml::new(&["text"], "Route: {{ text }}")
        .line("owner = \"dana@acme.example\"")
        .then(&format!(
            "[outcome]\nkpi = \"minutes\"\nminutes_saved_per_accepted = 2\n\
             [output]\nlabels = [\"billing\", \"bug\"]\n[route]\nmodels = [\"external\"]\n\
             [eval]\ndataset = \"datasets/triage.jsonl\"\nscorers = [\"label_accuracy\"]\n\
             [review]\nwebhook = {{ url = \"{receiver}/hooks/drift\", secret_env = \"{SECRET_ENV}\" }}\n"
        ))
        .replace("stage = \"draft\"", "stage = \"pilot\"");
    testkit::write_project(dir, &model.to_string(), &[("triage", &triage)]);
    std::fs::create_dir_all(dir.join("datasets")).unwrap();
    let cases: String = (0..60)
        .map(|i| format!("{{\"id\": \"c{i}\", \"input\": {{\"text\": \"invoice {i}\"}}, \"expected\": \"billing\"}}\n"))
        .collect();
    std::fs::write(dir.join("datasets/triage.jsonl"), cases).unwrap();
}

#[tokio::test]
async fn a_drift_alert_goes_out_once_per_period_from_any_number_of_replicas() {
    let receiver = FakeServer::start(|_| Reply::Json(200, json!({}))).await;
    let dir = tempfile::tempdir().unwrap();
    write_labelled_project(dir.path(), &origin(&receiver));
    let engine = engine(dir.path()).await;
    let now = shopfloor_engine::now_ms();
    answer_bug_for_an_hour(&engine, now).await;
    let hour = 3_600_000;
    let verdicts = engine.drift_sweep(now, hour).await.unwrap();
    assert_eq!(verdicts, vec![("triage".to_string(), true)]);
    // A second replica (or the next tick) in the same hour adds nothing.
    let other = common::engine(dir.path()).await;
    other.drift_sweep(now + 1_000, hour).await.unwrap();
    let events = engine.deliveries(&EventFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, EventKind::DriftDetected);
    let body: Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["type"], "drift.detected");
    assert!(
        body["data"]["alerts"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{body}"
    );
    assert_eq!(
        engine.deliver_due_at(now + 2_000).await.unwrap().delivered,
        1
    );
    assert_eq!(receiver.requests()[0].path, "/hooks/drift");
    other.close().await;
    engine.close().await;
}

/// Drift alerts go to `[monitoring] webhook` when it is set (not to the workflow's review
/// webhook), and a week's operating review to `[monitoring] weekly_webhook`, queued once per
/// week whatever the number of replicas and restarts, and delivered signed.
#[tokio::test]
async fn drift_alerts_and_the_weekly_review_go_to_the_monitoring_webhooks() {
    let receiver = FakeServer::start(|_| Reply::Json(200, json!({}))).await;
    let dir = tempfile::tempdir().unwrap();
    write_labelled_project(dir.path(), &origin(&receiver));
    let config = dir.path().join("shopfloor.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[monitoring]\nwebhook = {{ url = \"{0}/hooks/ops-drift\", secret_env = \"{SECRET_ENV}\" }}\n\
         weekly_webhook = {{ url = \"{0}/hooks/weekly\", secret_env = \"{SECRET_ENV}\" }}\n",
        origin(&receiver)
    ));
    std::fs::write(&config, text).unwrap();
    let engine = engine(dir.path()).await;
    let now = shopfloor_engine::now_ms();
    answer_bug_for_an_hour(&engine, now).await;
    assert_eq!(
        engine.drift_sweep(now, 3_600_000).await.unwrap(),
        vec![("triage".to_string(), true)]
    );

    let week = shopfloor_core::calendar::iso_week(now - 7 * 86_400_000);
    assert_eq!(
        engine.queue_weekly_review(now).await.unwrap().as_deref(),
        Some(week.as_str())
    );
    let other = common::engine(dir.path()).await;
    other.queue_weekly_review(now + 60_000).await.unwrap();
    let events = engine.deliveries(&EventFilter::default()).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        events.len(),
        2,
        "one drift alert, one weekly review: {kinds:?}"
    );
    assert_eq!(
        engine
            .deliver_due_at(now + 120_000)
            .await
            .unwrap()
            .delivered,
        2
    );
    let requests = receiver.requests();
    let mut paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/hooks/ops-drift", "/hooks/weekly"]);
    let weekly = requests.iter().find(|r| r.path == "/hooks/weekly").unwrap();
    let body: Value = serde_json::from_slice(&weekly.raw_body).unwrap();
    assert_eq!(body["type"], "report.weekly");
    assert_eq!(body["data"]["week"], week.as_str());
    let markdown = body["data"]["markdown"].as_str().unwrap();
    assert!(
        markdown.starts_with(&format!("# Weekly operating review, {week}")),
        "{markdown}"
    );
    verify_signature(
        SECRET.as_bytes(),
        weekly.header(SIGNATURE_HEADER).unwrap(),
        &weekly.raw_body,
        shopfloor_engine::now_ms() / 1000,
        300,
    )
    .expect("the receiver can verify the weekly review's signature");
    other.close().await;
    engine.close().await;
}

/// The eval set expects billing; the hour before `now` answered bug, 250 times.
async fn answer_bug_for_an_hour(engine: &Engine, now: i64) {
    let version = engine.project.workflow("triage").unwrap().version.clone();
    let runs: Vec<shopfloor_store::RunRecord> = (0..250)
        .map(|i| shopfloor_store::RunRecord {
            id: format!("r{i}"),
            ..recorded_run(&version, now - 3_600_000 + i)
        })
        .collect();
    engine.store().insert_runs(&runs).await.unwrap();
}

/// A run of `triage` answered `bug` at `at`.
fn recorded_run(version: &str, at: i64) -> shopfloor_store::RunRecord {
    shopfloor_store::RunRecord {
        input: json!({"text": "the app crashes"}),
        model: Some("external".into()),
        ..common::recorded("", "triage", version, "bug", at)
    }
}
