//! API keys, the audit chain and the batch queue, on both backends. PostgreSQL cases need the
//! server on 127.0.0.1:5432 (see `shopfloor_store::testing`).

use crate::common;

use std::collections::HashSet;

use serde_json::json;
use shopfloor_store::{
    verify_chain, ApiKeyRecord, AuditAction, BatchStatus, IdempotencyClaim, IdempotencyRequest,
    KeptAnswer, NewAuditEntry, RunRecord, SessionRecord, StoreError,
};

use common::{batch, both_backends, run, Db};
use shopfloor_core::limits::{Budget, BudgetPeriod, KeyLimits, Window};

both_backends!(
    keys_are_found_by_hash_and_names_are_unique_among_live_keys,
    revoking_a_key_keeps_it_listed_and_frees_its_name,
    audit_entries_chain_and_verify,
    an_edited_audit_row_is_caught,
    concurrent_audit_appends_stay_one_chain,
    claimed_cases_are_leased_and_leave_the_queue_when_recorded,
    replicas_claiming_at_once_never_share_a_case,
    cancelled_batches_are_not_claimed,
    login_tokens_are_used_once_and_sessions_end_with_their_key,
    an_idempotency_key_answers_its_request_once_and_nothing_else,
    key_limits_round_trip_and_usage_is_counted_per_window,
);

fn key(id: &str, name: &str, role: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: name.into(),
        role: shopfloor_core::access::Role::parse(role).unwrap(),
        team: Some("support".into()),
        key_hash: format!("hash-of-{id}"),
        prefix: "sf_abcd".into(),
        created_at_ms: 1_000,
        revoked_at_ms: None,
        limits: KeyLimits::default(),
    }
}

async fn keys_are_found_by_hash_and_names_are_unique_among_live_keys(db: &Db) {
    let ops = key("k1", "ticket-bot", "operator");
    db.store.create_api_key(&ops).await.unwrap();
    assert_eq!(
        db.store.api_key_by_hash("hash-of-k1").await.unwrap(),
        Some(ops)
    );
    assert_eq!(
        db.store.api_key_by_hash("hash-of-nobody").await.unwrap(),
        None
    );
    let err = db
        .store
        .create_api_key(&key("k2", "ticket-bot", "admin"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
    assert_eq!(db.store.list_api_keys().await.unwrap().len(), 1);
}

async fn revoking_a_key_keeps_it_listed_and_frees_its_name(db: &Db) {
    db.store
        .create_api_key(&key("k1", "ana", "viewer"))
        .await
        .unwrap();
    let revoked = db.store.revoke_api_key("ana", 2_000).await.unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(2_000));
    let err = db.store.revoke_api_key("ana", 3_000).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    // The name is free again; revoking by id works too.
    db.store
        .create_api_key(&key("k2", "ana", "builder"))
        .await
        .unwrap();
    db.store.revoke_api_key("k2", 4_000).await.unwrap();
    let keys = db.store.list_api_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.revoked_at_ms.is_some()));
    let found = db
        .store
        .api_key_by_hash("hash-of-k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.revoked_at_ms, Some(2_000));
}

fn entry(i: usize) -> NewAuditEntry {
    NewAuditEntry {
        at_ms: 10_000 + i as i64,
        actor: "dana".into(),
        action: AuditAction::WorkflowPromote,
        subject: "ticket-triage".into(),
        detail: json!({"from": "draft", "to": "pilot", "note": format!("entry {i} ✓")}),
    }
}

async fn audit_entries_chain_and_verify(db: &Db) {
    for i in 0..5 {
        let stored = db.store.append_audit(entry(i)).await.unwrap();
        assert_eq!(stored.seq, i as u64 + 1);
    }
    let entries = db.store.audit_entries(0, 100).await.unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(verify_chain(&entries), Ok(5));
    assert_eq!(db.store.audit_entries(3, 100).await.unwrap().len(), 2);
    let latest = db
        .store
        .latest_audit(AuditAction::WorkflowPromote, "ticket-triage")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.seq, 5);
    assert_eq!(
        db.store
            .latest_audit(AuditAction::KeyCreate, "x")
            .await
            .unwrap(),
        None
    );
}

async fn an_edited_audit_row_is_caught(db: &Db) {
    for i in 0..4 {
        db.store.append_audit(entry(i)).await.unwrap();
    }
    db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
        .await;
    let broken = verify_chain(&db.store.audit_entries(0, 100).await.unwrap()).unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
    db.execute("DELETE FROM audit_log WHERE seq = 3").await;
    let broken = verify_chain(&db.store.audit_entries(0, 100).await.unwrap()).unwrap_err();
    assert_eq!(broken.seq, 4, "{broken}");
}

async fn concurrent_audit_appends_stay_one_chain(db: &Db) {
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(
            async move { store.append_audit(entry(i)).await },
        ));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let entries = db.store.audit_entries(0, 100).await.unwrap();
    assert_eq!(verify_chain(&entries), Ok(24));
}

fn queued_batch(
    id: &str,
    cases: u64,
) -> (shopfloor_store::BatchRecord, Vec<(u64, serde_json::Value)>) {
    let mut record = batch(id, BatchStatus::Running);
    record.total_cases = cases;
    record.source = "api".into();
    let inputs = (1..=cases).map(|i| (i, json!({"case": i}))).collect();
    (record, inputs)
}

fn recorded(batch_id: &str, case: u64) -> RunRecord {
    run(
        &format!("{batch_id}-run-{case}"),
        "ticket-triage",
        2_000,
        Some((batch_id, case)),
    )
}

async fn claimed_cases_are_leased_and_leave_the_queue_when_recorded(db: &Db) {
    let (record, inputs) = queued_batch("b1", 5);
    db.store.enqueue_batch(&record, &inputs).await.unwrap();
    assert_eq!(
        db.store.get_batch("b1").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(db.store.batch_progress("b1").await.unwrap(), (5, 0));

    let first = db
        .store
        .claim_batch_cases("w1", 3, 60_000, 1_000)
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|c| c.case_index).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(first[0].workflow, record.workflow);
    assert_eq!(first[0].input, json!({"case": 1}));
    // Leased cases are not handed out again while the lease runs.
    let second = db
        .store
        .claim_batch_cases("w2", 10, 100_000, 2_000)
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|c| c.case_index).collect::<Vec<_>>(),
        [4, 5]
    );
    assert!(db
        .store
        .claim_batch_cases("w3", 10, 60_000, 3_000)
        .await
        .unwrap()
        .is_empty());

    // w1 records cases 1 and 2 and dies; its lease on case 3 runs out and w3 takes it.
    db.store
        .insert_runs(&[recorded("b1", 1), recorded("b1", 2)])
        .await
        .unwrap();
    assert_eq!(db.store.extend_batch_leases("w1", 70_000).await.unwrap(), 1);
    assert!(db
        .store
        .claim_batch_cases("w3", 10, 90_000, 65_000)
        .await
        .unwrap()
        .is_empty());
    let retaken = db
        .store
        .claim_batch_cases("w3", 10, 190_000, 80_000)
        .await
        .unwrap();
    let retaken: Vec<u64> = retaken.iter().map(|c| c.case_index).collect();
    assert_eq!(retaken, [3]);
    db.store
        .insert_runs(&[recorded("b1", 3), recorded("b1", 4), recorded("b1", 5)])
        .await
        .unwrap();
    assert_eq!(db.store.batch_progress("b1").await.unwrap(), (5, 5));
    let page = db.store.batch_runs("b1", 1, 3).await.unwrap();
    let cases: Vec<Option<u64>> = page.iter().map(|r| r.case_index).collect();
    assert_eq!(cases, [Some(2), Some(3), Some(4)]);
    assert!(page.iter().all(|r| r.attempts.is_empty()));
    assert_eq!(page[0].output, recorded("b1", 2).output);
    assert_eq!(db.store.batch_runs("b1", 5, 3).await.unwrap(), vec![]);
    assert!(db
        .store
        .claim_batch_cases("w3", 10, 300_000, 290_000)
        .await
        .unwrap()
        .is_empty());
    let err = db.store.batch_progress("nope").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

async fn replicas_claiming_at_once_never_share_a_case(db: &Db) {
    let (record, inputs) = queued_batch("b2", 200);
    db.store.enqueue_batch(&record, &inputs).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim_batch_cases(&format!("w{w}"), 7, 600_000, 1_000)
                    .await
                    .unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.case_index));
            }
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for case in task.await.unwrap() {
            assert!(seen.insert(case), "case {case} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

async fn cancelled_batches_are_not_claimed(db: &Db) {
    let (record, inputs) = queued_batch("b3", 3);
    db.store.enqueue_batch(&record, &inputs).await.unwrap();
    db.store
        .set_batch_status("b3", BatchStatus::Cancelled, 5_000)
        .await
        .unwrap();
    assert!(db
        .store
        .claim_batch_cases("w1", 10, 60_000, 6_000)
        .await
        .unwrap()
        .is_empty());
}

async fn login_tokens_are_used_once_and_sessions_end_with_their_key(db: &Db) {
    let store = &db.store;
    store
        .create_api_key(&key("k1", "ana", "reviewer"))
        .await
        .unwrap();
    store
        .create_login_token("tok-hash", "k1", 1_000, 2_000)
        .await
        .unwrap();
    store
        .create_login_token("old-hash", "k1", 1_000, 1_500)
        .await
        .unwrap();
    assert_eq!(
        store.redeem_login_token("old-hash", 1_600).await.unwrap(),
        None,
        "an expired token signs nobody in"
    );
    assert_eq!(
        store.redeem_login_token("tok-hash", 1_600).await.unwrap(),
        Some("k1".to_string())
    );
    assert_eq!(
        store.redeem_login_token("tok-hash", 1_601).await.unwrap(),
        None,
        "a token is used once"
    );
    assert_eq!(
        store.redeem_login_token("nobody", 1_601).await.unwrap(),
        None
    );

    let session = SessionRecord {
        session_hash: "s-hash".into(),
        key_id: "k1".into(),
        csrf_token: "csrf".into(),
        created_at_ms: 1_600,
        expires_at_ms: 10_000,
    };
    store.create_session(&session).await.unwrap();
    let (found, key) = store.session("s-hash", 5_000).await.unwrap().unwrap();
    assert_eq!(found, session);
    assert_eq!((key.name.as_str(), key.role.as_str()), ("ana", "reviewer"));
    assert!(
        store.session("s-hash", 10_000).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.session("other", 5_000).await.unwrap().is_none());

    store.revoke_api_key("ana", 6_000).await.unwrap();
    let (_, key) = store.session("s-hash", 6_001).await.unwrap().unwrap();
    assert_eq!(
        key.revoked_at_ms,
        Some(6_000),
        "the session shows its key is revoked"
    );

    store.end_session("s-hash").await.unwrap();
    assert!(
        store.session("s-hash", 5_000).await.unwrap().is_none(),
        "signed out"
    );
}

/// A key is claimed once; until its answer is kept a retry waits, then gets that answer; another
/// body is a mismatch; a released key is claimed again; a forgotten or abandoned one is taken
/// over; another API key's same key is its own.
async fn an_idempotency_key_answers_its_request_once_and_nothing_else(db: &Db) {
    let store = &db.store;
    let claim = |key_id: &'static str, body_hash: &'static str, now_ms: i64| IdempotencyRequest {
        api_key_id: key_id,
        key: "retry-1",
        route: "POST /v1/chat/completions",
        body_hash,
        now_ms,
        expired_before_ms: now_ms - 86_400_000,
        abandoned_before_ms: now_ms - 600_000,
    };
    let at = 10_000_000_000;
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h1", at))
            .await
            .unwrap(),
        IdempotencyClaim::Fresh
    );
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h1", at + 5))
            .await
            .unwrap(),
        IdempotencyClaim::InFlight
    );
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h2", at + 5))
            .await
            .unwrap(),
        IdempotencyClaim::Mismatch
    );
    assert_eq!(
        store
            .claim_idempotency(&claim("k2", "h2", at + 5))
            .await
            .unwrap(),
        IdempotencyClaim::Fresh,
        "another API key's key is its own"
    );
    let answer = KeptAnswer {
        status: 200,
        content_type: "application/json".into(),
        run_id: Some("run-1".into()),
        model: Some("fast".into()),
        body: r#"{"ok":true}"#.into(),
    };
    store
        .keep_idempotent_answer("k1", "retry-1", &answer)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h1", at + 9))
            .await
            .unwrap(),
        IdempotencyClaim::Answered(answer.clone())
    );
    // Releasing an answered key changes nothing; a day later the key is new again.
    store.release_idempotency("k1", "retry-1").await.unwrap();
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h1", at + 10))
            .await
            .unwrap(),
        IdempotencyClaim::Answered(answer)
    );
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h2", at + 86_400_001))
            .await
            .unwrap(),
        IdempotencyClaim::Fresh
    );
    // A failed request is released: its retry runs again.
    store.release_idempotency("k1", "retry-1").await.unwrap();
    let later = at + 86_400_002;
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h2", later))
            .await
            .unwrap(),
        IdempotencyClaim::Fresh
    );
    // One left in flight by a server that died is taken over after ten minutes.
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h2", later + 1))
            .await
            .unwrap(),
        IdempotencyClaim::InFlight
    );
    assert_eq!(
        store
            .claim_idempotency(&claim("k1", "h2", later + 600_001))
            .await
            .unwrap(),
        IdempotencyClaim::Fresh
    );
}

/// Limits are stored with the key and changed in place; recorded runs add their tokens and
/// cost to their key's minute, day and month (a run recorded twice, once); requests are taken
/// up to the limit and no further, per minute.
async fn key_limits_round_trip_and_usage_is_counted_per_window(db: &Db) {
    let store = &db.store;
    let mut limited = key("key-1", "billing-service", "operator");
    limited.limits = KeyLimits {
        rpm: Some(2),
        tpm: None,
        budget: Some(Budget {
            usd: 1.5,
            period: BudgetPeriod::Month,
        }),
    };
    store.create_api_key(&limited).await.unwrap();
    assert_eq!(
        store.api_key_by_hash("hash-of-key-1").await.unwrap(),
        Some(limited.clone())
    );
    let tighter = KeyLimits {
        tpm: Some(1000),
        ..KeyLimits::default()
    };
    let changed = store
        .set_key_limits("billing-service", &tighter)
        .await
        .unwrap();
    assert_eq!(changed.limits, tighter);
    assert!(matches!(
        store.set_key_limits("nobody", &tighter).await,
        Err(StoreError::NotFound { .. })
    ));

    // 2026-12-07 12:00:30 UTC, and a run of the day before.
    let now = 1_796_644_830_000;
    let yesterday = now - 86_400_000;
    let runs = vec![
        run("u1", "gateway", now, None),
        run("u2", "gateway", now - 1_000, None),
        run("u3", "gateway", yesterday, None),
    ];
    store.insert_runs(&runs).await.unwrap();
    store.insert_runs(&runs[..1]).await.unwrap();
    let usage = store.key_usage("key-1", now).await.unwrap();
    assert_eq!(
        usage.minute_tokens,
        2 * 254,
        "two runs this minute, each 240 + 14 tokens"
    );
    assert!(
        (usage.day_cost_usd - 2.0 * 0.000_246_8).abs() < 1e-12,
        "{usage:?}"
    );
    assert!(
        (usage.month_cost_usd - 3.0 * 0.000_246_8).abs() < 1e-12,
        "{usage:?}"
    );
    assert_eq!(usage.minute_requests, 0, "requests are taken, not recorded");
    let all = store.all_key_usage(now).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all["key-1"], usage);

    let minute = Window::Minute.start(now);
    assert!(store.take_request("key-1", minute, 2).await.unwrap());
    assert!(store.take_request("key-1", minute, 2).await.unwrap());
    assert!(
        !store.take_request("key-1", minute, 2).await.unwrap(),
        "the third of 2"
    );
    assert!(
        store.take_request("key-2", minute, 2).await.unwrap(),
        "another key's own"
    );
    assert!(
        store
            .take_request("key-1", minute + 60_000, 2)
            .await
            .unwrap(),
        "the next minute"
    );
    assert_eq!(
        store.key_usage("key-1", now).await.unwrap().minute_requests,
        2
    );
}
