//! Eval runs, case results, the eval cache and baselines, against a real SQLite file and a real
//! PostgreSQL database (see `store.rs` for how PostgreSQL is reached).

use crate::common;

use common::{both_backends, eval, eval_case, Db};
use serde_json::json;
use shopfloor_store::{EvalCaseRecord, EvalRecord, EvalStatus, RunStatus, StoreError};

both_backends!(
    eval_and_cases_round_trip_with_every_field,
    finish_eval_records_status_summary_and_verdict,
    list_evals_filters_limits_and_orders_newest_first,
    reinserting_eval_cases_is_skipped,
    insert_eval_cases_is_one_transaction_and_checks_its_input,
    eval_cases_are_paged_by_line,
    cache_serves_only_the_same_workflow_version_override_and_input,
    baselines_are_set_replaced_and_refused,
    a_database_of_the_previous_schema_is_upgraded_once,
);

async fn eval_and_cases_round_trip_with_every_field(db: &Db) {
    let full = EvalRecord {
        status: EvalStatus::Done,
        summary: Some(json!({"label_accuracy": {"mean": 0.91, "ci": [0.88, 0.94]}, "cost": 1.5})),
        passed: Some(false),
        finished_at_ms: Some(1_700_000_060_000),
        case_limit: Some(25),
        ..eval("e-full", "ticket-triage", 1_700_000_000_000)
    };
    let bare = EvalRecord {
        model_override: None,
        ..eval("e-bare", "ticket-triage", 1_700_000_000_001)
    };
    for e in [&full, &bare] {
        db.store.create_eval(e).await.unwrap();
        assert_eq!(db.store.get_eval(&e.id).await.unwrap().as_ref(), Some(e));
    }
    assert_eq!(db.store.get_eval("missing").await.unwrap(), None);
    assert!(
        db.store.create_eval(&full).await.is_err(),
        "an eval id is recorded once"
    );

    let mut cases = vec![eval_case("e-full", "t1", 1)];
    for status in RunStatus::ALL {
        let n = cases.len() as u64 + 1;
        cases.push(EvalCaseRecord {
            status,
            output: None,
            raw_output: None,
            expected: json!({"label": null, "fields": [1, 2.5, "x"]}),
            scores: Default::default(),
            tags: vec![],
            cached: true,
            ..eval_case("e-full", &format!("t{n}"), n)
        });
    }
    db.store.insert_eval_cases(&cases).await.unwrap();
    assert_eq!(db.store.eval_cases("e-full", 0, 100).await.unwrap(), cases);
    let mut statuses: Vec<_> = RunStatus::ALL.map(RunStatus::as_str).into();
    statuses.sort_unstable();
    assert_eq!(
        db.texts("SELECT DISTINCT status FROM eval_cases ORDER BY status")
            .await,
        statuses
    );
    assert_eq!(
        db.texts("SELECT status FROM evals ORDER BY id").await,
        ["running", "done"]
    );
}

async fn finish_eval_records_status_summary_and_verdict(db: &Db) {
    let created = eval("e1", "triage", 100);
    db.store.create_eval(&created).await.unwrap();
    let summary = json!({"label_accuracy": {"mean": 0.82}, "gates": {"label_accuracy": true}});
    db.store
        .finish_eval("e1", EvalStatus::Done, &summary, Some(true), 9_000)
        .await
        .unwrap();
    let finished = EvalRecord {
        status: EvalStatus::Done,
        summary: Some(summary.clone()),
        passed: Some(true),
        finished_at_ms: Some(9_000),
        ..created.clone()
    };
    assert_eq!(db.store.get_eval("e1").await.unwrap(), Some(finished));

    // Cancelled without gates: no verdict.
    db.store
        .finish_eval("e1", EvalStatus::Cancelled, &json!({}), None, 9_500)
        .await
        .unwrap();
    let cancelled = db.store.get_eval("e1").await.unwrap().unwrap();
    assert_eq!(
        (cancelled.status, cancelled.passed, cancelled.finished_at_ms),
        (EvalStatus::Cancelled, None, Some(9_500))
    );
    assert_eq!(cancelled.summary, Some(json!({})));

    // Resumed: running again, no longer finished.
    db.store
        .finish_eval("e1", EvalStatus::Running, &summary, None, 10_000)
        .await
        .unwrap();
    let resumed = db.store.get_eval("e1").await.unwrap().unwrap();
    assert_eq!(
        (resumed.status, resumed.finished_at_ms),
        (EvalStatus::Running, None)
    );

    let err = db
        .store
        .finish_eval("missing", EvalStatus::Done, &summary, Some(true), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { kind: "eval", id } if id == "missing"),
        "{err:?}"
    );
}

async fn list_evals_filters_limits_and_orders_newest_first(db: &Db) {
    for (id, workflow, created) in [
        ("a", "triage", 100),
        ("b", "summarise", 300),
        ("c", "triage", 200),
        ("d", "triage", 400),
        // Same millisecond as "d": the later id (UUID v7 order) lists first.
        ("e", "summarise", 400),
    ] {
        db.store
            .create_eval(&eval(id, workflow, created))
            .await
            .unwrap();
    }
    let ids = |workflow: Option<&'static str>, limit: u32| async move {
        let listed = db.store.list_evals(workflow, limit).await.unwrap();
        listed.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(None, 50).await, ["e", "d", "b", "c", "a"]);
    assert_eq!(ids(Some("triage"), 50).await, ["d", "c", "a"]);
    assert_eq!(ids(Some("triage"), 2).await, ["d", "c"]);
    assert_eq!(ids(None, 1).await, ["e"]);
    assert!(ids(None, 0).await.is_empty());
    assert!(ids(Some("nope"), 50).await.is_empty());
    let listed = db.store.list_evals(Some("summarise"), 1).await.unwrap();
    assert_eq!(listed, [eval("e", "summarise", 400)]);
}

async fn reinserting_eval_cases_is_skipped(db: &Db) {
    db.store
        .create_eval(&eval("e1", "triage", 1))
        .await
        .unwrap();
    let first = [eval_case("e1", "t1", 1), eval_case("e1", "t2", 2)];
    db.store.insert_eval_cases(&first).await.unwrap();

    // A retried flush: a recorded case with a different result, beside a new one.
    let retried = EvalCaseRecord {
        status: RunStatus::Failed,
        run_id: "another-run".into(),
        ..eval_case("e1", "t2", 2)
    };
    let third = eval_case("e1", "t3", 3);
    db.store
        .insert_eval_cases(&[retried, third.clone()])
        .await
        .unwrap();
    db.store.insert_eval_cases(&first).await.unwrap();
    let recorded = db.store.eval_cases("e1", 0, 10).await.unwrap();
    assert_eq!(recorded, [first[0].clone(), first[1].clone(), third]);

    // The same case twice in one flush is recorded once.
    let twice = [eval_case("e1", "t4", 4), eval_case("e1", "t4", 4)];
    db.store.insert_eval_cases(&twice).await.unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM eval_cases").await, 4);

    // The same case id in another eval is another case.
    db.store
        .create_eval(&eval("e2", "triage", 2))
        .await
        .unwrap();
    db.store
        .insert_eval_cases(&[eval_case("e2", "t1", 1)])
        .await
        .unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM eval_cases").await, 5);
    db.store.insert_eval_cases(&[]).await.unwrap();
}

async fn insert_eval_cases_is_one_transaction_and_checks_its_input(db: &Db) {
    db.store
        .create_eval(&eval("e1", "triage", 1))
        .await
        .unwrap();
    db.store
        .insert_eval_cases(&[eval_case("e1", "t1", 1)])
        .await
        .unwrap();

    // A different case on a recorded line is an engine bug, not a retry: refused, and the
    // good case of the same flush is not recorded either.
    let err = db
        .store
        .insert_eval_cases(&[eval_case("e1", "t2", 2), eval_case("e1", "other", 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Query(_)), "{err:?}");
    assert_eq!(db.int("SELECT COUNT(*) FROM eval_cases").await, 1);

    let err = db
        .store
        .insert_eval_cases(&[eval_case("e1", "t2", 2), eval_case("ghost", "t1", 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { kind: "eval", id } if id == "ghost"),
        "{err:?}"
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM eval_cases").await, 1);

    let huge = EvalCaseRecord {
        prompt_tokens: u64::MAX,
        ..eval_case("e1", "t3", 3)
    };
    let err = db.store.insert_eval_cases(&[huge]).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutOfRange {
                field: "eval_cases.prompt_tokens",
                value: u64::MAX
            }
        ),
        "{err:?}"
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM eval_cases").await, 1);
}

async fn eval_cases_are_paged_by_line(db: &Db) {
    for id in ["e1", "e2"] {
        db.store.create_eval(&eval(id, "triage", 1)).await.unwrap();
    }
    // Recorded out of order (cases finish out of order) and with gaps (invalid lines).
    let lines = [7, 2, 9, 1, 4, 12, 3, 10];
    let cases: Vec<_> = lines
        .iter()
        .map(|&line| eval_case("e1", &format!("c{line}"), line))
        .collect();
    db.store.insert_eval_cases(&cases[..5]).await.unwrap();
    db.store.insert_eval_cases(&cases[5..]).await.unwrap();
    db.store
        .insert_eval_cases(&[eval_case("e2", "c5", 5)])
        .await
        .unwrap();

    let page = |after_line: u64, limit: u32| async move {
        let cases = db.store.eval_cases("e1", after_line, limit).await.unwrap();
        cases.into_iter().map(|c| c.line).collect::<Vec<_>>()
    };
    assert_eq!(page(0, 3).await, [1, 2, 3]);
    assert_eq!(page(3, 3).await, [4, 7, 9]);
    assert_eq!(page(9, 3).await, [10, 12]);
    assert!(page(12, 3).await.is_empty());
    assert_eq!(page(5, 100).await, [7, 9, 10, 12]);
    assert!(page(0, 0).await.is_empty());
    assert!(page(u64::MAX, 10).await.is_empty());
    assert!(db
        .store
        .eval_cases("missing", 0, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn cache_serves_only_the_same_workflow_version_override_and_input(db: &Db) {
    let variants = [
        // (eval, workflow, version, override, created)
        ("old", "triage", "v1", None, 100),
        ("running", "triage", "v1", None, 200),
        ("newest", "triage", "v1", None, 300),
        ("cancelled", "triage", "v1", None, 400),
        ("reuser", "triage", "v1", None, 500),
        ("forced", "triage", "v1", Some("local"), 600),
        ("v2", "triage", "v2", None, 700),
        ("other-workflow", "summarise", "v1", None, 800),
    ];
    for (id, workflow, version, model_override, created) in variants {
        let record = EvalRecord {
            version: version.into(),
            model_override: model_override.map(Into::into),
            ..eval(id, workflow, created)
        };
        db.store.create_eval(&record).await.unwrap();
        let mut case = eval_case(id, "t1", 1);
        case.input_hash = "h1".into();
        // The newest eval of the version reused every case: its rows are copies, never served.
        case.cached = id == "reuser";
        db.store.insert_eval_cases(&[case]).await.unwrap();
    }
    let summary = json!({});
    for (id, status) in [
        ("old", EvalStatus::Done),
        ("newest", EvalStatus::Done),
        ("cancelled", EvalStatus::Cancelled),
        ("reuser", EvalStatus::Done),
    ] {
        db.store
            .finish_eval(id, status, &summary, Some(true), 1_000)
            .await
            .unwrap();
    }

    let hit = |workflow: &'static str,
               version: &'static str,
               model: Option<&'static str>,
               hash: &'static str| async move {
        let case = db
            .store
            .cached_eval_case(workflow, version, model, hash)
            .await
            .unwrap();
        case.map(|c| c.eval_id)
    };
    assert_eq!(
        hit("triage", "v1", None, "h1").await.as_deref(),
        Some("newest")
    );
    assert_eq!(
        hit("triage", "v1", Some("local"), "h1").await.as_deref(),
        Some("forced")
    );
    assert_eq!(hit("triage", "v2", None, "h1").await.as_deref(), Some("v2"));
    assert_eq!(
        hit("summarise", "v1", None, "h1").await.as_deref(),
        Some("other-workflow")
    );
    assert_eq!(hit("triage", "v1", Some("gpt-mini"), "h1").await, None);
    assert_eq!(hit("triage", "v1", None, "h2").await, None);
    assert_eq!(hit("triage", "v3", None, "h1").await, None);
    assert_eq!(hit("nope", "v1", None, "h1").await, None);

    // A newer eval whose case failed (a provider outage) is never served from the cache.
    let outage = EvalRecord {
        version: "v1".into(),
        ..eval("outage", "triage", 900)
    };
    db.store.create_eval(&outage).await.unwrap();
    let mut failed = eval_case("outage", "t1", 1);
    failed.input_hash = "h1".into();
    failed.status = shopfloor_store::RunStatus::Failed;
    db.store.insert_eval_cases(&[failed]).await.unwrap();
    db.store
        .finish_eval("outage", EvalStatus::Done, &summary, Some(false), 1_000)
        .await
        .unwrap();
    assert_eq!(
        hit("triage", "v1", None, "h1").await.as_deref(),
        Some("newest")
    );

    // The whole record comes back, as it was recorded.
    let served = db
        .store
        .cached_eval_case("triage", "v1", None, "h1")
        .await
        .unwrap();
    let mut expected = eval_case("newest", "t1", 1);
    expected.input_hash = "h1".into();
    assert_eq!(served, Some(expected));

    // Cancelling the newest falls back to the running one, then to the oldest.
    db.store
        .finish_eval("newest", EvalStatus::Cancelled, &summary, None, 2_000)
        .await
        .unwrap();
    assert_eq!(
        hit("triage", "v1", None, "h1").await.as_deref(),
        Some("running")
    );
    db.store
        .finish_eval("running", EvalStatus::Cancelled, &summary, None, 2_000)
        .await
        .unwrap();
    assert_eq!(
        hit("triage", "v1", None, "h1").await.as_deref(),
        Some("old")
    );
}

async fn baselines_are_set_replaced_and_refused(db: &Db) {
    for (id, workflow) in [("e1", "triage"), ("e2", "triage"), ("s1", "summarise")] {
        db.store.create_eval(&eval(id, workflow, 1)).await.unwrap();
    }
    assert_eq!(db.store.baseline("triage").await.unwrap(), None);

    db.store.set_baseline("triage", "e1", 10).await.unwrap();
    db.store.set_baseline("summarise", "s1", 11).await.unwrap();
    assert_eq!(
        db.store.baseline("triage").await.unwrap().as_deref(),
        Some("e1")
    );

    db.store.set_baseline("triage", "e2", 20).await.unwrap();
    assert_eq!(
        db.store.baseline("triage").await.unwrap().as_deref(),
        Some("e2")
    );
    assert_eq!(
        db.store.baseline("summarise").await.unwrap().as_deref(),
        Some("s1")
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM baselines").await, 2);
    assert_eq!(
        db.int("SELECT set_at_ms FROM baselines WHERE workflow = 'triage'")
            .await,
        20
    );

    let err = db
        .store
        .set_baseline("triage", "ghost", 30)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { kind: "eval", id } if id == "ghost"),
        "{err:?}"
    );
    let err = db.store.set_baseline("triage", "s1", 30).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { kind: "eval of this workflow", id } if id == "s1"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "no eval of this workflow with id \"s1\" is recorded"
    );
    // A refusal leaves the baseline as it was; a new workflow gets none.
    assert_eq!(
        db.store.baseline("triage").await.unwrap().as_deref(),
        Some("e2")
    );
    let err = db.store.set_baseline("new", "e1", 30).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(db.store.baseline("new").await.unwrap(), None);
}

/// `schema_migrations` as builds with one migration created it, then that migration.
const SCHEMA_OF_THE_PREVIOUS_BUILD: &str = concat!(
    "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
     applied_at_ms BIGINT NOT NULL);\n",
    include_str!("../../migrations/0001_runs.sql"),
    "\nINSERT INTO schema_migrations (version, name, applied_at_ms) \
     VALUES (1, 'runs_attempts_batches', 42);\n\
     INSERT INTO runs (id, workflow, version, status, input, prompt, prompt_tokens, \
     completion_tokens, cost_usd, latency_ms, created_at_ms) \
     VALUES ('kept', 'triage', 'v1', 'ok', '{}', '[]', 1, 2, 0.5, 3, 4);\n",
);

async fn a_database_of_the_previous_schema_is_upgraded_once(db: &Db) {
    let older = db.sibling_set_up_by(SCHEMA_OF_THE_PREVIOUS_BUILD).await;
    let migrations = || {
        older.texts(
            "SELECT CAST(version AS TEXT) || ':' || CAST(applied_at_ms AS TEXT) \
             FROM schema_migrations ORDER BY version",
        )
    };
    let upgraded = migrations().await;
    assert_eq!(upgraded.len(), 19, "every migration once: {upgraded:?}");
    assert_eq!(upgraded[0], "1:42", "migration 1 is not run again");
    for (i, applied) in upgraded.iter().enumerate().skip(1) {
        assert!(applied.starts_with(&format!("{}:", i + 1)), "{upgraded:?}");
    }
    assert!(older.store.get_run("kept").await.unwrap().is_some());

    older
        .store
        .create_eval(&eval("e1", "triage", 1))
        .await
        .unwrap();
    older
        .store
        .insert_eval_cases(&[eval_case("e1", "t1", 1)])
        .await
        .unwrap();

    let reopened = shopfloor_store::open(&older.location).await.unwrap();
    assert_eq!(migrations().await, upgraded, "reopening migrates nothing");
    assert_eq!(reopened.eval_cases("e1", 0, 10).await.unwrap().len(), 1);
}
