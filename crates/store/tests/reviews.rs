//! The review queue against a real SQLite file and a real PostgreSQL database: a held run's
//! item is written with the run, claims are leases no two reviewers share, a decision releases
//! (or rejects) the run in the same transaction, and a stale decision writes nothing.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{both_backends, run, Db};
use serde_json::json;
use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};
use shopfloor_store::{
    open, Caller, ReviewClaim, ReviewDecisionRecord, ReviewFilter, ReviewTicket, ReviewUpdate,
    RunRecord, RunStatus, Store,
};

both_backends!(
    a_held_run_enters_the_queue_with_its_run,
    claims_are_leases_and_skip_what_a_reviewer_may_not_take,
    an_approval_releases_the_run,
    an_edit_releases_the_correction_and_keeps_the_original,
    a_reject_keeps_the_output_back_with_its_reason,
    a_stale_decision_writes_nothing,
    two_stores_never_claim_one_item_twice,
);

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
    };
    assert!(!db.store.decide_review(&stale).await.unwrap());
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
