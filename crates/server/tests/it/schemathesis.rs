//! schemathesis against `/openapi.json` (issue 26 item 8): requests generated from the
//! document's schemas, valid and not, on every route, with a key that may do everything, and
//! not one answered with a server error. The server's models answer from a fake upstream in
//! each wire form, so generated requests that are valid reach a model and come back.
//!
//! Runs for `SHOPFLOOR_SCHEMATHESIS_SECONDS` (default 30; `.ci/run` gives it 120). Fails,
//! saying how to install it, when schemathesis is missing.

use crate::common;

use common::*;
use shopfloor_testkit::{FakeServer, ReceivedRequest, Reply};

fn upstream(request: &ReceivedRequest) -> Reply {
    if request.path.ends_with("/messages") || request.path.ends_with("/count_tokens") {
        hello(request)
    } else {
        answer(request)
    }
}

/// Run schemathesis's command line through the Python that has it (its script need not be on
/// `PATH`: pip may put it where the shell does not look), in `dir` (it keeps a cache of what
/// it found in the folder it runs in).
fn schemathesis(dir: &std::path::Path, args: &[String]) -> std::process::Output {
    std::process::Command::new("python3")
        .current_dir(dir)
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; \
             sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
        ])
        .args(args)
        .output()
        .expect("run python3")
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_on_any_route() {
    let scratch = tempfile::tempdir().unwrap();
    let probe = schemathesis(scratch.path(), &["--version".to_string()]);
    if !probe.status.success() {
        panic!(
            "schemathesis is not installed (`schemathesis --version` fails); \
             `python3 -m pip install schemathesis` and run this test again: {probe:?}"
        );
    }
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &fake.base_url(), &fake.base_url());
    shopfloor_testkit::append(
        &dir.path().join("shopfloor.toml"),
        &format!(
            "{}\n[models.embed]\nprovider = \"openai-compatible\"\nkind = \"embedding\"\nmodel = \"fake-embed\"\nbase_url = \"{}\"\ndata_classes = [\"public\", \"internal\"]\n",
            claude_model(&fake.base_url()),
            fake.base_url()
        ),
    );
    let server = TestServer::start(dir.path(), test_config()).await;
    // The public document names no model or workflow; a key that may call models gets them.
    let (_, public) = get(&client(), &server.url("/openapi.json"), None).await;
    let model = "/v1/chat/completions";
    let chat_model = |doc: &serde_json::Value| {
        doc["paths"][model]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["properties"]["model"]
            .clone()
    };
    assert!(
        chat_model(&public).get("enum").is_none(),
        "{}",
        chat_model(&public)
    );
    let (_, named) = get(
        &client(),
        &server.url("/openapi.json"),
        Some(&server.keys.operator),
    )
    .await;
    let names = chat_model(&named)["enum"].to_string();
    assert!(
        names.contains("\"fast\"") && names.contains("workflow:triage") && !names.contains("embed"),
        "{names}"
    );
    let seconds: u64 = std::env::var("SHOPFLOOR_SCHEMATHESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let report = dir.path().join("schemathesis");
    let args = vec![
        "run".to_string(),
        server.url("/openapi.json"),
        "--checks".into(),
        "not_a_server_error".into(),
        "--header".into(),
        format!("Authorization: Bearer {}", server.keys.admin),
        "--max-time".into(),
        seconds.to_string(),
        // One worker: schemathesis's generator parses Python source in its threads, and
        // CPython 3.11 can fail that with "AST constructor recursion depth mismatch" (an error
        // of the tool, not of the server) when two threads do it at once.
        "--workers".into(),
        "1".into(),
        "--seed".into(),
        "20261207".into(),
        "--request-timeout".into(),
        "20".into(),
        "--report-dir".into(),
        report.display().to_string(),
        "--no-color".into(),
    ];
    let cwd = scratch.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || schemathesis(&cwd, &args))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // `N generated, N passed`: every generated case passed, and there were some.
    let cases = stdout
        .lines()
        .find_map(|line| {
            let (generated, passed) = line.trim().split_once(" generated, ")?;
            let passed = passed.strip_suffix(" passed")?;
            Some((generated.parse::<u64>().ok()?, passed.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no summary of test cases:\n{stdout}"));
    assert!(cases.0 > 100 && cases.0 == cases.1, "{cases:?}\n{stdout}");
    eprintln!(
        "schemathesis: {} cases in {seconds} s, {} reached the upstream",
        cases.0,
        fake.request_count()
    );
    assert!(
        fake.request_count() > 10,
        "generated requests reached a model"
    );
    server.stop().await;
}
