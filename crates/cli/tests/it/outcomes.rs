//! `shopfloor outcomes` through the real binary, on SQLite and on PostgreSQL, against figures
//! computed by hand: 20 accepted outputs at 3 minutes each, one of them reviewed for 2 minutes,
//! is 58 minutes saved; the KPI recorded with `outcomes record` stands against its target.

use crate::common;

use std::path::Path;

use common::{open_store, shopfloor, text};
use serde_json::{json, Value};
use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};
use shopfloor_store::testing::TestPostgres;
use shopfloor_store::{
    Caller, ReviewDecisionRecord, ReviewTicket, ReviewUpdate, RunRecord, RunStatus, Store,
};
use shopfloor_testkit::assert_contains;

/// Monday 2026-11-30 12:00 UTC: ISO week 2026-W49.
const MONDAY_NOON: i64 = 1_796_040_000_000;

fn run(id: &str, status: RunStatus, cost_usd: f64, user: &str) -> RunRecord {
    run_at(MONDAY_NOON, id, status, cost_usd, user)
}

fn run_at(at: i64, id: &str, status: RunStatus, cost_usd: f64, user: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: "ticket-triage".into(),
        version: "v1".into(),
        batch_id: None,
        case_index: None,
        status,
        input: json!({"subject": "s", "body": "b"}),
        prompt: json!([]),
        raw_output: Some("billing".into()),
        output: Some(json!("billing")),
        error: None,
        model: Some("fake".into()),
        prompt_tokens: 100,
        completion_tokens: 1,
        cost_usd,
        latency_ms: 300,
        created_at_ms: at,
        attempts: Vec::new(),
        caller: Some(Caller {
            key_id: format!("key-{user}"),
            user: Some(user.into()),
            team: Some("support".into()),
        }),
        sampled_for_review: false,
        confidence: None,
        review: None,
        origin: Default::default(),
        experiment: None,
    }
}

fn held(at: i64, id: &str) -> RunRecord {
    RunRecord {
        status: RunStatus::Held,
        review: Some(ReviewTicket {
            reason: ReviewReason::HighRisk,
            approvals_required: 1,
            due_at_ms: None,
        }),
        ..run_at(at, id, RunStatus::Held, 0.02, "ann")
    }
}

/// 19 released runs, one held run approved after 2 minutes of review, one held run rejected,
/// two failed runs: 23 runs, 20 accepted (1 reviewed), $0.44 of model calls.
async fn seed(store: &dyn Store) {
    seed_at(store, MONDAY_NOON, "").await;
}

/// [`seed`] at `at`, with ids prefixed by `prefix`.
async fn seed_at(store: &dyn Store, at: i64, prefix: &str) {
    let id = |name: &str| format!("{prefix}{name}");
    let mut runs: Vec<RunRecord> = (0..19)
        .map(|i| {
            let user = if i % 2 == 0 { "ann" } else { "bo" };
            run_at(at, &id(&format!("ok-{i}")), RunStatus::Ok, 0.02, user)
        })
        .collect();
    runs.push(held(at, &id("held-approved")));
    runs.push(held(at, &id("held-rejected")));
    runs.push(run_at(at, &id("failed-1"), RunStatus::Failed, 0.01, "ann"));
    runs.push(run_at(at, &id("failed-2"), RunStatus::Failed, 0.01, "cy"));
    store.insert_runs(&runs).await.unwrap();
    let decide = |run_id: &str, decision: Decision, claimed: Option<i64>, status| ReviewUpdate {
        decision: ReviewDecisionRecord {
            run_id: run_id.into(),
            reviewer: "rita".into(),
            decision,
            output: None,
            reason: (decision == Decision::Reject).then(|| "unsafe".into()),
            note: None,
            claimed_at_ms: claimed,
            decided_at_ms: at + 600_000,
        },
        status,
        seen_decisions: 0,
        events: Vec::new(),
    };
    let approve = decide(
        &id("held-approved"),
        Decision::Approve,
        Some(at + 480_000),
        ReviewStatus::Approved,
    );
    assert!(store.decide_review(&approve).await.unwrap());
    let reject = decide(
        &id("held-rejected"),
        Decision::Reject,
        None,
        ReviewStatus::Rejected,
    );
    assert!(store.decide_review(&reject).await.unwrap());
}

/// The example project with `[outcome]` at 3 minutes per output and reviewers at $60 an hour.
fn project(dir: &Path) {
    let out = shopfloor(dir, &["init"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let path = dir.join("workflows/ticket-triage.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let toml = toml.replacen("[outcome]\n", "[outcome]\nreviewer_cost_per_hour = 60\n", 1);
    assert!(toml.contains("minutes_saved_per_accepted = 3"), "{toml}");
    std::fs::write(path, toml).unwrap();
}

fn outcomes(dir: &Path, database: &[&str], rest: &[&str]) -> (String, String) {
    let mut args: Vec<&str> = database.to_vec();
    args.extend(rest);
    let out = shopfloor(dir, &args);
    assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    text(&out)
}

async fn check(dir: &Path, database: &[&str]) {
    let (json_text, _) = outcomes(dir, database, &["outcomes", "ticket-triage", "--json"]);
    let report: Value = serde_json::from_str(&json_text).unwrap();
    let total = &report["total"];
    assert_eq!(total["runs"], 23, "{report:#}");
    assert_eq!(total["accepted"], 20);
    assert_eq!(total["accepted_reviewed"], 1);
    assert_eq!(total["accepted_unreviewed"], 19);
    assert_eq!(total["rejected"], 1);
    assert_eq!(total["not_answered"], 2);
    assert_eq!(total["reviewer_minutes"], 2.0);
    assert_eq!(total["minutes_saved"], 58.0, "20 × 3 − 2");
    // ($0.44 of model calls + 2 minutes at $60/h) ÷ 20 accepted = $0.122.
    let cost = total["cost_per_accepted_usd"].as_f64().unwrap();
    assert!((cost - 0.122).abs() < 1e-9, "{cost}");
    let week = &report["weeks"][0];
    assert_eq!(week["week"], "2026-W49");
    assert_eq!(
        (week["users"].clone(), week["teams"].clone()),
        (json!(3), json!(1))
    );

    // The KPI: baseline 42 → target 15 minutes; 28.5 is half way.
    outcomes(
        dir,
        database,
        &[
            "outcomes",
            "record",
            "ticket-triage",
            "--value",
            "28.5",
            "--at",
            "2026-12-01",
            "--note",
            "November",
        ],
    );
    let (table, _) = outcomes(dir, database, &["outcomes", "ticket-triage"]);
    assert_contains(
        &table,
        &[
            "all weeks: 23 runs · 20 accepted (1 reviewed, 19 unreviewed) · 1 rejected",
            "minutes saved 58.0 (reviewers spent 2.0)",
            "2026-W49",
            "latest 28.5 (2026-12-01) · 50% of the way to the target",
        ],
    );
    let (since, _) = outcomes(
        dir,
        database,
        &[
            "outcomes",
            "ticket-triage",
            "--since",
            "2026-12-07",
            "--json",
        ],
    );
    let since: Value = serde_json::from_str(&since).unwrap();
    assert_eq!(since["total"]["runs"], 0, "nothing from that day on");
}

#[tokio::test]
async fn outcomes_by_hand_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let store = open_store(dir.path()).await;
    seed(&*store).await;
    drop(store);
    check(dir.path(), &[]).await;
}

#[tokio::test]
async fn outcomes_by_hand_on_postgres() {
    let db = TestPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let store = shopfloor_store::open(db.url()).await.unwrap();
    seed(&*store).await;
    check(dir.path(), &["--database-url", db.url()]).await;
}

#[test]
fn a_bad_date_and_a_workflow_without_outcome_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let out = shopfloor(
        dir.path(),
        &["outcomes", "ticket-triage", "--since", "2026-13-01"],
    );
    assert!(!out.status.success());
    assert_contains(
        &text(&out).1,
        &["\"2026-13-01\" is not a date; expected YYYY-MM-DD"],
    );
    let out = shopfloor(
        dir.path(),
        &["outcomes", "record", "ticket-triage", "--value", "NaN"],
    );
    assert!(!out.status.success());
    assert_contains(
        &text(&out).1,
        &["NaN is not a KPI value; expected a finite number"],
    );
}

#[tokio::test]
async fn the_portfolio_flags_falling_acceptance_and_suggests_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let store = open_store(dir.path()).await;
    // The week before: 98 of 100 accepted; this week: 80 of 100.
    let now = shopfloor_engine::now_ms();
    let mut runs = Vec::new();
    for (week, accepted, at) in [
        ("before", 98, now - 8 * 86_400_000),
        ("now", 80, now - 86_400_000),
    ] {
        for i in 0..100 {
            let status = if i < accepted {
                RunStatus::Ok
            } else {
                RunStatus::Invalid
            };
            runs.push(RunRecord {
                created_at_ms: at,
                ..run(&format!("{week}-{i}"), status, 0.001, "ann")
            });
        }
    }
    store.insert_runs(&runs).await.unwrap();
    drop(store);
    let (json_text, _) = outcomes(dir.path(), &[], &["portfolio", "--json"]);
    let portfolio: Value = serde_json::from_str(&json_text).unwrap();
    let entry = &portfolio[0];
    assert_eq!(entry["workflow"], "ticket-triage", "{portfolio:#}");
    assert_eq!(entry["eval_cases"], 60);
    assert_eq!(
        (
            entry["this_week"]["runs"].clone(),
            entry["this_week"]["accepted"].clone()
        ),
        (json!(100), json!(80))
    );
    assert_eq!(entry["last_week"]["accepted"], 98);
    let flags: Vec<&str> = entry["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["flag"].as_str().unwrap())
        .collect();
    // Fewer accepted outputs for the same spend: each accepted one costs 22% more.
    assert_eq!(flags, ["acceptance_falling", "cost_rising"], "{entry:#}");
    assert_eq!(entry["suggestion"], "fix");
    let (table, _) = outcomes(dir.path(), &[], &["portfolio"]);
    assert_contains(
        &table,
        &[
            "ticket-triage",
            "FIX",
            "acceptance fell from 98% to 80% week over week",
        ],
    );
}

/// Monday 2025-03-03 12:00 UTC: ISO week 2025-W10, long before any test runs.
const W10_NOON: i64 = 1_741_003_200_000;

#[tokio::test]
async fn the_weekly_review_is_the_same_bytes_for_the_same_database_and_week() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let store = open_store(dir.path()).await;
    // This week as in `seed`; the week before, a smaller one.
    seed_at(&*store, W10_NOON, "w10-").await;
    let before: Vec<RunRecord> = (0..10)
        .map(|i| {
            run_at(
                W10_NOON - 7 * 86_400_000,
                &format!("w09-{i}"),
                RunStatus::Ok,
                0.02,
                "ann",
            )
        })
        .collect();
    store.insert_runs(&before).await.unwrap();
    drop(store);
    outcomes(
        dir.path(),
        &[],
        &[
            "outcomes",
            "record",
            "ticket-triage",
            "--value",
            "14",
            "--at",
            "2025-03-05",
        ],
    );
    let week = ["report", "weekly", "--week", "2025-W10"];
    let (first, _) = outcomes(dir.path(), &[], &week);
    let (second, _) = outcomes(dir.path(), &[], &week);
    assert_eq!(
        first, second,
        "the same database and week give the same report"
    );
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/weekly-2025-W10.md");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &first).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert_eq!(
        first,
        expected,
        "the report differs from {}",
        snapshot.display()
    );

    let out = dir.path().join("weekly.html");
    let (_, said) = outcomes(
        dir.path(),
        &[],
        &[
            "report",
            "weekly",
            "--week",
            "2025-W10",
            "--format",
            "html",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert_contains(&said, &["wrote"]);
    let html = std::fs::read_to_string(out).unwrap();
    assert_contains(
        &html,
        &[
            "<svg role=\"img\" aria-label=\"Minutes saved this week\"",
            "2025-W10",
            "<td><code>ticket-triage</code></td>",
        ],
    );
    assert!(!html.contains("<script"), "no scripts");

    let out = shopfloor(dir.path(), &["report", "weekly", "--week", "2025-10"]);
    assert!(!out.status.success());
    assert_contains(
        &text(&out).1,
        &["\"2025-10\" is not an ISO week; expected YYYY-Www"],
    );
}
