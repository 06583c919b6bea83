//! Retention on both backends: old production runs lose their texts and then go, in bounded
//! batches, oldest first; held runs, eval runs, newer runs and the rollups' figures stay.

use crate::common;

use common::{both_backends, run, Db};
use serde_json::{json, Value};
use shopfloor_core::review::ReviewReason;
use shopfloor_store::{ReviewTicket, RunOrigin, RunRecord, RunStatus, RunWindow, Window};

both_backends!(
    old_runs_lose_their_texts_in_batches_and_keep_their_figures,
    old_runs_are_deleted_but_not_held_or_eval_runs_nor_the_rollups,
);

const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

/// Run `i`, made `i` hours after T0: a label output on even runs, a text output on odd ones.
/// Both go when the texts are stripped; the label counts stay in the rollups.
fn aged(i: i64) -> RunRecord {
    let mut r = run(&format!("old-{i:03}"), "triage", T0 + i * 3_600_000, None);
    r.output = Some(if i % 2 == 0 {
        json!("billing")
    } else {
        json!("Dear Ms Jones, your refund of $40 is on its way.")
    });
    r
}

async fn history(db: &Db) -> Vec<RunRecord> {
    let mut runs: Vec<RunRecord> = (0..48).map(aged).collect();
    // Inside the first day too, but kept whatever their age: held, and an eval's.
    let mut held = aged(100);
    held.id = "held".into();
    held.created_at_ms = T0 + 1_000;
    held.status = RunStatus::Held;
    held.review = Some(ReviewTicket {
        reason: ReviewReason::HighRisk,
        approvals_required: 1,
        due_at_ms: None,
    });
    let mut evaluated = aged(101);
    evaluated.id = "eval-run".into();
    evaluated.created_at_ms = T0 + 2_000;
    evaluated.origin = RunOrigin::Eval;
    evaluated.batch_id = Some("eval-1".into());
    evaluated.case_index = Some(1);
    runs.extend([held, evaluated]);
    db.store.insert_runs(&runs).await.unwrap();
    runs
}

async fn old_runs_lose_their_texts_in_batches_and_keep_their_figures(db: &Db) {
    history(db).await;
    // The first day's 24 production runs, ten at a time.
    let cutoff = T0 + DAY;
    let mut batches = Vec::new();
    loop {
        let n = db.store.strip_run_texts(cutoff, 10).await.unwrap();
        if n == 0 {
            break;
        }
        batches.push(n);
    }
    assert_eq!(batches, [10, 10, 4]);
    for i in [0, 1, 23] {
        let r = db
            .store
            .get_run(&format!("old-{i:03}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.input.clone(), r.prompt.clone()),
            (Value::Null, Value::Null)
        );
        assert_eq!((r.raw_output.clone(), r.error.clone()), (None, None));
        assert_eq!(r.output, None, "label or text, the output goes");
        assert!(r
            .attempts
            .iter()
            .all(|a| a.raw_output.is_none() && a.error.is_none()));
        // The figures stay.
        assert_eq!(
            (r.status, r.cost_usd, r.prompt_tokens),
            (RunStatus::Ok, 0.000_246_8, 240)
        );
    }
    for id in ["old-024", "held", "eval-run"] {
        let r = db.store.get_run(id).await.unwrap().unwrap();
        assert_ne!(r.input, Value::Null, "{id} keeps its input");
        assert!(r.raw_output.is_some(), "{id}");
    }
    // A later cutoff goes on from where stripping stopped.
    assert_eq!(
        db.store.strip_run_texts(cutoff + DAY, 100).await.unwrap(),
        24
    );
    assert_eq!(
        db.store.strip_run_texts(cutoff + DAY, 100).await.unwrap(),
        0
    );
}

async fn old_runs_are_deleted_but_not_held_or_eval_runs_nor_the_rollups(db: &Db) {
    history(db).await;
    let all = Window::since(0);
    let weeks_before = db.store.run_weeks("triage", all).await.unwrap();
    let window = RunWindow {
        workflow: "triage",
        version: "v-3f2a",
        from_ms: T0,
        to_ms: T0 + 2 * DAY,
    };
    let counts_before = db.store.window_counts(&window).await.unwrap();
    let cutoff = T0 + DAY;
    assert_eq!(db.store.delete_runs_before(cutoff, 20).await.unwrap(), 20);
    assert_eq!(db.store.delete_runs_before(cutoff, 20).await.unwrap(), 4);
    assert_eq!(db.store.delete_runs_before(cutoff, 20).await.unwrap(), 0);
    for i in [0, 23] {
        assert!(db
            .store
            .get_run(&format!("old-{i:03}"))
            .await
            .unwrap()
            .is_none());
    }
    for id in ["old-024", "held", "eval-run"] {
        assert!(
            db.store.get_run(id).await.unwrap().is_some(),
            "{id} is kept"
        );
    }
    assert_eq!(
        db.int("SELECT COUNT(*) FROM attempts WHERE run_id = 'old-000'")
            .await,
        0,
        "attempts go with their run"
    );
    // Whole hours are read from the rollups, which keep the deleted runs' figures.
    assert_eq!(
        db.store.run_weeks("triage", all).await.unwrap(),
        weeks_before
    );
    assert_eq!(
        db.store.window_counts(&window).await.unwrap(),
        counts_before
    );
}
