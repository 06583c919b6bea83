//! Experiments against a real SQLite file and a real PostgreSQL database: one live experiment
//! per workflow whichever store starts it, runs keep their experiment and arm, and each arm's
//! figures are counted from its runs and their reviews as worked out by hand.

use crate::common;

use common::{both_backends, run, Db};
use serde_json::json;
use shopfloor_core::experiment::{Guardrail, Metric, CONTROL};
use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};
use shopfloor_store::{
    open, ExperimentArm, ExperimentEnd, ExperimentRecord, ExperimentState, ReviewDecisionRecord,
    ReviewTicket, ReviewUpdate, RunRecord, RunStatus, StoreError,
};

both_backends!(
    one_live_experiment_per_workflow_across_stores,
    halting_and_stopping_move_the_state_once,
    arm_figures_come_from_runs_and_reviews,
);

fn experiment(id: &str, workflow: &str, started_at_ms: i64) -> ExperimentRecord {
    ExperimentRecord {
        id: id.into(),
        workflow: workflow.into(),
        variant: "terse".into(),
        variant_version: "v-b".into(),
        control_version: "v-a".into(),
        hypothesis: "shorter answers are accepted more often".into(),
        metric: Metric::AcceptanceRate,
        guardrails: vec![Guardrail::parse("cost_per_accepted:1.5x").unwrap()],
        share: 0.25,
        min_runs: 500,
        mde: Some(0.05),
        subject_field: Some("customer".into()),
        state: ExperimentState::Running,
        started_at_ms,
        started_by: "ann".into(),
        ended_at_ms: None,
        ended_by: None,
        decision: None,
        note: None,
        halted_reason: None,
    }
}

async fn one_live_experiment_per_workflow_across_stores(db: &Db) {
    let first = experiment("e1", "triage", 1_000);
    db.store.insert_experiment(&first).await.unwrap();
    // A second store on the same database (another replica) cannot start a second one.
    let other = open(&db.location).await.unwrap();
    let err = other
        .insert_experiment(&experiment("e2", "triage", 2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
    // Another workflow may have its own.
    other
        .insert_experiment(&experiment("e3", "reply", 3_000))
        .await
        .unwrap();
    assert_eq!(db.store.experiments(Some("triage")).await.unwrap(), [first]);
    let all: Vec<String> = db
        .store
        .experiments(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(all, ["e3", "e1"]);
    // Once stopped, the workflow may start another.
    let stop = ExperimentEnd {
        state: ExperimentState::Stopped,
        at_ms: 4_000,
        by: "ann".into(),
        decision: Some("cut".into()),
        note: Some("no lift".into()),
        halted_reason: None,
    };
    assert!(db.store.end_experiment("e1", &stop).await.unwrap());
    other
        .insert_experiment(&experiment("e4", "triage", 5_000))
        .await
        .unwrap();
    let running: Vec<String> = db
        .store
        .running_experiments()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(running, ["e3", "e4"]);
}

async fn halting_and_stopping_move_the_state_once(db: &Db) {
    db.store
        .insert_experiment(&experiment("e1", "triage", 1_000))
        .await
        .unwrap();
    let halt = ExperimentEnd {
        state: ExperimentState::Halted,
        at_ms: 2_000,
        by: "shopfloor".into(),
        decision: None,
        note: None,
        halted_reason: Some("guardrail cost_per_accepted:1.5x".into()),
    };
    assert!(db.store.end_experiment("e1", &halt).await.unwrap());
    // Halting twice changes nothing; a halted experiment takes no traffic.
    assert!(!db.store.end_experiment("e1", &halt).await.unwrap());
    assert!(db.store.running_experiments().await.unwrap().is_empty());
    let stop = ExperimentEnd {
        state: ExperimentState::Stopped,
        at_ms: 3_000,
        by: "ann".into(),
        decision: Some("cut".into()),
        note: Some("costs too much".into()),
        halted_reason: None,
    };
    assert!(db.store.end_experiment("e1", &stop).await.unwrap());
    assert!(!db.store.end_experiment("e1", &stop).await.unwrap());
    let stored = &db.store.experiments(Some("triage")).await.unwrap()[0];
    assert_eq!(stored.state, ExperimentState::Stopped);
    assert_eq!(stored.decision.as_deref(), Some("cut"));
    assert_eq!(stored.ended_by.as_deref(), Some("ann"));
    assert_eq!(stored.ended_at_ms, Some(3_000));
    // The breach that halted it stays on the record.
    assert_eq!(
        stored.halted_reason.as_deref(),
        Some("guardrail cost_per_accepted:1.5x")
    );
}

fn in_arm(id: &str, arm: &str, status: RunStatus, cost: f64, latency_ms: u64) -> RunRecord {
    let held = status == RunStatus::Held;
    RunRecord {
        status,
        cost_usd: cost,
        latency_ms,
        output: Some(json!("billing")),
        review: held.then_some(ReviewTicket {
            reason: ReviewReason::HighRisk,
            approvals_required: 1,
            due_at_ms: None,
        }),
        experiment: Some(ExperimentArm {
            id: "e1".into(),
            arm: arm.into(),
        }),
        ..run(id, "triage", 1_000, None)
    }
}

async fn decide(db: &Db, run_id: &str, decision: Decision, status: ReviewStatus) {
    let update = ReviewUpdate {
        decision: ReviewDecisionRecord {
            run_id: run_id.into(),
            reviewer: "ann".into(),
            decision,
            output: (decision == Decision::Edit).then(|| json!("bug")),
            reason: (decision == Decision::Reject).then(|| "wrong".into()),
            note: None,
            claimed_at_ms: None,
            decided_at_ms: 5_000,
        },
        status,
        seen_decisions: 0,
        events: Vec::new(),
    };
    assert!(db.store.decide_review(&update).await.unwrap());
}

async fn arm_figures_come_from_runs_and_reviews(db: &Db) {
    db.store
        .insert_experiment(&experiment("e1", "triage", 1_000))
        .await
        .unwrap();
    let mut runs = vec![
        // Control: four held (two approved, one edited, one pending), one invalid.
        in_arm("c1", CONTROL, RunStatus::Held, 0.001, 100),
        in_arm("c2", CONTROL, RunStatus::Held, 0.001, 200),
        in_arm("c3", CONTROL, RunStatus::Held, 0.001, 300),
        in_arm("c4", CONTROL, RunStatus::Held, 0.001, 400),
        in_arm("c5", CONTROL, RunStatus::Invalid, 0.002, 500),
        // Variant: two held (one approved, one rejected).
        in_arm("v1", "terse", RunStatus::Held, 0.003, 50),
        in_arm("v2", "terse", RunStatus::Held, 0.005, 70),
    ];
    // A run outside any experiment counts nowhere.
    runs.push(run("other", "triage", 1_000, None));
    db.store.insert_runs(&runs).await.unwrap();
    decide(db, "c1", Decision::Approve, ReviewStatus::Approved).await;
    decide(db, "c2", Decision::Approve, ReviewStatus::Approved).await;
    decide(db, "c3", Decision::Edit, ReviewStatus::Edited).await;
    decide(db, "v1", Decision::Approve, ReviewStatus::Approved).await;
    decide(db, "v2", Decision::Reject, ReviewStatus::Rejected).await;

    let figures = db.store.experiment_figures("e1").await.unwrap();
    let c = figures.control;
    assert_eq!(
        (c.runs, c.invalid, c.reviewed, c.accepted),
        (5, 1, 3, 2),
        "{c:?}"
    );
    assert!((c.cost_usd - 0.006).abs() < 1e-12, "{c:?}");
    assert!((c.cost_sq - (4.0 * 1e-6 + 4e-6)).abs() < 1e-15, "{c:?}");
    // The 95th percentile of 100..500 ms over five runs is the fifth.
    assert_eq!(c.p95_latency_ms, Some(500));
    let v = figures.variant;
    assert_eq!((v.runs, v.invalid, v.reviewed, v.accepted), (2, 0, 2, 1));
    assert_eq!(v.p95_latency_ms, Some(70));
    assert_eq!(c.value(Metric::AcceptanceRate), Some(2.0 / 3.0));
    assert_eq!(v.value(Metric::CostPerAccepted), Some(0.008));
    // The runs keep their arm.
    let stored = db.store.get_run("v1").await.unwrap().unwrap();
    assert_eq!(
        stored.experiment,
        Some(ExperimentArm {
            id: "e1".into(),
            arm: "terse".into()
        })
    );
    assert_eq!(
        db.store.get_run("other").await.unwrap().unwrap().experiment,
        None
    );
    // An experiment without runs has empty arms.
    let empty = db.store.experiment_figures("none").await.unwrap();
    assert_eq!(empty.control.runs + empty.variant.runs, 0);
}
