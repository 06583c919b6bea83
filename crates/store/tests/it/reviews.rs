//! The review queue against a real SQLite file and a real PostgreSQL database: a held run's
//! item is written with the run, claims are leases no two reviewers share, a decision releases
//! (or rejects) the run in the same transaction, and a stale decision writes nothing.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{both_backends, run, Db};
use serde_json::json;
use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};
use shopfloor_core::spec::WebhookSpec;
use shopfloor_store::{
    open, Caller, DeliveryOutcome, DeliveryState, EventFilter, EventKind, OutboxEvent, ReviewClaim,
    ReviewDecisionRecord, ReviewFilter, ReviewTicket, ReviewUpdate, RunRecord, RunStatus, Store,
};

both_backends!(
    a_held_run_enters_the_queue_with_its_run,
    claims_are_leases_and_skip_what_a_reviewer_may_not_take,
    an_approval_releases_the_run,
    an_edit_releases_the_correction_and_keeps_the_original,
    a_reject_keeps_the_output_back_with_its_reason,
    a_stale_decision_writes_nothing,
    two_stores_never_claim_one_item_twice,
    a_decision_writes_its_events_with_it,
    outbox_events_are_leased_retried_and_counted,
    overdue_items_are_escalated_once,
    counts_come_from_the_database,
);

fn event(id: &str, at_ms: i64) -> OutboxEvent {
    OutboxEvent::due_now(
        id.into(),
        EventKind::ReviewReleased,
        "triage",
        Some("r1"),
        &WebhookSpec {
            url: "http://127.0.0.1:9/hook".into(),
            secret_env: "HOOK_SECRET".into(),
        },
        format!(r#"{{"id":"{id}"}}"#),
        at_ms,
    )
}

fn held(id: &str, created_at_ms: i64) -> RunRecord {
    RunRecord {
        status: RunStatus::Held,
        output: Some(json!("billing")),
        attempts: Vec::new(),
        error: None,
        review: Some(ReviewTicket {
            reason: ReviewReason::HighRisk,
            approvals_required: 1,
            due_at_ms: Some(created_at_ms + 60_000),
        }),
        caller: Some(Caller {
            key_id: "key-operator".into(),
            user: Some("ops".into()),
            team: None,
        }),
        ..run(id, "triage", created_at_ms, None)
    }
}

fn claim(reviewer: &str, now_ms: i64) -> ReviewClaim {
    ReviewClaim {
        run_id: None,
        workflow: None,
        reviewer: reviewer.into(),
        reviewer_key: None,
        now_ms,
        until_ms: now_ms + 600_000,
    }
}

fn decision(run_id: &str, reviewer: &str, decision: Decision) -> ReviewDecisionRecord {
    ReviewDecisionRecord {
        run_id: run_id.into(),
        reviewer: reviewer.into(),
        decision,
        output: None,
        reason: None,
        note: Some("looked at it".into()),
        claimed_at_ms: None,
        decided_at_ms: 5_000,
    }
}

async fn a_held_run_enters_the_queue_with_its_run(db: &Db) {
    let plain = run("plain", "triage", 1, None);
    db.store
        .insert_runs(&[held("r1", 1_000), plain])
        .await
        .unwrap();
    let items = db
        .store
        .list_reviews(&ReviewFilter::default())
        .await
        .unwrap();
    assert_eq!(items.len(), 1, "only the run with a ticket is queued");
    let item = &items[0];
    assert_eq!(item.run_id, "r1");
    assert_eq!(item.status, ReviewStatus::Pending);
    assert_eq!(item.reason, ReviewReason::HighRisk);
    assert_eq!(item.output, Some(json!("billing")));
    assert_eq!(item.requested_by_key.as_deref(), Some("key-operator"));
    assert_eq!(item.due_at_ms, Some(61_000));
    // The ticket comes back with the run, and recording the run again queues nothing twice.
    let read = db.store.get_run("r1").await.unwrap().unwrap();
    assert_eq!(read.review, held("r1", 1_000).review);
    db.store.insert_runs(&[held("r1", 1_000)]).await.unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM reviews").await, 1);
    let filtered = ReviewFilter {
        status: Some(ReviewStatus::Approved),
        ..ReviewFilter::default()
    };
    assert!(db.store.list_reviews(&filtered).await.unwrap().is_empty());
}

async fn claims_are_leases_and_skip_what_a_reviewer_may_not_take(db: &Db) {
    db.store
        .insert_runs(&[held("old", 1_000), held("new", 2_000)])
        .await
        .unwrap();
    let ann = db.store.claim_review(&claim("ann", 10_000)).await.unwrap();
    assert_eq!(ann.unwrap().run_id, "old", "oldest first");
    let bob = db.store.claim_review(&claim("bob", 10_000)).await.unwrap();
    assert_eq!(bob.unwrap().run_id, "new", "ann's live claim is skipped");
    assert!(db
        .store
        .claim_review(&claim("cy", 10_000))
        .await
        .unwrap()
        .is_none());
    // Ann's lease ends at 610_000: then the item is anyone's again.
    let later = db.store.claim_review(&claim("cy", 700_000)).await.unwrap();
    assert_eq!(later.unwrap().run_id, "old");
    // The key that requested a run never gets it.
    let own = ReviewClaim {
        reviewer_key: Some("key-operator".into()),
        ..claim("dee", 2_000_000)
    };
    assert!(db.store.claim_review(&own).await.unwrap().is_none());
    // A named item.
    let named = ReviewClaim {
        run_id: Some("new".into()),
        ..claim("ed", 2_000_000)
    };
    assert_eq!(
        db.store
            .claim_review(&named)
            .await
            .unwrap()
            .unwrap()
            .claimed_by
            .as_deref(),
        Some("ed")
    );
}

async fn an_approval_releases_the_run(db: &Db) {
    db.store.insert_runs(&[held("r1", 1_000)]).await.unwrap();
    let update = ReviewUpdate {
        decision: decision("r1", "ann", Decision::Approve),
        status: ReviewStatus::Approved,
        seen_decisions: 0,
        events: Vec::new(),
    };
    assert!(db.store.decide_review(&update).await.unwrap());
    let run = db.store.get_run("r1").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Ok);
    assert_eq!(run.output, Some(json!("billing")));
    let item = db.store.get_review("r1").await.unwrap().unwrap();
    assert_eq!(item.status, ReviewStatus::Approved);
    assert_eq!(item.decisions, 1);
    assert_eq!(item.decided_at_ms, Some(5_000));
    let decisions = db.store.review_decisions(Some("r1"), None).await.unwrap();
    assert_eq!(decisions, vec![decision("r1", "ann", Decision::Approve)]);
    assert_eq!(
        db.store
            .review_decisions(None, Some("triage"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(db
        .store
        .review_decisions(None, Some("other"))
        .await
        .unwrap()
        .is_empty());
}

async fn an_edit_releases_the_correction_and_keeps_the_original(db: &Db) {
    db.store.insert_runs(&[held("r1", 1_000)]).await.unwrap();
    let mut edit = decision("r1", "ann", Decision::Edit);
    edit.output = Some(json!("bug"));
    let update = ReviewUpdate {
        decision: edit,
        status: ReviewStatus::Edited,
        seen_decisions: 0,
        events: Vec::new(),
    };
    assert!(db.store.decide_review(&update).await.unwrap());
    let run = db.store.get_run("r1").await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.output),
        (RunStatus::Ok, Some(json!("bug")))
    );
    let item = db.store.get_review("r1").await.unwrap().unwrap();
    assert_eq!(item.output, Some(json!("billing")), "the original is kept");
    assert_eq!(item.corrected_output, Some(json!("bug")));
}

async fn a_reject_keeps_the_output_back_with_its_reason(db: &Db) {
    db.store.insert_runs(&[held("r1", 1_000)]).await.unwrap();
    let mut reject = decision("r1", "ann", Decision::Reject);
    reject.reason = Some("unsafe".into());
    let update = ReviewUpdate {
        decision: reject,
        status: ReviewStatus::Rejected,
        seen_decisions: 0,
        events: Vec::new(),
    };
    assert!(db.store.decide_review(&update).await.unwrap());
    let run = db.store.get_run("r1").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Rejected);
    assert_eq!(run.error.as_deref(), Some("rejected by review: unsafe"));
}

async fn a_stale_decision_writes_nothing(db: &Db) {
    let mut two = held("r1", 1_000);
    two.review.as_mut().unwrap().approvals_required = 2;
    db.store.insert_runs(&[two]).await.unwrap();
    let first = ReviewUpdate {
        decision: decision("r1", "ann", Decision::Approve),
        status: ReviewStatus::Pending,
        seen_decisions: 0,
        events: Vec::new(),
    };
    assert!(db.store.decide_review(&first).await.unwrap());
    assert_eq!(
        db.store.get_run("r1").await.unwrap().unwrap().status,
        RunStatus::Held,
        "one approval of two releases nothing"
    );
    // Bob read the item before ann's decision landed: his write must not go through.
    let stale = ReviewUpdate {
        decision: decision("r1", "bob", Decision::Approve),
        status: ReviewStatus::Approved,
        seen_decisions: 0,
        events: vec![event("evt-stale", 5_000)],
    };
    assert!(!db.store.decide_review(&stale).await.unwrap());
    assert!(
        db.store
            .list_events(&EventFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "a decision that did not land sends no event"
    );
    assert_eq!(
        db.store
            .review_decisions(Some("r1"), None)
            .await
            .unwrap()
            .len(),
        1
    );
    let fresh = ReviewUpdate {
        seen_decisions: 1,
        ..stale
    };
    assert!(db.store.decide_review(&fresh).await.unwrap());
    assert_eq!(
        db.store.get_run("r1").await.unwrap().unwrap().status,
        RunStatus::Ok
    );
}

async fn two_stores_never_claim_one_item_twice(db: &Db) {
    // Two stores on one database stand for two server replicas.
    let other: Arc<dyn Store> = open(&db.location).await.unwrap();
    let runs: Vec<RunRecord> = (0..40)
        .map(|i| held(&format!("r{i:02}"), 1_000 + i))
        .collect();
    db.store.insert_runs(&runs).await.unwrap();
    let mut tasks = Vec::new();
    for (n, store) in [db.store.clone(), other.clone(), db.store.clone(), other]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = store
                .claim_review(&claim(&format!("reviewer-{n}"), 10_000))
                .await
                .unwrap()
            {
                got.push(item.run_id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 40, "every item claimed once: {all:?}");
    assert_eq!(distinct.len(), 40);
}

async fn a_decision_writes_its_events_with_it(db: &Db) {
    db.store.insert_runs(&[held("r1", 1_000)]).await.unwrap();
    let update = ReviewUpdate {
        decision: decision("r1", "ann", Decision::Approve),
        status: ReviewStatus::Approved,
        seen_decisions: 0,
        events: vec![event("evt-1", 5_000)],
    };
    assert!(db.store.decide_review(&update).await.unwrap());
    let events = db.store.list_events(&EventFilter::default()).await.unwrap();
    assert_eq!(events, vec![event("evt-1", 5_000)]);
    assert_eq!(events[0].state(), DeliveryState::Pending);
}

async fn outbox_events_are_leased_retried_and_counted(db: &Db) {
    db.store
        .enqueue_events(&[event("a", 1_000), event("b", 2_000), event("c", 9_000)])
        .await
        .unwrap();
    assert!(db.store.has_event("b").await.unwrap());
    assert!(!db.store.has_event("d").await.unwrap());
    // At 5 s, a and b are due; c is not.
    let first = db.store.claim_due_events(5_000, 65_000, 10).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    // Leased: another sender gets nothing until the lease ends.
    let other: Arc<dyn Store> = open(&db.location).await.unwrap();
    assert!(other
        .claim_due_events(6_000, 66_000, 10)
        .await
        .unwrap()
        .is_empty());
    db.store
        .record_delivery(&DeliveryOutcome {
            id: "a".into(),
            at_ms: 6_000,
            delivered: true,
            status: Some(204),
            error: None,
            next_attempt_at_ms: None,
        })
        .await
        .unwrap();
    db.store
        .record_delivery(&DeliveryOutcome {
            id: "b".into(),
            at_ms: 6_000,
            delivered: false,
            status: Some(500),
            error: Some("the receiver answered 500".into()),
            next_attempt_at_ms: Some(36_000),
        })
        .await
        .unwrap();
    // At 10 s only c is due: a is delivered, b waits for its retry.
    let due: Vec<String> = other
        .claim_due_events(10_000, 70_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(due, ["c"]);
    db.store
        .record_delivery(&DeliveryOutcome {
            id: "c".into(),
            at_ms: 10_000,
            delivered: false,
            status: None,
            error: Some("connection refused".into()),
            next_attempt_at_ms: None,
        })
        .await
        .unwrap();
    let b = db
        .store
        .list_events(&EventFilter {
            state: Some(DeliveryState::Pending),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].attempts, b[0].last_status), (1, Some(500)));
    let mut counts = db.store.event_counts().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(
        counts,
        vec![
            (DeliveryState::Delivered, 1),
            (DeliveryState::Failed, 1),
            (DeliveryState::Pending, 1)
        ]
    );
}

async fn overdue_items_are_escalated_once(db: &Db) {
    // Due at 61 s and 62 s; the second is decided before it is overdue.
    db.store
        .insert_runs(&[held("r1", 1_000), held("r2", 2_000)])
        .await
        .unwrap();
    let approve = ReviewUpdate {
        decision: decision("r2", "ann", Decision::Approve),
        status: ReviewStatus::Approved,
        seen_decisions: 0,
        events: Vec::new(),
    };
    assert!(db.store.decide_review(&approve).await.unwrap());
    assert!(db
        .store
        .overdue_reviews(60_000, 10)
        .await
        .unwrap()
        .is_empty());
    let overdue = db.store.overdue_reviews(100_000, 10).await.unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].run_id, "r1");
    let mut overdue_event = event("evt-overdue", 100_000);
    overdue_event.kind = EventKind::ReviewOverdue;
    assert!(db
        .store
        .escalate_review("r1", 100_000, std::slice::from_ref(&overdue_event))
        .await
        .unwrap());
    assert!(
        !db.store
            .escalate_review("r1", 100_001, &[event("evt-twice", 100_001)])
            .await
            .unwrap(),
        "an item is escalated once"
    );
    assert!(db
        .store
        .overdue_reviews(200_000, 10)
        .await
        .unwrap()
        .is_empty());
    let item = db.store.get_review("r1").await.unwrap().unwrap();
    assert_eq!(item.escalated_at_ms, Some(100_000));
    assert_eq!(
        db.store.list_events(&EventFilter::default()).await.unwrap(),
        vec![overdue_event]
    );
}

async fn counts_come_from_the_database(db: &Db) {
    db.store
        .insert_runs(&[held("r1", 1_000), held("r2", 2_000), held("r3", 90_000)])
        .await
        .unwrap();
    let reject = ReviewUpdate {
        decision: ReviewDecisionRecord {
            reason: Some("unsafe".into()),
            ..decision("r3", "ann", Decision::Reject)
        },
        status: ReviewStatus::Rejected,
        seen_decisions: 0,
        events: Vec::new(),
    };
    assert!(db.store.decide_review(&reject).await.unwrap());
    // At 61.5 s, r1 (due 61 s) is overdue and r2 (due 62 s) is not.
    let counts = db.store.review_counts(None, 61_500).await.unwrap();
    let figures: Vec<(ReviewStatus, u64, u64, i64)> = counts
        .iter()
        .map(|c| (c.status, c.items, c.overdue, c.oldest_created_at_ms))
        .collect();
    assert_eq!(
        figures,
        vec![
            (ReviewStatus::Pending, 2, 1, 1_000),
            (ReviewStatus::Rejected, 1, 0, 90_000)
        ]
    );
    assert!(db
        .store
        .review_counts(Some("other"), 61_500)
        .await
        .unwrap()
        .is_empty());
}
