//! Drift aggregates on both backends: counts by GROUP BY, a percentile by OFFSET, a bounded
//! sample, checked against numbers worked out by hand.

use crate::common;

use common::{attempt, both_backends, run, Db};
use serde_json::json;
use shopfloor_store::{AttemptOutcome, RunDay, RunOrigin, RunRecord, RunStatus, RunWindow, Window};

const T0: i64 = 1_800_000_000_000;

/// Run `i` of the window: a label by `i % 4` (billing ×2, bug, account), latency `100 + i`,
/// every 10th invalid, every 5th answered by its second model after the first failed.
fn window_run(i: u32) -> RunRecord {
    let mut r = run(
        &format!("run-{i:04}"),
        "ticket-triage",
        T0 + i64::from(i),
        None,
    );
    let label = ["billing", "billing", "bug", "account"][i as usize % 4];
    r.output = Some(json!(label));
    r.latency_ms = 100 + u64::from(i);
    r.input = json!({ "subject": format!("ticket {i}"), "body": "words" });
    if i % 10 == 9 {
        r.status = RunStatus::Invalid;
        r.output = None;
    }
    let mut last = attempt(1, AttemptOutcome::Ok);
    last.prompt_tokens = 50 + u64::from(i % 7);
    last.completion_tokens = 1 + u64::from(i % 3);
    r.model = Some(last.model.clone());
    r.attempts = vec![last.clone()];
    if i.is_multiple_of(5) {
        last.n = 2;
        last.model = "model-2".into();
        r.model = Some("model-2".into());
        r.attempts = vec![attempt(1, AttemptOutcome::Error), last];
    }
    r
}

fn window(from_ms: i64, to_ms: i64) -> RunWindow<'static> {
    RunWindow {
        workflow: "ticket-triage",
        version: "v-3f2a",
        from_ms,
        to_ms,
    }
}

async fn seed(db: &Db) {
    let mut runs: Vec<RunRecord> = (0..200).map(window_run).collect();
    // Outside the window: another version, another workflow, later, refused.
    let mut other_version = window_run(500);
    other_version.version = "v-old".into();
    let mut other_workflow = window_run(501);
    other_workflow.workflow = "invoice".into();
    let later = window_run(10_000);
    let mut refused = window_run(502);
    refused.id = "run-refused".into();
    refused.created_at_ms = T0 + 150;
    refused.status = RunStatus::Refused;
    refused.output = None;
    refused.model = None;
    refused.attempts = Vec::new();
    refused.latency_ms = 99_999;
    // An eval of the live version, inside the window: not production traffic, never counted.
    let mut evaluated = window_run(503);
    evaluated.id = "run-eval".into();
    evaluated.created_at_ms = T0 + 300;
    evaluated.origin = RunOrigin::Eval;
    evaluated.batch_id = Some("eval-1".into());
    evaluated.case_index = Some(1);
    evaluated.output = Some(json!("refund"));
    evaluated.latency_ms = 50_000;
    runs.extend([other_version, other_workflow, later, refused, evaluated]);
    db.store.insert_runs(&runs).await.unwrap();
}

async fn counts_come_from_the_window_only(db: &Db) {
    seed(db).await;
    let counts = db
        .store
        .window_counts(&window(T0, T0 + 1000))
        .await
        .unwrap();
    // 200 runs of the window, 20 of them invalid, and the refused one.
    assert_eq!(counts.runs(), 201);
    assert_eq!(counts.with_status(RunStatus::Invalid), 20);
    assert_eq!(counts.with_status(RunStatus::Refused), 1);
    assert_eq!(counts.with_status(RunStatus::Ok), 180);
    // i ≡ 9 (mod 10) is invalid: of the 20, i % 4 is 1 or 3 ten times each.
    assert_eq!(
        counts.outputs,
        vec![
            ("\"account\"".to_string(), 40),
            ("\"billing\"".to_string(), 90),
            ("\"bug\"".to_string(), 50),
        ]
    );
    // Every 5th of the 200 fell back to its second model.
    assert_eq!(counts.fallbacks, 40);
    let empty = db.store.window_counts(&window(0, 10)).await.unwrap();
    assert_eq!(empty.runs(), 0);
    assert!(empty.outputs.is_empty());
}

async fn p95_latency_is_the_nearest_rank_without_refusals(db: &Db) {
    seed(db).await;
    let w = window(T0, T0 + 1000);
    // 200 latencies 100..=299; nearest rank 190 → 289. The refused run's 99 999 is left out.
    assert_eq!(
        db.store.window_latency_percentile(&w, 95.0).await.unwrap(),
        Some(289)
    );
    assert_eq!(
        db.store.window_latency_percentile(&w, 100.0).await.unwrap(),
        Some(299)
    );
    assert_eq!(
        db.store
            .window_latency_percentile(&window(0, 10), 95.0)
            .await
            .unwrap(),
        None
    );
}

async fn the_sample_is_bounded_and_evenly_spaced(db: &Db) {
    seed(db).await;
    let w = window(T0, T0 + 1000);
    // 201 runs, at most 50: every 5th by creation (step ⌈201/50⌉ = 5), oldest first: rows
    // 1, 6, …, 201 — 41 of them; the refused run (row 152, after run 150) is not among them.
    let sample = db.store.window_sample(&w, 50).await.unwrap();
    let subjects: Vec<String> = sample
        .iter()
        .map(|s| {
            serde_json::from_str::<serde_json::Value>(&s.input).unwrap()["subject"].to_string()
        })
        .collect();
    assert_eq!(sample.len(), 41, "{subjects:?}");
    assert_eq!(subjects[0], "\"ticket 0\"");
    assert_eq!(subjects[1], "\"ticket 5\"");
    assert_eq!(subjects[31], "\"ticket 154\"");
    // Tokens are the answering (last) attempt's.
    assert_eq!(
        (sample[1].prompt_tokens, sample[1].completion_tokens),
        (55, 3)
    );
    let all = db.store.window_sample(&w, 1000).await.unwrap();
    // Every run that reached a model; the refused one has no attempt.
    assert_eq!(all.len(), 200);
    assert!(db.store.window_sample(&w, 0).await.unwrap().is_empty());
}

async fn first_run_of_a_version(db: &Db) {
    seed(db).await;
    let store = &db.store;
    assert_eq!(
        store
            .first_run_at("ticket-triage", "v-3f2a", 0)
            .await
            .unwrap(),
        Some(T0)
    );
    assert_eq!(
        store
            .first_run_at("ticket-triage", "v-3f2a", T0 + 201)
            .await
            .unwrap(),
        Some(T0 + 10_000)
    );
    assert_eq!(
        store
            .first_run_at("ticket-triage", "v-none", 0)
            .await
            .unwrap(),
        None
    );
}

/// The per-day series: runs by version and UTC day, with accepted and invalid counts, cost and
/// summed latency; other workflows and runs outside the window left out.
async fn runs_per_day_by_version(db: &Db) {
    const DAY: i64 = 86_400_000;
    let day = T0 / DAY; // 20833: T0 is 08:00 UTC that day.
    let make = |id: &str, at: i64, status: RunStatus, latency: u64| {
        let mut r = run(id, "ticket-triage", at, None);
        r.status = status;
        r.latency_ms = latency;
        r.cost_usd = 0.25;
        r
    };
    let mut old = make("d-4", T0 + DAY, RunStatus::Ok, 50);
    old.version = "v-old".into();
    let mut elsewhere = make("d-5", T0, RunStatus::Ok, 70);
    elsewhere.workflow = "invoice".into();
    let runs = [
        make("d-1", T0, RunStatus::Ok, 100),
        make("d-2", T0 + 60_000, RunStatus::Invalid, 200),
        make("d-3", T0 + 120_000, RunStatus::Held, 300),
        old,
        elsewhere,
        make("d-6", T0 + 3 * DAY, RunStatus::Ok, 10),
    ];
    db.store.insert_runs(&runs).await.unwrap();
    let days = db
        .store
        .run_days(
            "ticket-triage",
            Window {
                from_ms: T0 - DAY,
                to_ms: T0 + 2 * DAY,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        days,
        vec![
            RunDay {
                version: "v-3f2a".into(),
                day,
                runs: 3,
                accepted: 1,
                invalid: 1,
                cost_usd: 0.75,
                latency_ms: 600,
            },
            RunDay {
                version: "v-old".into(),
                day: day + 1,
                runs: 1,
                accepted: 1,
                invalid: 0,
                cost_usd: 0.25,
                latency_ms: 50,
            },
        ]
    );
}

/// A window of more than `SLOT_SAMPLING_MIN_RUNS` runs is sampled by time: the first run of
/// each of `limit` equal spans over the hours that have its runs, oldest first.
async fn a_busy_window_is_sampled_by_time(db: &Db) {
    const SPACING: i64 = 30_000;
    let n = shopfloor_store::SLOT_SAMPLING_MIN_RUNS as usize + 100;
    let runs: Vec<RunRecord> = (0..n)
        .map(|i| {
            let mut r = run(
                &format!("busy-{i:06}"),
                "ticket-triage",
                T0 + i as i64 * SPACING,
                None,
            );
            r.input = json!({ "i": i });
            r.prompt = json!([]);
            r
        })
        .collect();
    for chunk in runs.chunks(2_000) {
        db.store.insert_runs(chunk).await.unwrap();
    }
    let w = window(T0 - 5 * SPACING, T0 + (n as i64 + 5) * SPACING);
    let sample = db.store.window_sample(&w, 100).await.unwrap();
    let picked: Vec<i64> = sample
        .iter()
        .map(|s| {
            serde_json::from_str::<serde_json::Value>(&s.input).unwrap()["i"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(picked.len(), 100, "{picked:?}");
    assert_eq!(picked[0], 0);
    // The spans cover the hours that have runs, cut to the window: from the later of the
    // window's start and the first run's hour, to the earlier of its end and the last run's
    // hour's end, in 100 spans; span k picks the first run at or after its start.
    const HOUR: i64 = 3_600_000;
    let last_run = T0 + (n as i64 - 1) * SPACING;
    let start = w.from_ms.max(T0.div_euclid(HOUR) * HOUR);
    let end = w.to_ms.min((last_run.div_euclid(HOUR) + 1) * HOUR);
    let width = (end - start + 99) / 100;
    for (k, i) in picked.iter().enumerate() {
        let from = start + k as i64 * width;
        let expected = ((from - T0).max(0) + SPACING - 1) / SPACING;
        assert_eq!(*i, expected, "span {k}");
    }
}

both_backends!(
    a_busy_window_is_sampled_by_time,
    runs_per_day_by_version,
    counts_come_from_the_window_only,
    p95_latency_is_the_nearest_rank_without_refusals,
    the_sample_is_bounded_and_evenly_spaced,
    first_run_of_a_version,
);
