//! OpenAI's Responses API through the gateway (issue 26 item 1), with the official OpenAI
//! Python SDK as the client against an OpenAI-style and an Anthropic-style upstream: create,
//! stream, function calls and their outputs, structured output, retrieve,
//! `previous_response_id`, `store: false`, and a refusal; what reached each upstream checked.

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_store::RunStatus;
use shopfloor_testkit::{ReceivedRequest, Reply};

/// Tool turns as [`weather`]; a structured request (`Classify: …` with a format) as
/// `{"label": …}`, in the wire form of the path it is called on; [`hello`] otherwise.
fn upstream(request: &ReceivedRequest) -> Reply {
    let anthropic = request.path.ends_with("/messages");
    let text = first_user_text(request);
    if text.starts_with("Weather") {
        return weather(request);
    }
    if text.starts_with("Classify") {
        let label = json!({"label": "billing"});
        return if anthropic {
            Reply::Json(
                200,
                json!({
                "id": "m2", "type": "message", "role": "assistant", "model": "fake-claude",
                "content": [{"type": "tool_use", "id": "toolu_9", "name": "json_answer", "input": label}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 4}}),
            )
        } else {
            Reply::Json(
                200,
                shopfloor_testkit::openai_completion(&label.to_string(), 5, 4),
            )
        };
    }
    hello(request)
}

#[tokio::test]
async fn the_openai_sdk_uses_the_responses_api_on_either_kind_of_upstream() {
    let (upstream, _dir, server) = start_with_claude(upstream).await;
    for model in ["fast", "claude"] {
        let before = upstream.request_count();
        let seen = python_sdk_script(&server, "openai_responses.py", model).await;
        let create = &seen["create"];
        assert_eq!(create["status"], "completed", "{model}: {seen}");
        assert_eq!(create["text"], ANSWER, "{model}: {seen}");
        assert_eq!(create["input_tokens"], 7);
        assert_eq!(create["output_tokens"], 3);
        assert_eq!(create["instructions"], "Be brief.");
        assert_eq!(create["metadata"], json!({"ticket": "T-1"}));
        assert_eq!(seen["retrieved"]["id"], create["id"]);
        assert_eq!(seen["retrieved"]["text"], ANSWER);
        assert_eq!(seen["retrieved"]["status"], "completed");
        assert_eq!(seen["follow"]["text"], ANSWER);
        assert_eq!(seen["follow"]["previous"], create["id"]);

        let stream = &seen["stream"];
        assert_eq!(stream["text"], ANSWER, "{model}: {seen}");
        assert_eq!(stream["pieces"], 2);
        assert_eq!(stream["first"], "response.created");
        assert_eq!(stream["last"], "response.completed");
        assert_eq!(stream["final_text"], ANSWER);
        assert_eq!(stream["output_tokens"], 3);

        assert_eq!(seen["call"]["name"], "get_weather", "{model}: {seen}");
        assert_eq!(seen["call"]["arguments"], json!({"city": "Paris"}));
        assert_eq!(seen["answered"], "It is sunny.");
        assert_eq!(
            seen["stream_call"]["names"],
            json!(["get_weather"]),
            "{seen}"
        );
        assert_eq!(seen["stream_call"]["arguments"], json!({"city": "Paris"}));
        assert_eq!(seen["structured"], json!({"label": "billing"}), "{seen}");
        assert_eq!(seen["private"], json!({"status": 404}), "{seen}");
        assert_eq!(
            seen["refused"],
            json!({"status": 400, "param": "reasoning"}),
            "{seen}"
        );

        // What reached the upstream, in its own form.
        let sent = upstream.requests();
        let sent = &sent[before..];
        // create, follow, stream, call, answered, stream call, structured, private.
        assert_eq!(sent.len(), 8, "{model}: one upstream call per SDK call");
        let (hello, follow, answered) = (&sent[0].body, &sent[1].body, &sent[4].body);
        let call_id = seen["call"]["call_id"].as_str().unwrap();
        if model == "fast" {
            assert_eq!(
                hello["messages"][0],
                json!({"role": "system", "content": "Be brief."})
            );
            assert_eq!(hello["max_tokens"], 64);
            // The follow-up carries the first exchange, without its instructions.
            let history: Vec<&Value> = follow["messages"].as_array().unwrap().iter().collect();
            assert_eq!(
                history,
                [
                    &json!({"role": "user", "content": "Hello"}),
                    &json!({"role": "assistant", "content": ANSWER}),
                    &json!({"role": "user", "content": "And again?"}),
                ]
            );
            let messages = answered["messages"].as_array().unwrap();
            assert_eq!(messages[1]["tool_calls"][0]["id"], call_id);
            assert_eq!(
                messages[2],
                json!({"role": "tool", "content": "sunny, 21C", "tool_call_id": call_id})
            );
            assert_eq!(sent[6].body["response_format"]["type"], "json_schema");
        } else {
            assert_eq!(hello["system"], "Be brief.", "{hello}");
            assert_eq!(follow["messages"].as_array().unwrap().len(), 3, "{follow}");
            let messages = answered["messages"].as_array().unwrap();
            assert_eq!(
                messages[2]["content"],
                json!([{"type": "tool_result", "tool_use_id": call_id, "content": "sunny, 21C"}])
            );
        }

        // Each response is its gateway run, with the caller the SDK named.
        let id = create["id"].as_str().unwrap();
        let run = server
            .recorded(id.strip_prefix("resp_").expect("resp_ + the run id"))
            .await;
        assert_eq!(run.status, RunStatus::Ok);
        assert_eq!(run.workflow, "gateway");
        assert_eq!(run.input["metadata"], json!({"ticket": "T-1"}));
        assert_eq!(run.caller.unwrap().user.as_deref(), Some("sdk-user"));
    }
    server.stop().await;
}

/// Another key cannot read a response it did not make, nor continue from it.
#[tokio::test]
async fn a_response_is_read_and_continued_only_by_its_own_key() {
    let (_upstream, _dir, server) = start_with_claude(upstream).await;
    let keys = server.keys.clone();
    let c = client();
    let (status, made) = post(
        &c,
        &server.url("/v1/responses"),
        Some(&keys.operator),
        &json!({"model": "fast", "input": "Hello"}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let id = made["id"].as_str().unwrap();
    assert_eq!(made["output"][0]["content"][0]["text"], ANSWER);
    let (status, _) = get(
        &c,
        &server.url(&format!("/v1/responses/{id}")),
        Some(&keys.operator),
    )
    .await;
    assert_eq!(status, 200);
    let other = server
        .state
        .engine
        .create_key(
            "other-app",
            shopfloor_core::access::Role::Operator,
            None,
            "test",
        )
        .await
        .unwrap()
        .secret;
    let (status, body) = get(
        &c,
        &server.url(&format!("/v1/responses/{id}")),
        Some(&other),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(
        &c,
        &server.url("/v1/responses"),
        Some(&other),
        &json!({"model": "fast", "input": "And?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "previous_response_id");
    // An admin reads every run.
    let (status, _) = get(
        &c,
        &server.url(&format!("/v1/responses/{id}")),
        Some(&keys.admin),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// Run `tests/node/vercel_ai.mjs` (the Vercel AI SDK) against `server` with `model`, and read
/// the JSON it prints. Fails, saying how to install it, when its packages are missing.
async fn vercel_ai(server: &TestServer, model: &str) -> Value {
    let dir = format!("{}/tests/node", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&dir).join("node_modules/ai").is_dir(),
        "the Vercel AI SDK is not installed: `cd {dir} && npm ci` (`.ci/run` does it), then run this test again"
    );
    client_script(server, "node", &dir, "vercel_ai.mjs", model).await
}

/// The Vercel AI SDK's default `openai("…")` model speaks the Responses API: text, a stream,
/// a tool it runs over two steps, and a structured object, on either kind of upstream.
#[tokio::test]
async fn the_vercel_ai_sdks_default_openai_model_works_on_either_kind_of_upstream() {
    let (upstream, _dir, server) = start_with_claude(upstream).await;
    for model in ["fast", "claude"] {
        let before = upstream.request_count();
        let seen = vercel_ai(&server, model).await;
        assert_eq!(seen["text"]["text"], ANSWER, "{model}: {seen}");
        assert_eq!(seen["text"]["finishReason"], "stop");
        assert_eq!(seen["text"]["inputTokens"], 7);
        assert_eq!(seen["text"]["outputTokens"], 3);
        assert!(
            seen["text"]["responseId"]
                .as_str()
                .unwrap()
                .starts_with("resp_"),
            "{seen}"
        );
        assert_eq!(seen["stream"]["text"], ANSWER, "{model}: {seen}");
        assert_eq!(seen["stream"]["pieces"], 2);
        assert_eq!(seen["stream"]["finishReason"], "stop");
        assert_eq!(seen["tools"]["called"], json!(["Paris"]), "{model}: {seen}");
        assert_eq!(seen["tools"]["text"], "It is sunny.");
        assert_eq!(seen["tools"]["steps"], 2);
        assert_eq!(
            seen["object"],
            json!({"label": "billing"}),
            "{model}: {seen}"
        );
        let sent = upstream.requests();
        // text, stream, two tool steps, object.
        assert_eq!(sent.len() - before, 5, "{model}");
        if model == "fast" {
            assert_eq!(
                sent[before].body["messages"][0],
                json!({"role": "system", "content": "Be brief."})
            );
        } else {
            assert_eq!(sent[before].body["system"], "Be brief.");
        }
    }
    server.stop().await;
}
