//! The `shopfloor` binary end to end: a scaffolded project, a real OpenAI-compatible server on
//! 127.0.0.1, a real SQLite file (and PostgreSQL where named), real processes.

use std::path::Path;
use std::process::Command;

use crate::common;
use common::{label_by_keywords, open_store, scaffold, shopfloor, text};
use std::time::Duration;

use serde_json::{json, Value};
use shopfloor_testkit::{assert_contains, openai_completion, FakeServer, ReceivedRequest, Reply};

/// Answers like a decent ticket router: a keyword lookup on the rendered prompt.
fn router(request: &ReceivedRequest) -> Reply {
    let prompt = request.body["messages"].to_string().to_lowercase();
    let label = label_by_keywords(
        &prompt,
        &[
            ("billing", &["invoice", "charge", "refund"]),
            ("Bug.", &["error", "crash"]),
            ("account", &["password", "login"]),
        ],
    );
    Reply::Json(200, openai_completion(label, 120, 2))
}

fn write_inputs(path: &Path, n: usize, bad_lines: &[usize]) {
    let mut lines = Vec::new();
    for i in 1..=n {
        if bad_lines.contains(&i) {
            lines.push(json!({"subject": "missing body"}).to_string());
        } else {
            let body = [
                "I was charged twice on my invoice",
                "The app shows an error and crashes",
                "I forgot my password",
                "Do you have a mobile app?",
            ][i % 4];
            lines.push(json!({"subject": format!("ticket {i}"), "body": body}).to_string());
        }
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `shopfloor run ticket-triage --input cases.jsonl` in `dir` as a child process, its output
/// piped.
fn spawn_batch(dir: &Path, concurrency: usize) -> std::process::Child {
    spawn_batch_with(dir, concurrency, &[])
}

/// [`spawn_batch`] with more arguments.
fn spawn_batch_with(dir: &Path, concurrency: usize, extra: &[&str]) -> std::process::Child {
    let concurrency = concurrency.to_string();
    Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .arg("-C")
        .arg(dir)
        .args(["run", "ticket-triage", "--input", "cases.jsonl"])
        .args(["--concurrency", &concurrency])
        .args(extra)
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Up to 1000 runs, newest first.
async fn all_runs(store: &dyn shopfloor_store::Store) -> Vec<shopfloor_store::RunSummary> {
    let filter = shopfloor_store::RunFilter {
        limit: Some(1000),
        ..Default::default()
    };
    store.list_runs(&filter).await.unwrap()
}

#[test]
fn init_scaffolds_a_project_that_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopfloor(dir.path(), &["init"]);
    assert!(out.status.success());
    let dataset = std::fs::read_to_string(dir.path().join("datasets/ticket-triage.jsonl")).unwrap();
    let cases: Vec<Value> = dataset
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(cases.len() >= 40);
    for label in ["billing", "bug", "account", "other"] {
        assert!(
            cases.iter().any(|c| c["expected"] == label),
            "no {label} case"
        );
    }
    let out = shopfloor(dir.path(), &["check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ticket-triage"), "{stdout}");
    // A second init refuses to overwrite.
    let again = shopfloor(dir.path(), &["init"]);
    assert!(!again.status.success());
    assert!(text(&again).1.contains("already has shopfloor.toml"));
}

#[test]
fn check_reports_every_problem_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shopfloor(dir.path(), &["init"]).status.success());
    let workflow = dir.path().join("workflows/ticket-triage.toml");
    let broken = std::fs::read_to_string(&workflow)
        .unwrap()
        .replace("risk = \"medium\"", "risk = \"medium\"\ncolour = \"red\"")
        .replace("models = [\"local\"]", "models = [\"gpt-4\"]")
        .replace("{{ body }}", "{{ body }} {{ customer }}")
        .replace("datasets/ticket-triage.jsonl", "datasets/nope.jsonl");
    std::fs::write(&workflow, broken).unwrap();
    let out = shopfloor(dir.path(), &["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "workflows/ticket-triage.toml:6: colour: unknown key",
        "route.models: unknown model \"gpt-4\"",
        "prompt.user: uses variable \"customer\"",
        "eval.dataset: file \"datasets/nope.jsonl\" does not exist",
        "4 problem(s) found",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn no_project_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopfloor(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("shopfloor.toml not found (create one with `shopfloor init`)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_one_input_then_list_and_show_it() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());

    let out = shopfloor(
        dir.path(),
        &[
            "run",
            "ticket-triage",
            "--json",
            r#"{"subject": "Refund", "body": "Please refund my invoice"}"#,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["status"], "ok");
    assert_eq!(result["output"], "billing");
    assert_eq!(result["model"], "fake");
    let id = result["run_id"].as_str().unwrap();

    let (list, _) = text(&shopfloor(
        dir.path(),
        &["runs", "list", "--workflow", "ticket-triage"],
    ));
    assert!(list.contains(id), "{list}");
    let (show, _) = text(&shopfloor(dir.path(), &["runs", "show", id]));
    for expected in [
        "status    ok",
        "Please refund my invoice",
        "#1 fake (openai-compatible) ok",
        "parsed output\n  \"billing\"",
    ] {
        assert!(show.contains(expected), "missing {expected:?} in:\n{show}");
    }
    let (json_show, _) = text(&shopfloor(dir.path(), &["runs", "show", id, "--json"]));
    let record: Value = serde_json::from_str(&json_show).unwrap();
    assert_eq!(record["attempts"][0]["prompt_tokens"], 120);

    // Input that breaks the schema: exit 2, nothing sent.
    let before = server.request_count();
    let out = shopfloor(
        dir.path(),
        &["run", "ticket-triage", "--json", r#"{"subject": "x"}"#],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("\"body\" is a required property"),
        "{:?}",
        text(&out)
    );
    assert_eq!(server.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reports_bad_lines_and_writes_results() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    let inputs = dir.path().join("cases.jsonl");
    write_inputs(&inputs, 12, &[3, 7]);
    let results = dir.path().join("results.jsonl");

    let out = shopfloor(
        dir.path(),
        &[
            "run",
            "ticket-triage",
            "--input",
            "cases.jsonl",
            "--concurrency",
            "3",
            "--out",
            results.to_str().unwrap(),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_contains(
        &stderr,
        &["cases.jsonl:3: skipped", "cases.jsonl:7: skipped"],
    );
    assert_contains(
        &stdout,
        &[
            "ran 10: ok 10 · invalid output 0 · failed 0",
            "latency p50",
            "tokens 1200 in / 20 out",
        ],
    );
    assert_eq!(server.request_count(), 10);
    let lines: Vec<Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10);
    assert!(lines.iter().all(|l| l["status"] == "ok"));
}

/// Start a batch against a slow server, `kill -9` the process mid-batch, resume it: every case
/// ends up recorded exactly once, and cases recorded before the kill are not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_mid_way_resumes_without_running_recorded_cases_again() {
    let server = FakeServer::start(|r| router(r).delayed(Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    let cases = 60;
    write_inputs(&dir.path().join("cases.jsonl"), cases, &[]);

    let mut child = spawn_batch_with(dir.path(), 2, &["--out", "results.jsonl"]);
    let store = open_store(dir.path()).await;
    let batch_id = loop {
        let runs = all_runs(store.as_ref()).await;
        if runs.len() >= 10 {
            break runs[0].batch_id.clone().expect("batch run");
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the batch ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // SIGKILL: no chance to flush anything.
    child.kill().unwrap();
    child.wait().unwrap();
    let recorded_before = store.batch_recorded_cases(&batch_id).await.unwrap();
    assert!(
        recorded_before.len() < cases,
        "the kill came too late to test anything"
    );
    let requests_before = server.request_count();

    let out = shopfloor(
        dir.path(),
        &[
            "run",
            "ticket-triage",
            "--input",
            "cases.jsonl",
            "--resume",
            &batch_id,
            "--out",
            "results.jsonl",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // `--out` is rewritten from the store: one line per case, whatever the killed run wrote.
    let lines: Vec<Value> = std::fs::read_to_string(dir.path().join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cases_out: Vec<u64> = lines.iter().map(|l| l["case"].as_u64().unwrap()).collect();
    assert_eq!(
        cases_out,
        (1..=cases as u64).collect::<Vec<_>>(),
        "one line per case"
    );
    assert!(
        stderr.contains(&format!(
            "{} case(s) already recorded",
            recorded_before.len()
        )),
        "{stderr}"
    );

    let recorded = store.batch_recorded_cases(&batch_id).await.unwrap();
    assert_eq!(
        recorded,
        (1..=cases as u64).collect::<Vec<_>>(),
        "every case recorded exactly once"
    );
    let runs = store
        .list_runs(&shopfloor_store::RunFilter {
            batch_id: Some(batch_id.clone()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), cases, "no case recorded twice");
    // The resumed process sent exactly one request per case that was not yet recorded.
    assert_eq!(
        server.request_count() - requests_before,
        cases - recorded_before.len()
    );
    let batch = store.get_batch(&batch_id).await.unwrap().unwrap();
    assert_eq!(batch.status, shopfloor_store::BatchStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_recorded_into_postgres_with_database_url() {
    let database = shopfloor_store::testing::TestPostgres::create().await;
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    write_inputs(&dir.path().join("cases.jsonl"), 5, &[]);
    let out = shopfloor(
        dir.path(),
        &[
            "--database-url",
            database.url(),
            "run",
            "ticket-triage",
            "--input",
            "cases.jsonl",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let (list, _) = text(&shopfloor(
        dir.path(),
        &["--database-url", database.url(), "runs", "list"],
    ));
    assert_eq!(
        list.lines().filter(|l| l.contains("ticket-triage")).count(),
        5,
        "{list}"
    );
    assert!(
        !dir.path().join(".shopfloor/shopfloor.db").exists(),
        "nothing written to SQLite"
    );
}

/// Ctrl-C mid-batch: the cases in flight finish, everything finished is recorded, the batch is
/// reported as interrupted (exit 130) and stays resumable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_records_everything_that_finished() {
    let server = FakeServer::start(|r| router(r).delayed(Duration::from_millis(30))).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    write_inputs(&dir.path().join("cases.jsonl"), 200, &[]);
    let child = spawn_batch(dir.path(), 4);
    while server.request_count() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(stdout.contains("interrupted: finish with"), "{stdout}");
    let ran: usize = stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("ran ")
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
        })
        .expect("summary line");
    assert!(ran < 200, "stopped early: {stdout}");
    let store = open_store(dir.path()).await;
    let runs = all_runs(store.as_ref()).await;
    assert_eq!(runs.len(), ran, "every finished case is recorded");
    assert_eq!(
        server.request_count(),
        ran,
        "nothing was sent that was not recorded"
    );
}

/// Two `--resume` of one batch at once: the second is refused, naming who runs it, and no
/// case is paid for twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_being_run_cannot_be_resumed_twice() {
    let server = FakeServer::start(|r| router(r).delayed(Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    let cases = 40;
    write_inputs(&dir.path().join("cases.jsonl"), cases, &[]);
    let mut child = spawn_batch(dir.path(), 1);
    let store = open_store(dir.path()).await;
    let batch_id = loop {
        let runs = all_runs(store.as_ref()).await;
        if runs.len() >= 3 {
            break runs[0].batch_id.clone().expect("batch run");
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the batch ended too soon"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let resume = [
        "run",
        "ticket-triage",
        "--input",
        "cases.jsonl",
        "--resume",
        &batch_id,
    ];
    let out = shopfloor(dir.path(), &resume);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_contains(
        &stderr,
        &[
            &format!("batch {batch_id} is being run by "),
            &format!(":{}", child.id()),
        ],
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(
        server.request_count(),
        cases,
        "every case was paid for once"
    );
    // Once the first run is done, resuming is allowed (and has nothing left to run).
    let out = shopfloor(dir.path(), &resume);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(server.request_count(), cases);
}

/// The quickstart on the real embedded model: it evaluates the example, makes its sample runs,
/// and leaves an `account` answer held in the review queue, so the dashboard it points at has
/// an eval, runs and an item to review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_leaves_an_eval_runs_and_a_held_item_on_the_embedded_model() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .args(["quickstart", project.to_str().unwrap(), "--limit", "4"])
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .output()
        .expect("run shopfloor");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_contains(
        &stdout,
        &[
            "3 sample run(s) it just made, one of them held for review",
            "dashboard link",
        ],
    );

    let store = open_store(&project).await;
    let runs = store
        .list_runs(&shopfloor_store::RunFilter {
            workflow: Some("ticket-triage".into()),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 4 + 3, "4 eval cases and 3 sample runs");
    // Sampled items (a tenth of the released ones, by chance) may wait beside it.
    let held: Vec<_> = store
        .list_reviews(&shopfloor_store::ReviewFilter {
            status: Some(shopfloor_core::review::ReviewStatus::Pending),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.reason == shopfloor_core::review::ReviewReason::HeldLabel)
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].output, Some(json!("account")));
}

/// `datasets similar` finds the example's sign-in tickets nearest to a sign-in question, with
/// the real MiniLM, and says what is wrong with an input that does not fit.
#[test]
fn datasets_similar_lists_the_nearest_cases() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shopfloor(dir.path(), &["init"]).status.success());
    let input = r#"{"subject": "Cannot sign in", "body": "I reset my password but the login page still says invalid credentials"}"#;
    let out = shopfloor(
        dir.path(),
        &[
            "datasets",
            "similar",
            "ticket-triage",
            "--json",
            input,
            "--k",
            "3",
            "--as-json",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let found: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(found["file"], "datasets/ticket-triage.jsonl");
    let cases = found["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    assert!(cases.iter().all(|c| c["answer"] == "account"), "{found}");
    let scores: Vec<f64> = cases
        .iter()
        .map(|c| c["similarity"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "nearest first: {scores:?}"
    );

    let out = shopfloor(
        dir.path(),
        &[
            "datasets",
            "similar",
            "ticket-triage",
            "--json",
            r#"{"subject": 3}"#,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("\"body\" is a required property"),
        "{:?}",
        text(&out)
    );
}

/// `experiment simulate` prints the sequential statistics' own A/A false-positive rate, at
/// most α however many looks, beside a plain test peeked at as often (issue 28).
#[test]
fn experiment_simulate_shows_the_stopping_rule_is_honest() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopfloor(
        dir.path(),
        &[
            "experiment",
            "simulate",
            "--experiments",
            "400",
            "--runs",
            "2000",
            "--looks",
            "30",
            "--json",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let figures: Value = serde_json::from_str(&stdout).unwrap();
    let sequential = figures["aa_false_positive_rate"].as_f64().unwrap();
    let peeked = figures["aa_false_positive_rate_plain_test_peeked"]
        .as_f64()
        .unwrap();
    assert!(sequential <= 0.05, "{figures}");
    assert!(peeked > 0.10, "{figures}");
    let power = figures["power"].as_array().unwrap();
    assert_eq!(power.len(), 3);
    assert!(power[2]["power"].as_f64().unwrap() > 0.95, "{figures}");
    let bad = shopfloor(
        dir.path(),
        &["experiment", "simulate", "--base", "0.99", "--lift", "0.05"],
    );
    assert!(!bad.status.success());
    assert!(text(&bad).1.contains("--base"), "{:?}", text(&bad));
}

/// `runs show` names the examples a run was given, by case id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_names_the_examples_a_run_was_given() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    let workflow = dir.path().join("workflows/ticket-triage.toml");
    let text_of = std::fs::read_to_string(&workflow).unwrap().replace(
        "\n[output]",
        "examples = { from = \"datasets/ticket-triage.jsonl\", k = 2, select = \"fixed\" }\n\n[output]",
    );
    std::fs::write(&workflow, text_of).unwrap();
    let out = shopfloor(
        dir.path(),
        &[
            "run",
            "ticket-triage",
            "--json",
            r#"{"subject": "Refund", "body": "Please refund"}"#,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    let id = result["run_id"].as_str().unwrap();
    let (show, _) = text(&shopfloor(dir.path(), &["runs", "show", id]));
    assert!(show.contains("examples  t001, t002"), "{show}");
}

#[test]
fn retention_says_what_it_did_and_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shopfloor(dir.path(), &["init"]).status.success());
    let out = shopfloor(dir.path(), &["retention"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_contains(
        &stdout,
        &["shopfloor.toml has no [retention]: nothing to do"],
    );
    let config = dir.path().join("shopfloor.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[retention]\nruns_days = 400\nkeep_text_days = 90\n");
    std::fs::write(&config, toml).unwrap();
    let out = shopfloor(dir.path(), &["retention"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_contains(&stdout, &["deleted 0 runs older than 400 days"]);
    assert_contains(
        &stdout,
        &["stripped the texts of 0 runs older than 90 days"],
    );
    let out = shopfloor(dir.path(), &["retention", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report, json!({"deleted": 0, "stripped": 0, "more": false}));
    let help = text(&shopfloor(dir.path(), &["retention", "--help"])).0;
    assert_contains(&help, &["runs_days = 400"]);
    assert_contains(&help, &["retention.apply"]);
}
