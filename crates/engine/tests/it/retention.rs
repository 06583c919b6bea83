//! `[retention]` through the engine on a real SQLite file: a pass deletes the runs older than
//! `runs_days`, strips the texts of those older than `keep_text_days`, leaves newer runs and
//! the outcome figures alone, and writes one audit entry with its counts.

use crate::common::engine;

use serde_json::{json, Value};
use shopfloor_engine::now_ms;
use shopfloor_store::{AuditAction, RunRecord};
use shopfloor_testkit::{self as testkit, OpenAiModel, WorkflowToml};

const DAY_MS: i64 = 86_400_000;

fn aged(id: &str, version: &str, at: i64) -> RunRecord {
    let message = "my card ending 4242 was charged twice";
    RunRecord {
        input: json!({ "message": message }),
        prompt: json!([{"role": "user", "content": message}]),
        raw_output: Some("We will refund you.".into()),
        output: Some(json!("We will refund you.")),
        model: Some("external".into()),
        prompt_tokens: 30,
        completion_tokens: 5,
        cost_usd: 0.01,
        ..crate::common::recorded(id, "reply", version, "", at)
    }
}

#[tokio::test]
async fn a_pass_deletes_old_runs_strips_older_texts_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let model = OpenAiModel::new("external", "http://127.0.0.1:9/v1").classes(&["internal"]);
    let reply = WorkflowToml::new(&["message"], "Draft a reply to: {{ message }}")
        .then("[output]\ntext = { max_chars = 500 }\n[route]\nmodels = [\"external\"]\n");
    testkit::write_project(dir.path(), &model.to_string(), &[("reply", &reply)]);
    let config = dir.path().join("shopfloor.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[retention]\nruns_days = 30\nkeep_text_days = 7\n");
    std::fs::write(&config, text).unwrap();
    let engine = engine(dir.path()).await;
    let version = engine.project.workflow("reply").unwrap().version.clone();
    let now = now_ms();
    let runs = [
        aged("d40", &version, now - 40 * DAY_MS),
        aged("d31", &version, now - 31 * DAY_MS),
        aged("d10", &version, now - 10 * DAY_MS),
        aged("d1", &version, now - DAY_MS),
    ];
    engine.store().insert_runs(&runs).await.unwrap();
    let before = engine.outcomes("reply", None).await.unwrap();

    let report = engine.apply_retention(now, 10).await.unwrap();
    assert_eq!(
        (report.deleted, report.stripped, report.more),
        (2, 1, false)
    );
    let store = engine.store();
    assert!(store.get_run("d40").await.unwrap().is_none());
    assert!(store.get_run("d31").await.unwrap().is_none());
    let stripped = store.get_run("d10").await.unwrap().unwrap();
    assert_eq!((stripped.input, stripped.output), (Value::Null, None));
    assert_eq!(stripped.cost_usd, 0.01, "the figures stay");
    let kept = store.get_run("d1").await.unwrap().unwrap();
    assert_eq!(
        kept.input["message"],
        "my card ending 4242 was charged twice"
    );
    // Outcomes count the deleted runs still: their weeks come from the rollups.
    let after = engine.outcomes("reply", None).await.unwrap();
    assert_eq!(
        serde_json::to_value(&after.total).unwrap(),
        serde_json::to_value(&before.total).unwrap()
    );
    let audit = store
        .latest_audit(AuditAction::RetentionApply, "runs")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audit.actor, "shopfloor");
    assert_eq!(
        (
            audit.detail["deleted"].clone(),
            audit.detail["stripped"].clone()
        ),
        (json!(2), json!(1))
    );
    // Nothing left to do: no second entry.
    let again = engine.apply_retention(now, 10).await.unwrap();
    assert_eq!((again.deleted, again.stripped), (0, 0));
    let entries = store.audit_entries(0, 1_000).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == AuditAction::RetentionApply)
            .count(),
        1
    );
    engine.close().await;
}
