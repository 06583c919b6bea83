//! The official OpenAI Python SDK as the client, streamed and not: an existing application
//! changes only its base URL and key. Without the SDK this test fails, saying how to install
//! it (`pip install openai`; `.ci/run` installs it): a client test that passes without its
//! client proves nothing.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};
use shopfloor_store::RunStatus;
use shopfloor_testkit::FakeServer;

/// Why the SDK cannot be imported, if it cannot.
fn sdk_missing() -> Option<String> {
    match Command::new("python3")
        .args(["-c", "import openai"])
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Some(format!("cannot run python3: {e}")),
    }
}

#[tokio::test]
async fn the_official_python_sdk_works_against_the_gateway() {
    if let Some(why) = sdk_missing() {
        panic!(
            "the OpenAI Python SDK is not installed (`python3 -c \"import openai\"` fails); \
             `python3 -m pip install openai` and run this test again:\n{why}"
        );
    }
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
    let base_url = server.url("/v1");
    let key = server.keys.operator.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("SHOPFLOOR_BASE_URL", base_url)
            .env("SHOPFLOOR_API_KEY", key)
            .output()
            .expect("run python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK script failed:\n{stderr}\n{stdout}"
    );
    let seen: Value = serde_json::from_str(&stdout).expect("the script prints JSON");
    eprintln!("OpenAI Python SDK {}", seen["sdk_version"]);

    assert!(
        seen["models"].as_array().unwrap().contains(&json!("fast")),
        "{seen}"
    );
    assert_eq!(seen["completion"]["content"], ANSWER);
    assert_eq!(seen["completion"]["finish_reason"], "stop");
    assert_eq!(seen["completion"]["total_tokens"], 10);
    assert_eq!(seen["stream"]["content"], ANSWER);
    assert_eq!(seen["stream"]["pieces"], 2, "streamed in pieces: {seen}");
    assert_eq!(seen["stream"]["finish_reason"], "stop");
    assert_eq!(seen["stream"]["total_tokens"], 10);
    assert_eq!(seen["workflow"], "billing");
    assert_eq!(
        seen["errors"]["unknown_model"],
        json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(
        seen["errors"]["bad_key"],
        json!({"status": 401, "code": "invalid_api_key"})
    );
    assert!(seen["run_id_header"].is_string(), "{seen}");

    // What the SDK did is recorded: the non-streamed and the streamed call, with the caller.
    for id in [&seen["completion"]["id"], &seen["stream"]["id"]] {
        let run_id = id.as_str().unwrap().strip_prefix("chatcmpl-").unwrap();
        let run = server.recorded(run_id).await;
        assert_eq!(run.status, RunStatus::Ok);
        assert_eq!(run.output, Some(json!(ANSWER)));
        assert_eq!(run.prompt_tokens + run.completion_tokens, 10);
        assert_eq!(run.caller.unwrap().team.as_deref(), Some("finance"));
    }
    let first = server
        .recorded(
            seen["completion"]["id"]
                .as_str()
                .unwrap()
                .strip_prefix("chatcmpl-")
                .unwrap(),
        )
        .await;
    assert_eq!(first.caller.unwrap().user.as_deref(), Some("sdk-user"));
    server.stop().await;
}
