//! In-context examples (`[prompt] examples`, issue 29) through the engine against a real HTTP
//! upstream and a real SQLite file: what reaches the model, the version, leave-one-out in
//! evals, and `similar` with the real embedded MiniLM choosing the nearest cases.

use crate::common;
use common::engine;

use std::path::Path;

use serde_json::json;
use shopfloor_engine::{EvalObserver, EvalRequest, ExamplesSetting};
use shopfloor_store::EvalCaseRecord;
use shopfloor_testkit::{
    self as testkit, openai_completion, FakeServer, OpenAiModel, ReceivedRequest, Reply,
    WorkflowToml,
};

const CASES: [(&str, &str); 9] = [
    ("I was charged twice for my subscription", "billing"),
    ("The app crashes when I save a file", "bug"),
    ("How do I reset my password", "account"),
    ("My invoice shows the wrong amount", "billing"),
    ("Error 500 on the dashboard page", "bug"),
    ("I cannot log in to my account", "account"),
    ("Please refund my last payment", "billing"),
    ("The export button does nothing", "bug"),
    ("Add a new user to our team", "account"),
];

fn project(dir: &Path, base_url: &str, examples: &str) {
    let fake = OpenAiModel::new("fake", base_url).classes(&["internal"]);
    let workflow = WorkflowToml::new(&["text"], "Ticket: {{ text }}").then(&format!(
        "{examples}\n[output]\nlabels = [\"billing\", \"bug\", \"account\"]\n[route]\nmodels = [\"fake\"]\n\
         [eval]\ndataset = \"datasets/cases.jsonl\"\nscorers = [\"label_accuracy\"]\n"
    ));
    testkit::write_project(dir, &fake.to_string(), &[("triage", &workflow)]);
    std::fs::create_dir_all(dir.join("datasets")).unwrap();
    let lines: Vec<String> = CASES
        .iter()
        .enumerate()
        .map(|(i, (text, label))| {
            json!({"id": format!("c{i}"), "input": {"text": text}, "expected": label}).to_string()
        })
        .collect();
    std::fs::write(dir.join("datasets/cases.jsonl"), lines.join("\n") + "\n").unwrap();
}

fn billing(_: &ReceivedRequest) -> Reply {
    Reply::Json(200, openai_completion("billing", 10, 1))
}

/// The (role, content) pairs an upstream request carried.
fn turns(request: &ReceivedRequest) -> Vec<(String, String)> {
    request.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn run(engine: &shopfloor_engine::Engine, text: &str) -> shopfloor_store::RunRecord {
    engine
        .run_workflow("triage", json!({"text": text}), None, None, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn fixed_and_balanced_examples_are_turns_before_the_input_and_part_of_the_version() {
    let upstream = FakeServer::start(billing).await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &upstream.base_url(), "");
    let plain = engine(dir.path()).await;
    let plain_version = plain.project.workflow("triage").unwrap().version.clone();
    drop(plain);

    project(
        dir.path(),
        &upstream.base_url(),
        "examples = { from = \"datasets/cases.jsonl\", k = 2, select = \"fixed\" }",
    );
    let fixed = engine(dir.path()).await;
    let fixed_version = fixed.project.workflow("triage").unwrap().version.clone();
    assert_ne!(fixed_version, plain_version, "examples change the version");
    let record = run(&fixed, "Where is my receipt?").await;
    let sent = upstream.requests();
    assert_eq!(
        turns(sent.last().unwrap()),
        [
            ("user".to_string(), format!("Ticket: {}", CASES[0].0)),
            ("assistant".to_string(), "billing".to_string()),
            ("user".to_string(), format!("Ticket: {}", CASES[1].0)),
            ("assistant".to_string(), "bug".to_string()),
            (
                "user".to_string(),
                "Ticket: Where is my receipt?".to_string()
            ),
        ]
    );
    assert_eq!(record.prompt["examples"], json!(["c0", "c1"]));
    drop(fixed);

    // A correction added to the file is an example from the next load on, in a new version.
    let mut text = std::fs::read_to_string(dir.path().join("datasets/cases.jsonl")).unwrap();
    text = format!(
        "{}\n{}\n{text}",
        json!({"id": "r0", "input": {"text": "Rejected, its answer still to write"}, "expected": null}),
        json!({"id": "r1", "input": {"text": "Corrected by a reviewer"}, "expected": "account"})
    );
    std::fs::write(dir.path().join("datasets/cases.jsonl"), text).unwrap();
    let again = engine(dir.path()).await;
    assert_ne!(
        again.project.workflow("triage").unwrap().version,
        fixed_version
    );
    let record = run(&again, "Where is my receipt?").await;
    assert_eq!(
        record.prompt["examples"],
        json!(["r1", "c0"]),
        "a case without its answer is no example"
    );
    drop(again);

    project(
        dir.path(),
        &upstream.base_url(),
        "examples = { from = \"datasets/cases.jsonl\", k = 1, select = \"balanced\" }",
    );
    let balanced = engine(dir.path()).await;
    let record = run(&balanced, "Where is my receipt?").await;
    assert_eq!(
        record.prompt["examples"],
        json!(["c0", "c1", "c2"]),
        "one of each label, in the order the labels first appear"
    );
}

struct Quiet;
impl EvalObserver for Quiet {
    fn started(&self, _: &str, _: u64, _: u64) {}
    fn finished(&self, _: &EvalCaseRecord) {}
}

/// The nearest cases by the real MiniLM are the ones shown, the nearest last; in an eval over
/// the examples' own file, no case is ever shown itself.
#[tokio::test]
async fn similar_examples_are_the_nearest_and_an_eval_never_shows_a_case_itself() {
    let upstream = FakeServer::start(billing).await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &upstream.base_url(),
        "examples = { from = \"datasets/cases.jsonl\", k = 3 }",
    );
    let engine = engine(dir.path()).await;
    // Encoded once, up front, with progress (what `shopfloor eval` draws as a bar).
    let set = engine
        .examples_for_eval(&EvalRequest {
            workflow: "triage".into(),
            ..EvalRequest::default()
        })
        .unwrap()
        .expect("the workflow's examples");
    assert!(set.needs_encoding());
    let reports = std::sync::Mutex::new(Vec::new());
    set.encode_with(&|done, total| reports.lock().unwrap().push((done, total)))
        .unwrap();
    assert_eq!(reports.into_inner().unwrap().last(), Some(&(9, 9)));
    assert!(!set.needs_encoding());
    let record = run(&engine, "I forgot my password and cannot sign in").await;
    let ids: Vec<String> = serde_json::from_value(record.prompt["examples"].clone()).unwrap();
    assert_eq!(ids.len(), 3, "{ids:?}");
    // The two account cases about signing in are the nearest two, and the nearest comes last,
    // next to the input: the order `datasets similar` ranks them in, reversed.
    let mut nearest = ids[1..].to_vec();
    nearest.sort();
    assert_eq!(nearest, ["c2", "c5"], "{ids:?}");
    let (_, ranked) = engine
        .similar_cases(
            "triage",
            json!({"text": "I forgot my password and cannot sign in"}),
            3,
        )
        .await
        .unwrap();
    let ranked: Vec<&str> = ranked.iter().rev().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ranked, "nearest last");
    // The vectors are kept beside the store for the next load.
    let kept: Vec<_> = std::fs::read_dir(dir.path().join(".shopfloor/examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with("-minilm.vectors"), "{kept:?}");

    let before = upstream.request_count();
    let summary = engine
        .run_eval(
            &EvalRequest {
                workflow: "triage".into(),
                concurrency: 2,
                ..EvalRequest::default()
            },
            &Quiet,
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_eq!(summary.cases, CASES.len() as u64);
    let sent = upstream.requests();
    assert_eq!(sent.len() - before, CASES.len());
    for request in &sent[before..] {
        let turns = turns(request);
        let (input, shown) = turns.split_last().unwrap();
        assert_eq!(shown.len(), 6, "three examples each: {turns:?}");
        assert!(
            shown.iter().all(|(_, content)| content != &input.1),
            "a case was shown itself: {turns:?}"
        );
    }
}

/// (Balanced examples on a workflow without labels: `core`'s `balanced_examples_need_labels`.)
#[tokio::test]
async fn an_examples_file_that_is_missing_or_badly_set_is_a_project_error() {
    let upstream = FakeServer::start(billing).await;
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        &upstream.base_url(),
        "examples = { from = \"datasets/none.jsonl\", k = 40, select = \"closest\" }",
    );
    let Err(shopfloor_engine::EngineError::InvalidProject(problems)) =
        shopfloor_engine::Engine::open(common::options(dir.path())).await
    else {
        panic!("the project opened, or failed otherwise");
    };
    let error: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let error = error.join("\n");
    for expected in [
        "prompt.examples.from",
        "datasets/none.jsonl\" does not exist",
        "prompt.examples.k",
        "prompt.examples.select",
    ] {
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

/// An upstream that answers right only when it is shown examples (the label of the ticket's
/// keywords), else always "billing".
fn helped(request: &ReceivedRequest) -> Reply {
    let messages = request.body["messages"].as_array().unwrap();
    let users = messages.iter().filter(|m| m["role"] == "user").count();
    let last = messages.last().unwrap()["content"].as_str().unwrap();
    let label = if users == 1 {
        "billing"
    } else if ["crash", "Error", "button"]
        .iter()
        .any(|k| last.contains(k))
    {
        "bug"
    } else if ["password", "log in", "user"]
        .iter()
        .any(|k| last.contains(k))
    {
        "account"
    } else {
        "billing"
    };
    Reply::Json(200, openai_completion(label, 10, 1))
}

/// `--compare-examples` in the engine: the same workflow evaluated without examples and with
/// the k most similar of its own eval dataset (it configures none), each its own version, the
/// second paired with the first: the lift and its interval.
#[tokio::test]
async fn an_eval_with_other_examples_is_another_version_compared_with_the_first() {
    let upstream = FakeServer::start(helped).await;
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), &upstream.base_url(), "");
    let engine = engine(dir.path()).await;
    let request = |examples, compare_with| EvalRequest {
        workflow: "triage".into(),
        concurrency: 2,
        examples,
        compare_with,
        ..EvalRequest::default()
    };
    let none = engine
        .run_eval(
            &request(ExamplesSetting::Without, None),
            &Quiet,
            std::future::pending(),
        )
        .await
        .unwrap();
    let similar = engine
        .run_eval(
            &request(ExamplesSetting::Similar(2), Some(none.eval_id.clone())),
            &Quiet,
            std::future::pending(),
        )
        .await
        .unwrap();
    assert_ne!(similar.version, none.version);
    assert_eq!(
        none.version,
        engine.project.workflow("triage").unwrap().version,
        "without examples is the workflow as it is"
    );
    assert_eq!(none.scores[0].mean, 3.0 / 9.0);
    assert_eq!(similar.scores[0].mean, 1.0);
    // The report says how many examples each case got: 2 of the 8 others, never its own;
    // none for the eval without examples.
    assert_eq!(none.examples, None);
    let shown = similar.examples.expect("counted");
    assert_eq!(
        (shown.cases, shown.min, shown.max, shown.total),
        (9, 2, 2, 18)
    );
    let compared = similar
        .baseline
        .expect("compared with the eval without examples");
    assert_eq!(compared.baseline_id, none.eval_id);
    assert_eq!(compared.paired_cases, 9);
    let lift = &compared.scores[0];
    assert!((lift.delta - 6.0 / 9.0).abs() < 1e-9, "{lift:?}");
    assert!(
        lift.delta_low > 0.0 && lift.delta_low <= lift.delta && lift.delta <= lift.delta_high,
        "{lift:?}"
    );
    // An eval id that does not exist is refused before anything runs: without the cache, a
    // run would call the upstream for every case.
    let before = upstream.request_count();
    let unknown = engine
        .run_eval(
            &EvalRequest {
                no_cache: true,
                ..request(ExamplesSetting::Without, Some("no-such-eval".into()))
            },
            &Quiet,
            std::future::pending(),
        )
        .await;
    assert!(matches!(
        unknown,
        Err(shopfloor_engine::EngineError::UnknownEval(_))
    ));
    assert_eq!(upstream.request_count(), before);
}

/// A template that reads `examples` places them itself: one user message, no turns.
#[tokio::test]
async fn a_template_that_reads_examples_places_them_itself() {
    let upstream = FakeServer::start(billing).await;
    let dir = tempfile::tempdir().unwrap();
    let fake = OpenAiModel::new("fake", &upstream.base_url()).classes(&["internal"]);
    let workflow = WorkflowToml::new(
        &["text"],
        "{% for e in examples %}Example: {{ e.input.text }} => {{ e.answer }}\n{% endfor %}Now: {{ text }}",
    )
    .then(
        "examples = { from = \"datasets/cases.jsonl\", k = 2, select = \"fixed\" }\n\
         [output]\nlabels = [\"billing\", \"bug\", \"account\"]\n[route]\nmodels = [\"fake\"]\n",
    );
    testkit::write_project(dir.path(), &fake.to_string(), &[("triage", &workflow)]);
    std::fs::create_dir_all(dir.path().join("datasets")).unwrap();
    let lines: Vec<String> = CASES[..3]
        .iter()
        .enumerate()
        .map(|(i, (text, label))| {
            json!({"id": format!("c{i}"), "input": {"text": text}, "expected": label}).to_string()
        })
        .collect();
    std::fs::write(dir.path().join("datasets/cases.jsonl"), lines.join("\n")).unwrap();
    let engine = engine(dir.path()).await;
    let record = run(&engine, "Where is my receipt?").await;
    assert_eq!(record.prompt["examples"], json!(["c0", "c1"]));
    let sent = turns(upstream.requests().last().unwrap());
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].1,
        format!(
            "Example: {} => billing\nExample: {} => bug\nNow: Where is my receipt?",
            CASES[0].0, CASES[1].0
        )
    );
}
