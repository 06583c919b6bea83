//! What an adversarial user tries with the binary: held outputs read through `runs show`,
//! out-of-range flags and config values, broken input files, commands run outside a project
//! or from a folder inside one.

use std::path::Path;

use crate::common;
use common::{label_by_keywords, scaffold, shopfloor, text};

use serde_json::Value;
use shopfloor_testkit::{openai_completion, FakeServer, ReceivedRequest, Reply};

fn router(request: &ReceivedRequest) -> Reply {
    let prompt = request.body["messages"].to_string().to_lowercase();
    let label = label_by_keywords(&prompt, &[("billing", &["invoice", "refund"])]);
    Reply::Json(200, openai_completion(label, 10, 1))
}

fn set_in_workflow(dir: &Path, from: &str, to: &str) {
    let path = dir.join("workflows/ticket-triage.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// Run the (high-risk) example on a refund ticket: the id of the held run.
fn held_run(dir: &Path) -> String {
    let out = shopfloor(
        dir,
        &[
            "run",
            "ticket-triage",
            "--json",
            r#"{"subject": "Refund", "body": "Please refund my invoice"}"#,
        ],
    );
    let (stdout, stderr) = text(&out);
    let result: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}{stderr}"));
    assert_eq!(result["status"], "held", "{result}");
    result["run_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_does_not_hand_out_a_held_output() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    set_in_workflow(dir.path(), "risk = \"medium\"", "risk = \"high\"");
    let id = &held_run(dir.path());

    let (show, _) = text(&shopfloor(dir.path(), &["runs", "show", id]));
    assert!(show.contains("status    held"), "{show}");
    assert!(show.contains("held for review"), "{show}");
    // The prompt names every label, so look for where an answer would be printed.
    for shown in ["answer: ", "raw output", "parsed output"] {
        assert!(!show.contains(shown), "the held output is shown:\n{show}");
    }

    let (json, _) = text(&shopfloor(dir.path(), &["runs", "show", id, "--json"]));
    let record: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(record["output_withheld"], "held");
    assert_eq!(record["output"], Value::Null, "{json}");
    assert_eq!(record["raw_output"], Value::Null, "{json}");
    assert_eq!(record["attempts"][0]["raw_output"], Value::Null, "{json}");
    assert_eq!(record["attempts"][0]["prompt_tokens"], 10);
}

/// A rejected run is called rejected, not held, and its answer stays with reviewers; a corrected
/// one shows the correction, never the answer it overrode (issue 25 item 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_hands_out_only_what_review_released() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    set_in_workflow(dir.path(), "risk = \"medium\"", "risk = \"high\"");
    let (rejected, corrected) = (held_run(dir.path()), held_run(dir.path()));
    let decide = |args: &[&str]| {
        let out = shopfloor(dir.path(), args);
        assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    };
    decide(&["review", "reject", &rejected, "--reason", "unsafe"]);
    decide(&["review", "edit", &corrected, "--output", "other"]);

    let (show, _) = text(&shopfloor(dir.path(), &["runs", "show", &rejected]));
    assert!(show.contains("status    rejected"), "{show}");
    assert!(show.contains("rejected by review: not released"), "{show}");
    assert!(!show.contains("held for review"), "{show}");
    for shown in ["answer: ", "raw output", "parsed output", "\"billing\""] {
        assert!(
            !show.contains(shown),
            "the rejected answer is shown:\n{show}"
        );
    }
    let (json, _) = text(&shopfloor(
        dir.path(),
        &["runs", "show", &rejected, "--json"],
    ));
    let record: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(record["output_withheld"], "rejected");
    assert_eq!(record["output"], Value::Null, "{json}");
    assert_eq!(record["raw_output"], Value::Null, "{json}");
    assert_eq!(record["attempts"][0]["raw_output"], Value::Null, "{json}");

    let (show, _) = text(&shopfloor(dir.path(), &["runs", "show", &corrected]));
    assert!(show.contains("released as corrected by review"), "{show}");
    assert!(
        show.contains("\"other\""),
        "the correction is shown:\n{show}"
    );
    assert!(
        !show.contains("billing\""),
        "the overridden answer is shown:\n{show}"
    );
    let (json, _) = text(&shopfloor(
        dir.path(),
        &["runs", "show", &corrected, "--json"],
    ));
    let record: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(record["output_withheld"], "corrected");
    assert_eq!(record["output"], "other", "{json}");
    assert_eq!(record["raw_output"], Value::Null, "{json}");
}

#[test]
fn out_of_range_values_are_refused_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), "http://127.0.0.1:9/v1");
    let out = shopfloor(
        dir.path(),
        &[
            "run",
            "ticket-triage",
            "--input",
            "x.jsonl",
            "--concurrency",
            "0",
        ],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--concurrency") && stderr.contains("1..=1024"),
        "{stderr}"
    );

    set_in_workflow(dir.path(), "baseline = ", "baseline = 1e400 #");
    set_in_workflow(dir.path(), "max_tokens = 8", "max_tokens = 99999999999");
    let out = shopfloor(dir.path(), &["check"]);
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("outcome.baseline") && all.contains("expected a finite number"),
        "{all}"
    );
    assert!(
        all.contains("route.max_tokens")
            && all.contains("99999999999 is too large; expected at most 4294967295"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_file_with_a_bom_and_a_bad_line_runs_every_good_line() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    let mut input = b"\xEF\xBB\xBF".to_vec();
    input.extend_from_slice(br#"{"subject": "a", "body": "refund"}"#);
    input.extend_from_slice(b"\n{\"subject\": \"b\xFF\xFE\", \"body\": \"x\"}\n");
    input.extend_from_slice(br#"{"subject": "c", "body": "invoice"}"#);
    input.push(b'\n');
    std::fs::write(dir.path().join("in.jsonl"), input).unwrap();
    let out = shopfloor(dir.path(), &["run", "ticket-triage", "--input", "in.jsonl"]);
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("in.jsonl:2: skipped: not valid UTF-8"),
        "{all}"
    );
    assert!(
        !all.contains("in.jsonl:1:"),
        "line 1 (after its BOM) was refused: {all}"
    );
    assert_eq!(server.request_count(), 2, "{all}");
}

#[test]
fn input_paths_that_are_not_files_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), "http://127.0.0.1:9/v1");
    std::fs::create_dir(dir.path().join("inputs")).unwrap();
    for (path, expected) in [
        ("inputs", "is a folder"),
        ("/dev/zero", "is not a regular file"),
        ("missing.jsonl", "does not exist"),
    ] {
        let out = shopfloor(dir.path(), &["run", "ticket-triage", "--input", path]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{path}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_find_the_project_above_and_make_no_store_outside_one() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    scaffold(&project, &server.base_url());
    let nested = project.join("workflows");
    let out = shopfloor(
        &nested,
        &[
            "run",
            "ticket-triage",
            "--json",
            r#"{"subject": "Refund", "body": "refund"}"#,
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let (list, _) = text(&shopfloor(&nested, &["runs", "list"]));
    assert!(list.contains("ticket-triage"), "{list}");
    assert!(!nested.join(".shopfloor").exists());

    let outside = dir.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    let out = shopfloor(&outside, &["runs", "list"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("shopfloor.toml not found"), "{stderr}");
    assert!(
        !outside.join(".shopfloor").exists(),
        "a store was made outside a project"
    );
}

#[test]
fn serve_accepts_a_host_name_to_listen_on() {
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), "http://127.0.0.1:9/v1");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .arg("-C")
        .arg(dir.path())
        .args(["serve", "--listen", "localhost:0", "--no-worker"])
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on http://"), "{line:?}");

    let out = shopfloor(dir.path(), &["serve", "--listen", "localhost"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no port"), "{stderr}");
}

#[test]
fn a_workflow_file_that_is_not_text_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopfloor(dir.path(), &["init"]);
    assert!(out.status.success(), "{:?}", text(&out));
    // Two lines of TOML, then bytes of a binary file.
    let path = dir.path().join("workflows/ticket-triage.toml");
    let mut bytes = b"description = \"x\"\nowner = \"y\"\nrisk = \x00\xff\xfe\x01\n".to_vec();
    bytes.extend([0x89, b'P', b'N', b'G']);
    std::fs::write(&path, bytes).unwrap();
    std::fs::write(dir.path().join("shopfloor.toml"), b"\xc3\x28").unwrap();
    let out = shopfloor(dir.path(), &["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "error: workflows/ticket-triage.toml:3: not UTF-8 text (byte 9 of the line is 0xff)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: shopfloor.toml:1: not UTF-8 text (byte 1 of the line is 0xc3)"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
