//! The official OpenAI Python SDK as the client, streamed and not: an existing application
//! changes only its base URL and key. Without the SDK this test fails, saying how to install
//! it (`pip install openai`; `.ci/run` installs it): a client test that passes without its
//! client proves nothing.

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_store::RunStatus;
use shopfloor_testkit::FakeServer;

#[tokio::test]
async fn the_official_python_sdk_works_against_the_gateway() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let seen = python_sdk_script(&server, "openai_client.py", "fast").await;
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

#[tokio::test]
async fn the_official_python_sdk_calls_tools_and_sends_their_results_back() {
    let (upstream, _dir, server) = start_with_claude(weather).await;
    for model in ["fast", "claude"] {
        let before = upstream.request_count();
        let seen = python_sdk_script(&server, "openai_tools.py", model).await;
        assert_eq!(
            seen["first"]["finish_reason"], "tool_calls",
            "{model}: {seen}"
        );
        assert_eq!(seen["first"]["content"], Value::Null, "{model}: {seen}");
        assert_eq!(seen["first"]["name"], "get_weather");
        assert_eq!(seen["first"]["arguments"], json!({"city": "Paris"}));
        assert_eq!(seen["second"]["content"], "It is sunny.");
        assert_eq!(seen["second"]["finish_reason"], "stop");
        assert_eq!(
            seen["stream"]["names"],
            json!(["get_weather"]),
            "{model}: {seen}"
        );
        assert_eq!(seen["stream"]["arguments"], json!({"city": "Paris"}));
        assert_eq!(seen["stream"]["finish_reason"], "tool_calls");

        // What reached the upstream: the tool, then the call and its result in its own form.
        let sent = upstream.requests();
        let (first, second) = (&sent[before].body, &sent[before + 1].body);
        if model == "fast" {
            assert_eq!(first["tools"][0]["function"]["name"], "get_weather");
            let messages = second["messages"].as_array().unwrap();
            assert_eq!(messages[1]["role"], "assistant");
            assert_eq!(messages[1]["content"], Value::Null);
            assert_eq!(messages[1]["tool_calls"][0]["id"], seen["first"]["id"]);
            assert_eq!(
                messages[2],
                json!({"role": "tool", "content": "sunny, 21C", "tool_call_id": seen["first"]["id"]})
            );
        } else {
            assert_eq!(first["tools"][0]["name"], "get_weather");
            assert_eq!(
                first["tools"][0]["input_schema"]["required"],
                json!(["city"])
            );
            let messages = second["messages"].as_array().unwrap();
            assert_eq!(
                messages[1]["content"],
                json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}])
            );
            assert_eq!(
                messages[2],
                json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21C"}]})
            );
        }
    }
    server.stop().await;
}
