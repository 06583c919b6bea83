//! The rollups against the runs they sum, on both backends: a history of 3,000 runs over ten
//! days (two workflows, two versions, every status, labels and other outputs, fallbacks,
//! callers and the anonymous, eval runs, held runs approved, corrected and rejected) is read
//! through every figure that uses the rollups, over windows with whole hours, ragged edges and
//! no whole hour, and each answer is checked against the same figure worked out in Rust from
//! the runs themselves. The review rollups are checked alike against the decisions (several
//! reviewers, claimed and unclaimed, reasons, items decided twice). Then the rollups are
//! dropped and migrations 16 and 19 rebuild them from the runs and decisions: the answers must
//! not change.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{attempt, both_backends, run, Db};
use serde_json::{json, Value};
use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};
use shopfloor_store::{
    week_of_ms, AttemptOutcome, Caller, ReviewDecisionRecord, ReviewTicket, ReviewUpdate,
    RunOrigin, RunRecord, RunStatus, RunWindow, Store, Window,
};

both_backends!(
    every_figure_read_from_the_rollups_equals_a_scan_of_the_runs,
    a_database_recorded_before_the_rollups_gets_them_from_its_runs,
);

const T0: i64 = 1_800_000_000_000;

/// A day's runs, accepted, invalid, cost and summed latency.
type DaySums = (u64, u64, u64, f64, i64);
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const RUNS: usize = 3_000;

/// Run `i` of the history, as recorded.
fn history_run(i: usize) -> RunRecord {
    let mut r = run(
        &format!("run-{i:05}"),
        if i.is_multiple_of(11) {
            "other"
        } else {
            "triage"
        },
        T0 + i as i64 * 293_117,
        None,
    );
    r.version = if i < RUNS / 2 || i.is_multiple_of(7) {
        "v1"
    } else {
        "v2"
    }
    .into();
    r.output = Some(json!(["billing", "bug", "account"][i % 3]));
    if i.is_multiple_of(29) {
        r.output = Some(json!("x".repeat(250)));
    } else if i.is_multiple_of(31) {
        r.output = Some(json!({ "a": i }));
    }
    r.latency_ms = (i as u64 * 37) % 5_000 + 1;
    r.cost_usd = 0.001 * (i % 5) as f64;
    r.error = None;
    r.model = Some("model-1".into());
    r.attempts = vec![attempt(1, AttemptOutcome::Ok)];
    if i.is_multiple_of(5) {
        r.model = Some("model-2".into());
        r.attempts = vec![
            attempt(1, AttemptOutcome::Error),
            attempt(2, AttemptOutcome::Ok),
        ];
    }
    r.caller = (!i.is_multiple_of(4)).then(|| Caller {
        key_id: format!("k{}", i % 3),
        user: (i % 2 == 1).then(|| format!("u{}", i % 5)),
        team: (!i.is_multiple_of(3)).then(|| format!("t{}", i % 2)),
    });
    if i.is_multiple_of(13) {
        r.status = RunStatus::Held;
        r.review = Some(ReviewTicket {
            reason: ReviewReason::HighRisk,
            approvals_required: 1,
            due_at_ms: None,
        });
    } else if i.is_multiple_of(17) {
        r.status = RunStatus::Invalid;
        r.output = None;
    } else if i.is_multiple_of(19) {
        r.status = RunStatus::Refused;
        r.output = None;
        r.model = None;
        r.attempts = Vec::new();
        r.latency_ms = 99_999;
    } else if i.is_multiple_of(23) {
        r.status = RunStatus::Failed;
        r.output = None;
    }
    if i.is_multiple_of(41) {
        r.origin = RunOrigin::Eval;
        r.batch_id = Some("eval-1".into());
        r.case_index = Some(i as u64);
    }
    r
}

/// A decision taken on the history, and where its item stands.
struct Decided {
    workflow: String,
    version: String,
    created_at_ms: i64,
    decision: ReviewDecisionRecord,
    /// The item ended approved or corrected.
    accepted: bool,
}

/// The runs as they stand after their decisions, and the decisions.
struct History {
    runs: Vec<RunRecord>,
    decided: Vec<Decided>,
}

/// Record the history and decide its held runs: approve, correct to "account" or reject (with
/// one of two reasons) in turn, by three reviewers, most under a claim; every fifth item is
/// decided twice, first by a fourth reviewer.
async fn record_history(store: &Arc<dyn Store>) -> History {
    let mut runs: Vec<RunRecord> = (0..RUNS).map(history_run).collect();
    for chunk in runs.chunks(256) {
        store.insert_runs(chunk).await.unwrap();
    }
    let mut decided = Vec::new();
    for (i, r) in runs.iter_mut().enumerate() {
        if r.status != RunStatus::Held || r.origin == RunOrigin::Eval {
            continue;
        }
        let k = i / 13;
        let (decision, status, output) = match i % 3 {
            0 => (Decision::Approve, ReviewStatus::Approved, None),
            1 => (Decision::Edit, ReviewStatus::Edited, Some(json!("account"))),
            _ => (Decision::Reject, ReviewStatus::Rejected, None),
        };
        let reason = (decision == Decision::Reject).then(|| ["unsafe", "off-topic"][k % 2].into());
        let mut steps = Vec::new();
        if k.is_multiple_of(5) {
            let first = [Decision::Approve, Decision::Reject][k % 2];
            let record = ReviewDecisionRecord {
                run_id: r.id.clone(),
                reviewer: "dee".into(),
                decision: first,
                output: None,
                reason: (first == Decision::Reject).then(|| "unsafe".into()),
                note: None,
                claimed_at_ms: Some(r.created_at_ms + 500),
                decided_at_ms: r.created_at_ms + 500 + (k as i64 * 104_729) % 900_000,
            };
            steps.push((record, ReviewStatus::Pending));
        }
        let claimed_at_ms = (!k.is_multiple_of(4)).then_some(r.created_at_ms + 1_000);
        let record = ReviewDecisionRecord {
            run_id: r.id.clone(),
            reviewer: ["ann", "bob", "cy"][k % 3].into(),
            decision,
            output: output.clone(),
            reason,
            note: None,
            claimed_at_ms,
            decided_at_ms: r.created_at_ms + 1_000 + (k as i64 * 7_919) % 600_000,
        };
        steps.push((record, status));
        for (seen, (record, status)) in steps.into_iter().enumerate() {
            let update = ReviewUpdate {
                decision: record.clone(),
                status,
                seen_decisions: seen as u32,
                events: Vec::new(),
            };
            assert!(store.decide_review(&update).await.unwrap());
            decided.push(Decided {
                workflow: r.workflow.clone(),
                version: r.version.clone(),
                created_at_ms: r.created_at_ms,
                decision: record,
                accepted: matches!(status, ReviewStatus::Approved | ReviewStatus::Edited),
            });
        }
        r.status = match status {
            ReviewStatus::Rejected => RunStatus::Rejected,
            _ => RunStatus::Ok,
        };
        if let Some(output) = output {
            r.output = Some(output);
        }
    }
    History { runs, decided }
}

/// The review figures over `[from_ms, to_ms)` and the all-time tallies from `store` against
/// the same figures from the decisions.
async fn check_reviews(store: &Arc<dyn Store>, history: &History, from_ms: i64, to_ms: i64) {
    let context = format!("window [{from_ms}, {to_ms})");
    // Accepted items and reviewer time per version and week of the reviewed runs.
    let mut expected: BTreeMap<(i64, String), (u64, u64, i64)> = BTreeMap::new();
    for d in &history.decided {
        if d.workflow != "triage" || d.created_at_ms < from_ms || d.created_at_ms >= to_ms {
            continue;
        }
        let e = expected
            .entry((week_of_ms(d.created_at_ms), d.version.clone()))
            .or_default();
        e.0 += u64::from(d.accepted);
        if let Some(claimed) = d.decision.claimed_at_ms {
            e.1 += 1;
            e.2 += d.decision.decided_at_ms - claimed;
        }
    }
    expected.retain(|_, e| *e != (0, 0, 0));
    let got: BTreeMap<(i64, String), (u64, u64, i64)> = store
        .review_weeks("triage", Window { from_ms, to_ms })
        .await
        .unwrap()
        .into_iter()
        .map(|w| {
            (
                (w.week, w.version),
                (w.accepted, w.timed_decisions, w.reviewer_ms),
            )
        })
        .filter(|(_, e)| *e != (0, 0, 0))
        .collect();
    assert_eq!(got, expected, "{context}");

    for workflow in [Some("triage"), Some("other"), None] {
        let of = || {
            history
                .decided
                .iter()
                .filter(move |d| workflow.is_none_or(|w| d.workflow == w))
        };
        let tallies = store.review_tallies(workflow).await.unwrap();
        let mut reviewers: BTreeMap<&str, (u64, Vec<i64>)> = BTreeMap::new();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        let mut firsts: BTreeMap<&str, Decision> = BTreeMap::new();
        let mut pairs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for d in of() {
            let e = reviewers.entry(&d.decision.reviewer).or_default();
            e.0 += 1;
            e.1.extend(
                d.decision
                    .claimed_at_ms
                    .map(|c| d.decision.decided_at_ms - c),
            );
            if let Some(reason) = &d.decision.reason {
                *reasons.entry(reason.clone()).or_default() += 1;
            }
            if let Some(first) = firsts.insert(&d.decision.run_id, d.decision.decision) {
                *pairs
                    .entry((first.as_str(), d.decision.decision.as_str()))
                    .or_default() += 1;
            }
        }
        let context = format!("{workflow:?}");
        assert_eq!(
            tallies.reasons.into_iter().collect::<BTreeMap<_, _>>(),
            reasons,
            "{context}"
        );
        assert_eq!(
            tallies
                .pairs
                .into_iter()
                .map(|(a, b, n)| ((a.as_str(), b.as_str()), n))
                .collect::<BTreeMap<_, _>>(),
            pairs,
            "{context}"
        );
        assert_eq!(tallies.reviewers.len(), reviewers.len(), "{context}");
        for t in tallies.reviewers {
            let (n, mut times) = reviewers.remove(t.reviewer.as_str()).unwrap();
            assert_eq!(t.decisions, n, "{context} {}", t.reviewer);
            times.sort_unstable();
            for (q, got) in [(0.50, t.p50_ms), (0.95, t.p95_ms)] {
                let exact = (!times.is_empty()).then(|| {
                    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
                    times[rank - 1] as u64
                });
                match (exact, got) {
                    (Some(exact), Some(got)) => assert!(
                        got >= exact && got - exact <= exact / 32,
                        "{context} {}: p{q} {got}, exactly {exact}",
                        t.reviewer
                    ),
                    (exact, got) => assert_eq!(got, exact, "{context} {}", t.reviewer),
                }
            }
        }
    }
}

fn in_window(r: &RunRecord, workflow: &str, from_ms: i64, to_ms: i64) -> bool {
    r.workflow == workflow
        && r.origin != RunOrigin::Eval
        && r.created_at_ms >= from_ms
        && r.created_at_ms < to_ms
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Every figure over `[from_ms, to_ms)` from `store` against the same figure from `runs`.
async fn check_window(store: &Arc<dyn Store>, history: &History, from_ms: i64, to_ms: i64) {
    check_reviews(store, history, from_ms, to_ms).await;
    let runs = &history.runs;
    let window = Window { from_ms, to_ms };
    let of = |workflow: &'static str| {
        runs.iter()
            .filter(move |r| in_window(r, workflow, from_ms, to_ms))
    };
    let context = format!("window [{from_ms}, {to_ms})");

    // Runs per version, week and status.
    let mut expected: BTreeMap<(i64, String, &str), (u64, f64)> = BTreeMap::new();
    for r in of("triage") {
        let e = expected
            .entry((
                week_of_ms(r.created_at_ms),
                r.version.clone(),
                r.status.as_str(),
            ))
            .or_default();
        e.0 += 1;
        e.1 += r.cost_usd;
    }
    let got = store.run_weeks("triage", window).await.unwrap();
    assert_eq!(got.len(), expected.len(), "{context}: {got:?}");
    for w in &got {
        let e = expected[&(w.week, w.version.clone(), w.status.as_str())];
        assert_eq!(w.runs, e.0, "{context}: {w:?}");
        assert!(close(w.cost_usd, e.1), "{context}: {w:?} against {e:?}");
    }

    // Runs per version and day.
    let mut expected: BTreeMap<(i64, String), DaySums> = BTreeMap::new();
    for r in of("triage") {
        let e = expected
            .entry((r.created_at_ms.div_euclid(DAY), r.version.clone()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(r.status == RunStatus::Ok);
        e.2 += u64::from(r.status == RunStatus::Invalid);
        e.3 += r.cost_usd;
        e.4 += r.latency_ms as i64;
    }
    let got = store.run_days("triage", window).await.unwrap();
    assert_eq!(got.len(), expected.len(), "{context}: {got:?}");
    for d in &got {
        let e = expected[&(d.day, d.version.clone())];
        assert_eq!(
            (d.runs, d.accepted, d.invalid, d.latency_ms),
            (e.0, e.1, e.2, e.4),
            "{context}: {d:?}"
        );
        assert!(close(d.cost_usd, e.3), "{context}: {d:?}");
    }

    // Distinct callers per week.
    let mut expected: BTreeMap<i64, [std::collections::BTreeSet<String>; 3]> = BTreeMap::new();
    let mut anonymous: BTreeMap<i64, u64> = BTreeMap::new();
    for r in of("triage") {
        let week = week_of_ms(r.created_at_ms);
        let sets = expected.entry(week).or_default();
        *anonymous.entry(week).or_default() += u64::from(r.caller.is_none());
        if let Some(c) = &r.caller {
            sets[0].extend(c.user.clone());
            sets[1].extend(c.team.clone());
            sets[2].insert(c.key_id.clone());
        }
    }
    let got = store.caller_weeks("triage", window).await.unwrap();
    assert_eq!(got.len(), expected.len(), "{context}: {got:?}");
    for w in &got {
        let sets = &expected[&w.week];
        assert_eq!(
            (w.users, w.teams, w.keys, w.anonymous_runs),
            (
                sets[0].len() as u64,
                sets[1].len() as u64,
                sets[2].len() as u64,
                anonymous[&w.week]
            ),
            "{context}: {w:?}"
        );
    }

    // Runs and accepted outputs per team.
    let mut expected: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for r in of("triage") {
        let e = expected
            .entry(r.caller.as_ref().and_then(|c| c.team.clone()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(r.status == RunStatus::Ok);
    }
    let got: BTreeMap<Option<String>, (u64, u64)> = store
        .team_runs("triage", window)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.team, (t.runs, t.accepted)))
        .collect();
    assert_eq!(got, expected, "{context}");

    // Drift's counts, latency and sample, per version.
    for version in ["v1", "v2"] {
        let of_version = || of("triage").filter(|r| r.version == version);
        let w = RunWindow {
            workflow: "triage",
            version,
            from_ms,
            to_ms: to_ms.min(T0 + 20 * DAY),
        };
        let counts = store.window_counts(&w).await.unwrap();
        let mut statuses: BTreeMap<&str, u64> = BTreeMap::new();
        let mut outputs: BTreeMap<String, u64> = BTreeMap::new();
        let mut fallbacks = 0;
        for r in of_version() {
            *statuses.entry(r.status.as_str()).or_default() += 1;
            fallbacks += u64::from(r.model.as_deref() == Some("model-2"));
            let keeps = matches!(
                r.status,
                RunStatus::Ok | RunStatus::Held | RunStatus::Rejected
            );
            if let (true, Some(Value::String(label))) = (keeps, &r.output) {
                if label.len() < 190 {
                    *outputs.entry(json!(label).to_string()).or_default() += 1;
                }
            }
        }
        let got: BTreeMap<&str, u64> = counts
            .statuses
            .iter()
            .map(|(s, n)| (s.as_str(), *n))
            .collect();
        assert_eq!(got, statuses, "{context} {version}");
        assert_eq!(
            counts.outputs.iter().cloned().collect::<BTreeMap<_, _>>(),
            outputs,
            "{context} {version}"
        );
        assert_eq!(counts.fallbacks, fallbacks, "{context} {version}");

        let mut latencies: Vec<u64> = of_version()
            .filter(|r| r.status != RunStatus::Refused)
            .map(|r| r.latency_ms)
            .collect();
        latencies.sort_unstable();
        let got = store.window_latency_percentile(&w, 95.0).await.unwrap();
        if latencies.is_empty() {
            assert_eq!(got, None, "{context} {version}");
        } else {
            let rank = ((0.95 * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            let exact = latencies[rank - 1];
            let got = got.unwrap();
            assert!(
                got >= exact && got - exact <= exact / 32,
                "{context} {version}: p95 {got}, exactly {exact}"
            );
        }

        let sample = store.window_sample(&w, 50).await.unwrap();
        let reached = of_version()
            .filter(|r| r.status != RunStatus::Refused)
            .count();
        if of_version().count() <= 50 {
            assert_eq!(sample.len(), reached, "{context} {version}");
        } else {
            assert!((1..=50).contains(&sample.len()), "{context} {version}");
        }
    }
}

const WINDOWS: [(i64, i64); 5] = [
    (0, i64::MAX),
    (T0 + HOUR + 1_800_017, T0 + 3 * DAY + 5 * HOUR + 3),
    (T0 + 100, T0 + 200_000),
    (T0 + 2 * DAY, T0 + 9 * DAY),
    (T0 + 4 * DAY + 17, T0 + 4 * DAY + HOUR - 5),
];

async fn every_figure_read_from_the_rollups_equals_a_scan_of_the_runs(db: &Db) {
    let history = record_history(&db.store).await;
    for (from, to) in WINDOWS {
        check_window(&db.store, &history, from, to).await;
    }
}

async fn a_database_recorded_before_the_rollups_gets_them_from_its_runs(db: &Db) {
    let history = record_history(&db.store).await;
    // The database as a build before migration 16 left it (and what came after).
    db.execute(
        "DROP TABLE run_hours; DROP TABLE run_hour_outputs; DROP TABLE run_hour_latency; \
         DROP TABLE run_day_callers; DELETE FROM schema_migrations WHERE version >= 16; \
         DROP INDEX runs_status_created; DROP INDEX runs_workflow_status_created; \
         DROP TABLE retention_marks; DROP TABLE review_reviewer_times; \
         DROP TABLE review_reasons; DROP TABLE review_pairs; DROP TABLE review_hours;",
    )
    .await;
    let reopened = shopfloor_store::open(&db.location).await.unwrap();
    for (from, to) in WINDOWS {
        check_window(&reopened, &history, from, to).await;
    }
}
