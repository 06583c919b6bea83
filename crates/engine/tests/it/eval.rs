//! The eval loop against a real HTTP upstream on 127.0.0.1 and a real SQLite file: scores,
//! caching, baselines, gates and invalid datasets.

use crate::common;
use common::engine;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use shopfloor_engine::{
    Engine, EngineError, EngineOptions, EvalObserver, EvalRequest, EvalSummary,
};
use shopfloor_store::EvalCaseRecord;
use shopfloor_testkit::{
    self as testkit, openai_completion, FakeServer, OpenAiModel, ReceivedRequest, Reply,
    WorkflowToml,
};

/// A labels workflow on `fake` with an eval: label accuracy gated at 0.7, a 0.1 regression.
fn workflow() -> String {
    WorkflowToml::new(&["subject"], "Subject: {{ subject }}").then(
        "[output]\nlabels = [\"billing\", \"bug\", \"account\"]\n[route]\nmodels = [\"fake\"]\n\
         [eval]\ndataset = \"cases.jsonl\"\nscorers = [\"label_accuracy\", \"latency_ms\"]\n\
         gate = { label_accuracy = 0.7 }\nmax_regression = { label_accuracy = 0.1 }\n",
    )
}

struct Quiet;
impl EvalObserver for Quiet {
    fn started(&self, _: &str, _: u64, _: u64) {}
    fn finished(&self, _: &EvalCaseRecord) {}
}

fn write_project(dir: &Path, base_url: &str, cases: &[(&str, &str)]) {
    let fake = OpenAiModel::new("fake", base_url)
        .classes(&["internal"])
        .price(1.0, 1.0);
    testkit::write_project(dir, &fake.to_string(), &[("triage", &workflow())]);
    let lines: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (subject, expected))| {
            json!({"id": format!("c{i}"), "input": {"subject": subject}, "expected": expected})
                .to_string()
        })
        .collect();
    std::fs::write(dir.join("cases.jsonl"), lines.join("\n")).unwrap();
}

const CASES: [(&str, &str); 10] = [
    ("refund", "billing"),
    ("invoice wrong", "billing"),
    ("charged twice", "billing"),
    ("crash on save", "bug"),
    ("error 500", "bug"),
    ("button broken", "bug"),
    ("password reset", "account"),
    ("add a user", "account"),
    ("sso login", "account"),
    ("refund for crash", "bug"),
];

/// Answers from keywords; `broken` makes every "bug" answer wrong (a regression).
fn router(broken: Arc<AtomicBool>) -> impl Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static {
    move |request| {
        let prompt = request.body["messages"].to_string();
        let label = if prompt.contains("refund")
            || prompt.contains("invoice")
            || prompt.contains("charged")
        {
            "billing"
        } else if prompt.contains("crash") || prompt.contains("error") || prompt.contains("broken")
        {
            if broken.load(Ordering::SeqCst) {
                "account"
            } else {
                "bug"
            }
        } else {
            "account"
        };
        Reply::Json(200, openai_completion(label, 10, 1))
    }
}

/// Run the eval of `request` to the end, observed by no one.
async fn eval(engine: &Engine, request: &EvalRequest) -> Result<EvalSummary, EngineError> {
    engine
        .run_eval(request, &Quiet, std::future::pending())
        .await
}

fn request() -> EvalRequest {
    EvalRequest {
        workflow: "triage".into(),
        concurrency: 4,
        ..EvalRequest::default()
    }
}

#[tokio::test]
async fn an_eval_scores_stores_caches_and_compares_with_its_baseline() {
    let broken = Arc::new(AtomicBool::new(false));
    let server = FakeServer::start(router(broken.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &server.base_url(), &CASES);
    let engine = engine(dir.path()).await;

    // "refund for crash" is answered billing but expected bug: 9 of 10.
    let first = eval(&engine, &request()).await.unwrap();
    assert_eq!(first.cases, 10);
    let accuracy = &first.scores[0];
    assert_eq!(accuracy.scorer, "label_accuracy");
    assert!((accuracy.mean - 0.9).abs() < 1e-9);
    assert!(accuracy.ci_low < 0.9 && accuracy.ci_high > 0.9 && accuracy.ci_high <= 1.0);
    let labels = first.labels.as_ref().expect("label report");
    assert_eq!(labels.correct, 9);
    assert_eq!(first.worst[0].case_id, "c9");
    assert!(first.passed, "{:?}", first.gates);
    assert!((first.cost_usd - 10.0 * 11.0 / 1e6).abs() < 1e-12);
    assert_eq!(server.request_count(), 10);
    let stored = engine
        .records()
        .all_eval_cases(&first.eval_id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
    assert!(!stored[9].scores["label_accuracy"].passed);
    // Its runs say they are an eval's, so drift and outcomes leave them out; and they do.
    engine.flush().await;
    let run = engine
        .store()
        .get_run(&stored[0].run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.origin, shopfloor_store::RunOrigin::Eval);
    assert_eq!(run.batch_id.as_deref(), Some(first.eval_id.as_str()));
    let now = shopfloor_engine::now_ms();
    let window = shopfloor_store::RunWindow {
        workflow: "triage",
        version: &run.version,
        from_ms: now - 3_600_000,
        to_ms: now + 1_000,
    };
    let counts = engine.store().window_counts(&window).await.unwrap();
    assert_eq!(
        counts.runs(),
        0,
        "an eval of the live version is not traffic"
    );

    // Same version, temperature 0: every case comes from the cache.
    let cached = eval(&engine, &request()).await.unwrap();
    assert_eq!(cached.cached_cases, 10);
    assert_eq!(server.request_count(), 10, "no model call for cached cases");
    assert!((cached.scores[0].mean - 0.9).abs() < 1e-9);

    engine
        .store()
        .set_baseline("triage", &first.eval_id, 0)
        .await
        .unwrap();
    // A regression: the model now answers "account" for bugs (3 more wrong, 6 of 10).
    broken.store(true, Ordering::SeqCst);
    let mut no_cache = request();
    no_cache.no_cache = true;
    let worse = eval(&engine, &no_cache).await.unwrap();
    assert!((worse.scores[0].mean - 0.6).abs() < 1e-9);
    let baseline = worse.baseline.as_ref().expect("compared with the baseline");
    assert_eq!(baseline.baseline_id, first.eval_id);
    assert_eq!(baseline.paired_cases, 10);
    let delta = &baseline.scores[0];
    assert_eq!((delta.improved, delta.regressed), (0, 3));
    assert!((delta.delta + 0.3).abs() < 1e-9);
    assert_eq!(baseline.regressed_cases, vec!["c3", "c4", "c5"]);
    let failed: Vec<_> = worse
        .gates
        .iter()
        .filter(|g| !g.passed)
        .map(|g| (g.kind.as_str(), g.scorer.as_str()))
        .collect();
    assert_eq!(
        failed,
        vec![
            ("absolute", "label_accuracy"),
            ("regression", "label_accuracy")
        ]
    );
    assert!(!worse.passed);
    let listed = engine.store().list_evals(Some("triage"), 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].passed, Some(false));
    engine.close().await;
}

#[tokio::test]
async fn an_invalid_dataset_is_refused_unless_skipped() {
    let server = FakeServer::start(router(Arc::new(AtomicBool::new(false)))).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &server.base_url(), &CASES[..3]);
    let mut text = std::fs::read_to_string(dir.path().join("cases.jsonl")).unwrap();
    text.push_str("\n{\"input\": {\"subject\": 5}, \"expected\": \"bug\"}\nnot json\n");
    std::fs::write(dir.path().join("cases.jsonl"), text).unwrap();
    let engine = engine(dir.path()).await;

    let err = eval(&engine, &request()).await.unwrap_err();
    let EngineError::InvalidDataset(problems) = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("cases.jsonl:4: input"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("cases.jsonl:5: not valid JSON"),
        "{problems:?}"
    );
    assert_eq!(server.request_count(), 0);

    let mut skip = request();
    skip.skip_invalid = true;
    let summary = eval(&engine, &skip).await.unwrap();
    assert_eq!(summary.cases, 3);
    engine.close().await;
}

/// A text workflow on `fake` graded by the LLM judge `judge`.
fn judged() -> String {
    WorkflowToml::new(&["subject"], "Summarise: {{ subject }}").then(
        "[output]\ntext = { max_chars = 200 }\n[route]\nmodels = [\"fake\"]\n\
         [eval]\ndataset = \"cases.jsonl\"\nscorers = [\"llm_judge\"]\n\
         judge = { model = \"judge\", rubric = \"The summary is short and faithful.\", scale = \"five\" }\n",
    )
}

#[tokio::test]
async fn the_judge_grades_and_unparseable_verdicts_count_as_errors() {
    let worker = FakeServer::start(|r: &ReceivedRequest| {
        let prompt = r.body["messages"].to_string();
        let text = if prompt.contains("garbled") {
            "GARBLED"
        } else {
            "A short summary."
        };
        Reply::Json(200, openai_completion(text, 5, 3))
    })
    .await;
    let judge = FakeServer::start(|r: &ReceivedRequest| {
        let prompt = r.body["messages"].to_string();
        let verdict = if prompt.contains("GARBLED") {
            "I think it is fine".to_string() // not a verdict: must never count as a pass
        } else {
            "```json\n{\"score\": 5, \"pass\": true, \"reason\": \"faithful\"}\n```".to_string()
        };
        Reply::Json(200, openai_completion(&verdict, 50, 20))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_project(
        dir.path(),
        &worker.base_url(),
        &[
            ("a refund request", "A refund request."),
            ("garbled text", "Garbled."),
        ],
    );
    let judge_model = OpenAiModel::new("judge", &judge.base_url())
        .id("judge-1")
        .classes(&["internal"])
        .price(1.0, 1.0);
    testkit::append(&dir.path().join("shopfloor.toml"), &judge_model.to_string());
    std::fs::write(dir.path().join("workflows/triage.toml"), judged()).unwrap();
    let engine = engine(dir.path()).await;

    let summary = eval(&engine, &request()).await.unwrap();
    assert_eq!(summary.scores[0].scorer, "llm_judge");
    assert!(
        (summary.scores[0].mean - 0.5).abs() < 1e-9,
        "{:?}",
        summary.scores
    );
    assert_eq!(summary.judge_errors, 1);
    assert!((summary.judge_cost_usd - 2.0 * 70.0 / 1e6).abs() < 1e-12);
    let cases = engine
        .records()
        .all_eval_cases(&summary.eval_id)
        .await
        .unwrap();
    let garbled = cases.iter().find(|c| c.case_id == "c1").unwrap();
    assert!(!garbled.scores["llm_judge"].passed);
    assert!(garbled.scores["llm_judge"]
        .detail
        .as_deref()
        .unwrap()
        .starts_with("judge error"));
    // The judge saw the rubric, the input, the expected answer and the output.
    let asked = judge.requests()[0].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        asked.contains("The summary is short and faithful.")
            && asked.contains("EXPECTED")
            && asked.contains("OUTPUT"),
        "{asked}"
    );
    engine.close().await;
}

#[tokio::test]
async fn an_eval_recorded_once_replays_with_the_upstream_gone() {
    let server = FakeServer::start(router(Arc::new(AtomicBool::new(false)))).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &server.base_url(), &CASES);
    testkit::append(
        &dir.path().join("shopfloor.toml"),
        "[models.recorded]\nprovider = \"replay\"\nmodel = \"m\"\nfile = \"recording.jsonl\"\ndata_classes = [\"internal\"]\n",
    );
    let recording = Engine::open(EngineOptions {
        record_to: Some(dir.path().join("recording.jsonl")),
        ..common::options(dir.path())
    })
    .await
    .unwrap();
    let live = eval(&recording, &request()).await.unwrap();
    recording.close().await;
    drop(server);

    let engine = engine(dir.path()).await;
    let mut replay = request();
    replay.model_override = Some("recorded".into());
    let replayed = eval(&engine, &replay).await.unwrap();
    assert_eq!(
        replayed.cached_cases, 0,
        "another model override never reuses cached answers"
    );
    assert_eq!(replayed.failed, 0);
    assert_eq!(replayed.scores[0].mean, live.scores[0].mean);
    assert_eq!(
        replayed.cost_usd, 0.0,
        "replayed answers are priced by the replay model (free)"
    );
    engine.close().await;
}

#[tokio::test]
async fn a_csv_dataset_evaluates_like_jsonl() {
    let server = FakeServer::start(router(Arc::new(AtomicBool::new(false)))).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &server.base_url(), &CASES[..2]);
    std::fs::write(
        dir.path().join("cases.csv"),
        "id,subject,expected,tags\nr1,\"refund, please\",billing,easy\nr2,crash on save,bug,\nr3,sso login,bug,wrong-on-purpose\n",
    )
    .unwrap();
    let engine = engine(dir.path()).await;
    let mut csv = request();
    csv.dataset = Some("cases.csv".into());
    let summary = eval(&engine, &csv).await.unwrap();
    assert_eq!(summary.cases, 3);
    assert_eq!(summary.dataset, "cases.csv");
    assert!((summary.scores[0].mean - 2.0 / 3.0).abs() < 1e-9);
    let cases = engine
        .records()
        .all_eval_cases(&summary.eval_id)
        .await
        .unwrap();
    assert_eq!(cases[0].tags, vec!["easy"]);
    assert_eq!(cases[2].case_id, "r3");
    engine.close().await;
}
