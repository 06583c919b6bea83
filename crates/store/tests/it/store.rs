//! The store's behaviour, checked against a real SQLite file and a real PostgreSQL database.
//!
//! Every case in `both_backends!` runs once per backend. PostgreSQL cases need the server on
//! 127.0.0.1:5432 (or `SHOPFLOOR_TEST_POSTGRES_URL`); without it they fail and say so.

use crate::common;

use common::{attempt, batch, both_backends, run, Backend, Db};
use serde_json::json;
use shopfloor_store::{
    open, AttemptOutcome, AttemptRecord, BatchRecord, BatchStatus, RunFilter, RunRecord, RunStatus,
    StoreError,
};

both_backends!(
    run_round_trips_with_attempts_and_every_field,
    run_without_optional_fields_round_trips,
    list_filters_limits_and_orders_newest_first,
    list_defaults_to_fifty,
    reinserting_a_batch_case_is_skipped_with_its_attempts,
    reinserting_the_same_runs_changes_nothing,
    runs_outside_batches_are_never_deduplicated,
    insert_is_one_transaction,
    out_of_range_counts_are_refused,
    batches_are_created_read_and_finished,
    batch_recorded_cases_are_ascending_and_per_batch,
    enums_are_stored_as_their_text,
    reopening_keeps_data_and_does_not_rerun_migrations,
    concurrent_opens_migrate_once,
    backend_and_ping_answer,
);

async fn run_round_trips_with_attempts_and_every_field(db: &Db) {
    let original = run("r1", "ticket-triage", 1_700_000_000_123, Some(("b1", 7)));
    db.store
        .insert_runs(std::slice::from_ref(&original))
        .await
        .unwrap();
    assert_eq!(db.store.get_run("r1").await.unwrap(), Some(original));
    assert_eq!(db.store.get_run("missing").await.unwrap(), None);
}

async fn run_without_optional_fields_round_trips(db: &Db) {
    let original = RunRecord {
        batch_id: None,
        case_index: None,
        status: RunStatus::Failed,
        raw_output: None,
        output: None,
        error: None,
        model: None,
        attempts: vec![],
        input: json!("just text"),
        prompt: json!(null),
        caller: None,
        sampled_for_review: false,
        confidence: None,
        review: None,
        ..run("r-bare", "ticket-triage", 5, None)
    };
    let nulls = AttemptRecord {
        error: None,
        error_kind: None,
        raw_output: None,
        ..attempt(1, AttemptOutcome::Error)
    };
    let with_null_attempt = RunRecord {
        id: "r-null-attempt".into(),
        attempts: vec![nulls],
        ..original.clone()
    };
    db.store
        .insert_runs(&[original.clone(), with_null_attempt.clone()])
        .await
        .unwrap();
    assert_eq!(db.store.get_run("r-bare").await.unwrap(), Some(original));
    assert_eq!(
        db.store.get_run("r-null-attempt").await.unwrap(),
        Some(with_null_attempt)
    );
}

async fn list_filters_limits_and_orders_newest_first(db: &Db) {
    let mut runs = vec![
        run("a", "triage", 100, Some(("b1", 1))),
        run("b", "triage", 300, Some(("b1", 2))),
        run("c", "summarise", 200, None),
        run("d", "triage", 400, None),
        run("e", "summarise", 500, Some(("b2", 1))),
    ];
    runs[1].status = RunStatus::Invalid;
    runs[3].status = RunStatus::Invalid;
    // Same millisecond as "e": the later id (UUID v7 order) lists first.
    runs.push(run("f", "triage", 500, None));
    db.store.insert_runs(&runs).await.unwrap();

    let ids = |filter: RunFilter| async move {
        let listed = db.store.list_runs(&filter).await.unwrap();
        listed.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(RunFilter::default()).await,
        ["f", "e", "d", "b", "c", "a"]
    );
    let triage = RunFilter {
        workflow: Some("triage".into()),
        ..Default::default()
    };
    assert_eq!(ids(triage.clone()).await, ["f", "d", "b", "a"]);
    assert_eq!(
        ids(RunFilter {
            batch_id: Some("b1".into()),
            ..Default::default()
        })
        .await,
        ["b", "a"]
    );
    let invalid = RunFilter {
        status: Some(RunStatus::Invalid),
        ..Default::default()
    };
    assert_eq!(ids(invalid).await, ["d", "b"]);
    let all_three = RunFilter {
        workflow: Some("triage".into()),
        batch_id: Some("b1".into()),
        status: Some(RunStatus::Invalid),
        ..Default::default()
    };
    assert_eq!(ids(all_three).await, ["b"]);
    // A time range is [since, until).
    assert_eq!(
        ids(RunFilter {
            since_ms: Some(200),
            until_ms: Some(500),
            ..Default::default()
        })
        .await,
        ["d", "b", "c"]
    );
    // Pages follow each other without a gap or a repeat, ties in time included.
    let first = ids(RunFilter {
        limit: Some(2),
        ..Default::default()
    })
    .await;
    assert_eq!(first, ["f", "e"]);
    let next = ids(RunFilter {
        limit: Some(3),
        before: Some((500, "f".into())),
        ..Default::default()
    })
    .await;
    assert_eq!(
        next,
        ["e", "d", "b"],
        "a run of the same millisecond is on the next page"
    );
    let by = |model: &str, version: &str| RunFilter {
        model: Some(model.into()),
        version: Some(version.into()),
        ..Default::default()
    };
    assert_eq!(ids(by("gpt-mini", "v-3f2a")).await.len(), 6);
    assert!(ids(by("gpt-mini", "v-other")).await.is_empty());
    assert!(ids(by("other", "v-3f2a")).await.is_empty());
    assert_eq!(
        ids(RunFilter {
            limit: Some(2),
            ..triage
        })
        .await,
        ["f", "d"]
    );
    assert!(ids(RunFilter {
        workflow: Some("nope".into()),
        ..Default::default()
    })
    .await
    .is_empty());

    let summary = db
        .store
        .list_runs(&RunFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let f = &runs[5];
    assert_eq!(
        summary,
        [shopfloor_store::RunSummary {
            id: f.id.clone(),
            workflow: f.workflow.clone(),
            version: f.version.clone(),
            batch_id: None,
            status: f.status,
            model: f.model.clone(),
            latency_ms: f.latency_ms,
            cost_usd: f.cost_usd,
            created_at_ms: f.created_at_ms,
        }]
    );
}

async fn list_defaults_to_fifty(db: &Db) {
    let runs: Vec<_> = (0..60)
        .map(|i| run(&format!("r{i:02}"), "triage", i, None))
        .collect();
    db.store.insert_runs(&runs).await.unwrap();
    let listed = db.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 50);
    assert_eq!(listed[0].id, "r59");
    assert_eq!(listed[49].id, "r10");
}

async fn reinserting_a_batch_case_is_skipped_with_its_attempts(db: &Db) {
    let first = run("first", "triage", 1, Some(("b1", 1)));
    db.store
        .insert_runs(std::slice::from_ref(&first))
        .await
        .unwrap();

    // A retried flush: the same case under a new run id, beside a case not yet recorded.
    let mut retry = run("retry", "triage", 2, Some(("b1", 1)));
    retry.attempts.push(attempt(3, AttemptOutcome::Invalid));
    let second = run("second", "triage", 3, Some(("b1", 2)));
    db.store
        .insert_runs(&[retry, second.clone()])
        .await
        .unwrap();

    assert_eq!(db.store.get_run("first").await.unwrap(), Some(first));
    assert_eq!(db.store.get_run("retry").await.unwrap(), None);
    assert_eq!(db.store.get_run("second").await.unwrap(), Some(second));
    assert_eq!(
        db.int("SELECT COUNT(*) FROM attempts WHERE run_id = 'retry'")
            .await,
        0
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM attempts").await, 4);
    assert_eq!(db.store.batch_recorded_cases("b1").await.unwrap(), [1, 2]);

    // The same case twice in one slice is recorded once.
    let twice = [
        run("x1", "triage", 4, Some(("b1", 3))),
        run("x2", "triage", 5, Some(("b1", 3))),
    ];
    db.store.insert_runs(&twice).await.unwrap();
    assert_eq!(
        db.int("SELECT COUNT(*) FROM runs WHERE case_index = 3")
            .await,
        1
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM attempts").await, 6);
}

async fn reinserting_the_same_runs_changes_nothing(db: &Db) {
    let runs: Vec<_> = (1..=3)
        .map(|i| run(&format!("r{i}"), "triage", i, None))
        .collect();
    db.store.insert_runs(&runs).await.unwrap();
    db.store.insert_runs(&runs).await.unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM runs").await, 3);
    assert_eq!(db.int("SELECT COUNT(*) FROM attempts").await, 6);
}

async fn runs_outside_batches_are_never_deduplicated(db: &Db) {
    // A batch id without a case index (or none at all) is not a batch case.
    let mut a = run("a", "triage", 1, Some(("b1", 1)));
    a.case_index = None;
    let mut b = run("b", "triage", 2, Some(("b1", 1)));
    b.case_index = None;
    let c = run("c", "triage", 3, None);
    let d = run("d", "triage", 4, None);
    db.store.insert_runs(&[a, b, c, d]).await.unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM runs").await, 4);
    assert!(db
        .store
        .batch_recorded_cases("b1")
        .await
        .unwrap()
        .is_empty());
}

async fn insert_is_one_transaction(db: &Db) {
    let good = run("good", "triage", 1, Some(("b1", 1)));
    let mut bad = run("bad", "triage", 2, Some(("b1", 2)));
    bad.attempts[1].n = 1; // two attempts numbered 1: the database refuses the second
    let err = db.store.insert_runs(&[good, bad]).await.unwrap_err();
    assert!(matches!(err, StoreError::Query(_)), "{err:?}");
    assert_eq!(db.int("SELECT COUNT(*) FROM runs").await, 0);
    assert_eq!(db.int("SELECT COUNT(*) FROM attempts").await, 0);
}

async fn out_of_range_counts_are_refused(db: &Db) {
    let mut huge = run("huge", "triage", 1, None);
    huge.prompt_tokens = u64::MAX;
    let err = db
        .store
        .insert_runs(&[run("ok", "triage", 0, None), huge])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfRange {
                field: "runs.prompt_tokens",
                value: u64::MAX
            }
        ),
        "{err:?}"
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM runs").await, 0);
}

async fn batches_are_created_read_and_finished(db: &Db) {
    let created = batch("b1", BatchStatus::Running);
    db.store.create_batch(&created).await.unwrap();
    assert_eq!(
        db.store.get_batch("b1").await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(db.store.get_batch("missing").await.unwrap(), None);

    db.store
        .set_batch_status("b1", BatchStatus::Done, 1_700_000_009_000)
        .await
        .unwrap();
    let done = db.store.get_batch("b1").await.unwrap().unwrap();
    assert_eq!(done.status, BatchStatus::Done);
    assert_eq!(done.finished_at_ms, Some(1_700_000_009_000));

    // Resumed: running again, no longer finished.
    db.store
        .set_batch_status("b1", BatchStatus::Running, 1_700_000_010_000)
        .await
        .unwrap();
    assert_eq!(db.store.get_batch("b1").await.unwrap(), Some(created));

    let err = db
        .store
        .set_batch_status("missing", BatchStatus::Cancelled, 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { kind: "batch", id } if id == "missing"),
        "{err:?}"
    );

    let no_override = BatchRecord {
        id: "b2".into(),
        model_override: None,
        caller: None,
        ..batch("b2", BatchStatus::Running)
    };
    db.store.create_batch(&no_override).await.unwrap();
    assert_eq!(db.store.get_batch("b2").await.unwrap(), Some(no_override));
    assert!(db
        .store
        .create_batch(&batch("b1", BatchStatus::Running))
        .await
        .is_err());
}

async fn batch_recorded_cases_are_ascending_and_per_batch(db: &Db) {
    let runs = [
        run("r3", "triage", 1, Some(("b1", 3))),
        run("r1", "triage", 2, Some(("b1", 1))),
        run("other", "triage", 3, Some(("b2", 2))),
        run("r10", "triage", 4, Some(("b1", 10))),
        run("loose", "triage", 5, None),
    ];
    db.store.insert_runs(&runs).await.unwrap();
    assert_eq!(
        db.store.batch_recorded_cases("b1").await.unwrap(),
        [1, 3, 10]
    );
    assert_eq!(db.store.batch_recorded_cases("b2").await.unwrap(), [2]);
    assert!(db
        .store
        .batch_recorded_cases("none")
        .await
        .unwrap()
        .is_empty());
}

async fn enums_are_stored_as_their_text(db: &Db) {
    let mut runs = Vec::new();
    for (i, status) in RunStatus::ALL.into_iter().enumerate() {
        let mut r = run(&format!("r{i}"), "triage", i as i64, None);
        r.status = status;
        r.attempts = AttemptOutcome::ALL
            .into_iter()
            .zip(1..)
            .map(|(outcome, n)| attempt(n, outcome))
            .collect();
        runs.push(r);
    }
    db.store.insert_runs(&runs).await.unwrap();
    for r in &runs {
        assert_eq!(db.store.get_run(&r.id).await.unwrap().as_ref(), Some(r));
    }
    for (i, status) in BatchStatus::ALL.into_iter().enumerate() {
        db.store
            .create_batch(&batch(&format!("b{i}"), status))
            .await
            .unwrap();
        assert_eq!(
            db.store
                .get_batch(&format!("b{i}"))
                .await
                .unwrap()
                .unwrap()
                .status,
            status
        );
    }

    let texts = |it: &[&str]| it.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let run_texts: Vec<_> = RunStatus::ALL.map(RunStatus::as_str).into();
    assert_eq!(
        db.texts("SELECT status FROM runs ORDER BY id").await,
        texts(&run_texts)
    );
    let mut outcomes: Vec<_> = AttemptOutcome::ALL.map(AttemptOutcome::as_str).into();
    outcomes.sort_unstable();
    assert_eq!(
        db.texts("SELECT DISTINCT outcome FROM attempts ORDER BY outcome")
            .await,
        texts(&outcomes)
    );
    let batch_texts: Vec<_> = BatchStatus::ALL.map(BatchStatus::as_str).into();
    assert_eq!(
        db.texts("SELECT status FROM batches ORDER BY id").await,
        texts(&batch_texts)
    );
}

async fn reopening_keeps_data_and_does_not_rerun_migrations(db: &Db) {
    let original = run("kept", "triage", 1, Some(("b1", 1)));
    db.store
        .insert_runs(std::slice::from_ref(&original))
        .await
        .unwrap();
    let applied_before = db
        .texts("SELECT CAST(applied_at_ms AS TEXT) FROM schema_migrations ORDER BY version")
        .await;
    assert!(!applied_before.is_empty());

    let reopened = open(&db.location).await.expect("the store reopens");
    assert_eq!(reopened.get_run("kept").await.unwrap(), Some(original));
    let applied_after = db
        .texts("SELECT CAST(applied_at_ms AS TEXT) FROM schema_migrations ORDER BY version")
        .await;
    assert_eq!(applied_after, applied_before);
}

async fn concurrent_opens_migrate_once(db: &Db) {
    // Replicas starting together against one database: all open, none re-applies a migration.
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let location = db.location.clone();
        opens.spawn(async move { open(&location).await });
    }
    while let Some(opened) = opens.join_next().await {
        opened
            .unwrap()
            .expect("a concurrent open succeeds")
            .ping()
            .await
            .unwrap();
    }
    let versions = db
        .texts("SELECT CAST(version AS TEXT) FROM schema_migrations ORDER BY version")
        .await;
    let distinct = versions.iter().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(versions.len(), distinct.len());
}

async fn backend_and_ping_answer(db: &Db) {
    let expected = match db.backend {
        Backend::Sqlite { .. } => "sqlite",
        Backend::Postgres(_) => "postgres",
    };
    assert_eq!(db.store.backend(), expected);
    db.store.ping().await.unwrap();
    db.store.insert_runs(&[]).await.unwrap();
}
