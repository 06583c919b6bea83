//! A project with one labelled workflow (`triage`, with a 60-case eval set) and a history of
//! runs seeded straight into its store: one attempt each, 1% held and decided by a reviewer,
//! spread over the last 28 days. Shared by the benches that time commands and pages on a
//! large history (`operating_bench`, and the server's `dashboard_bench` includes this file).

#![allow(dead_code)] // Each bench uses its part.

use std::path::Path;
use std::time::Instant;

use serde_json::json;
use shopfloor_core::review::{Decision, ReviewReason, ReviewStatus};
use shopfloor_engine::{now_ms, Engine};
use shopfloor_store::{
    AttemptOutcome, AttemptRecord, ReviewDecisionRecord, ReviewTicket, ReviewUpdate, RunRecord,
    RunStatus,
};
use shopfloor_testkit::{self as testkit, OpenAiModel, WorkflowToml};

pub const DAY_MS: i64 = 86_400_000;
pub const LABELS: [&str; 4] = ["billing", "bug", "account", "other"];
const CHUNK: usize = 2_000;

/// The project, its model `fast` at `model_url` (an upstream that is never called by seeding).
pub fn write_project(dir: &Path, model_url: &str) {
    let model = OpenAiModel::new("fast", model_url).classes(&["internal"]);
    let triage = WorkflowToml::new(&["text"], "Route: {{ text }}")
        .line("owner = \"dana@acme.example\"")
        .then(
            "[outcome]\nkpi = \"minutes\"\nbaseline = 40\ntarget = 15\nminutes_saved_per_accepted = 3\n\
             reviewer_cost_per_hour = 60\n[output]\nlabels = [\"billing\", \"bug\", \"account\", \"other\"]\n\
             [route]\nmodels = [\"fast\"]\n[eval]\ndataset = \"datasets/triage.jsonl\"\n\
             scorers = [\"label_accuracy\"]\n",
        )
        .replace("stage = \"draft\"", "stage = \"pilot\"");
    testkit::write_project(dir, &model.to_string(), &[("triage", &triage)]);
    std::fs::create_dir_all(dir.join("datasets")).unwrap();
    let cases: String = (0..60)
        .map(|i| {
            format!(
                "{{\"id\": \"c{i}\", \"input\": {{\"text\": \"ticket {i}\"}}, \"expected\": \"{}\"}}\n",
                LABELS[i % 4]
            )
        })
        .collect();
    std::fs::write(dir.join("datasets/triage.jsonl"), cases).unwrap();
}

/// Run `i` of `runs`: its label, status, review and time follow from `i`.
pub fn run(i: usize, version: &str, now: i64, runs: usize) -> RunRecord {
    let at = now - 28 * DAY_MS + (i as i64 * 28 * DAY_MS) / runs as i64;
    let label = LABELS[(i * 7 + i / 97) % 4];
    let held = i.is_multiple_of(100);
    RunRecord {
        id: format!("run-{i:08}"),
        workflow: "triage".into(),
        version: version.into(),
        batch_id: None,
        case_index: None,
        status: if held {
            RunStatus::Held
        } else if i.is_multiple_of(37) {
            RunStatus::Invalid
        } else {
            RunStatus::Ok
        },
        input: json!({"text": format!("ticket number {i} about {label}")}),
        prompt: json!([]),
        raw_output: Some(label.into()),
        output: Some(json!(label)),
        error: None,
        model: Some("fast".into()),
        prompt_tokens: 120 + (i % 50) as u64,
        completion_tokens: 1,
        cost_usd: 0.000_02,
        latency_ms: 200 + (i % 300) as u64,
        created_at_ms: at,
        attempts: vec![AttemptRecord {
            n: 1,
            model: "fast".into(),
            provider: "openai-compatible".into(),
            outcome: AttemptOutcome::Ok,
            error: None,
            error_kind: None,
            prompt_tokens: 120,
            completion_tokens: 1,
            cost_usd: 0.000_02,
            latency_ms: 200,
            started_at_ms: at,
            raw_output: Some(label.into()),
        }],
        caller: None,
        sampled_for_review: false,
        confidence: None,
        review: held.then_some(ReviewTicket {
            reason: ReviewReason::HighRisk,
            approvals_required: 1,
            due_at_ms: None,
        }),
        origin: Default::default(),
        experiment: None,
    }
}

/// Seed `runs` runs into the engine's store; returns runs per second.
pub async fn seed(engine: &Engine, runs: usize) -> f64 {
    let version = engine.project.workflow("triage").unwrap().version.clone();
    let now = now_ms();
    let started = Instant::now();
    for chunk in (0..runs).collect::<Vec<_>>().chunks(CHUNK) {
        let batch: Vec<RunRecord> = chunk.iter().map(|&i| run(i, &version, now, runs)).collect();
        engine.store().insert_runs(&batch).await.unwrap();
    }
    let rate = runs as f64 / started.elapsed().as_secs_f64();
    for i in (0..runs).step_by(100) {
        let decided = run(i, &version, now, runs).created_at_ms + 300_000;
        let update = ReviewUpdate {
            decision: ReviewDecisionRecord {
                run_id: format!("run-{i:08}"),
                reviewer: format!("reviewer-{}", i % 3),
                decision: Decision::Approve,
                output: None,
                reason: None,
                note: None,
                claimed_at_ms: Some(decided - 120_000),
                decided_at_ms: decided,
            },
            status: ReviewStatus::Approved,
            seen_decisions: 0,
            events: Vec::new(),
        };
        engine.store().decide_review(&update).await.unwrap();
    }
    rate
}
