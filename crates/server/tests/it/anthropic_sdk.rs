//! The official anthropic Python SDK against `/v1/messages` (issue 26 item 2): a message, a
//! stream, a tool call and its result, a streamed tool call, and errors in Anthropic's form,
//! each against an OpenAI-style and an Anthropic-style upstream, with what reached the
//! upstream checked. Fails without the SDK (`pip install anthropic`; `.ci/run` installs it).

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_store::RunStatus;
use shopfloor_testkit::{ReceivedRequest, Reply};

/// The weather fake for tool turns, [`hello`] otherwise.
fn upstream(request: &ReceivedRequest) -> Reply {
    if first_user_text(request).starts_with("Weather") {
        return weather(request);
    }
    hello(request)
}

#[tokio::test]
async fn the_anthropic_sdk_works_against_the_gateway_on_either_kind_of_upstream() {
    let (upstream, _dir, server) = start_with_claude(upstream).await;
    for model in ["fast", "claude"] {
        let before = upstream.request_count();
        let seen = python_sdk_script(&server, "anthropic_messages.py", model).await;
        eprintln!("anthropic Python SDK {}", seen["sdk_version"]);
        let create = &seen["create"];
        assert_eq!(create["type"], "message", "{model}: {seen}");
        assert_eq!(create["role"], "assistant");
        assert_eq!(create["text"], ANSWER, "{model}: {seen}");
        assert_eq!(create["stop_reason"], "end_turn");
        assert_eq!(create["input_tokens"], 7);
        assert_eq!(create["output_tokens"], 3);
        let stream = &seen["stream"];
        assert_eq!(stream["text"], ANSWER, "{model}: {seen}");
        assert_eq!(stream["final_text"], ANSWER);
        assert_eq!(stream["pieces"], 2, "streamed in pieces: {seen}");
        assert_eq!(stream["stop_reason"], "end_turn");
        assert_eq!(stream["output_tokens"], 3);

        assert_eq!(seen["first"]["stop_reason"], "tool_use", "{model}: {seen}");
        assert_eq!(seen["first"]["name"], "get_weather");
        assert_eq!(seen["first"]["input"], json!({"city": "Paris"}));
        assert_eq!(seen["second"]["text"], "It is sunny.", "{model}: {seen}");
        assert_eq!(seen["second"]["stop_reason"], "end_turn");
        assert_eq!(seen["stream_tool"]["stop_reason"], "tool_use", "{seen}");
        assert_eq!(seen["stream_tool"]["name"], "get_weather");
        assert_eq!(seen["stream_tool"]["input"], json!({"city": "Paris"}));

        let errors = &seen["errors"];
        assert_eq!(errors["unknown_model"]["status"], 404, "{errors}");
        assert_eq!(errors["unknown_model"]["type"], "not_found_error");
        assert_eq!(errors["unknown_model"]["class"], "NotFoundError");
        assert_eq!(errors["bad_key"]["status"], 401, "{errors}");
        assert_eq!(errors["bad_key"]["type"], "authentication_error");
        assert_eq!(errors["document"]["status"], 400, "{errors}");
        assert_eq!(errors["document"]["type"], "invalid_request_error");
        assert!(
            errors["document"]["message"]
                .as_str()
                .unwrap()
                .contains("messages.0.content.0: document blocks"),
            "{errors}"
        );
        assert_eq!(seen["image"]["text"], ANSWER, "{seen}");

        // Tokens are counted where the model can count them: Anthropic's own endpoint (the
        // fake counts 3 a message and 5 for the system prompt), never guessed for OpenAI's.
        if model == "claude" {
            assert_eq!(seen["count"], 14, "{seen}");
        } else {
            assert_eq!(seen["count"]["status"], 400, "{seen}");
            let message = seen["count"]["message"].as_str().unwrap();
            assert!(message.contains("no token counting"), "{message}");
        }

        // What reached the upstream, in its own form: the system prompt, the stop sequence,
        // the end user; then the tool, and the call and its result.
        let sent = upstream.requests();
        let sent = &sent[before..];
        let counting = usize::from(model == "claude");
        assert_eq!(
            sent.len(),
            6 + counting,
            "{model}: one upstream call per SDK call"
        );
        // The image turn, in the upstream's form, its parts in order.
        let pictured = &sent.last().unwrap().body["messages"][0]["content"];
        if model == "fast" {
            assert_eq!(
                *pictured,
                json!([
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ]),
                "{pictured}"
            );
        } else {
            assert_eq!(
                *pictured,
                json!([
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ]),
                "{pictured}"
            );
        }
        // Recorded with the inline image as its SHA-256, the URL as it is.
        let pictured_run = server
            .recorded(
                seen["image"]["id"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("msg_")
                    .unwrap(),
            )
            .await;
        let recorded = pictured_run.input["messages"][0]["parts"].to_string();
        assert!(
            recorded.contains("data:image/png;sha256,") && !recorded.contains("iVBORw0KGgo="),
            "{recorded}"
        );
        assert!(
            recorded.contains("https://example.com/cat.jpg"),
            "{recorded}"
        );
        if model == "claude" {
            let count = &sent[5];
            assert!(
                count.path.ends_with("/messages/count_tokens"),
                "{}",
                count.path
            );
            assert!(count.body.get("max_tokens").is_none(), "{}", count.body);
            assert_eq!(count.body["system"], "Be brief.");
        }
        let (hello, tools, result) = (&sent[0].body, &sent[2].body, &sent[3].body);
        let call_id = seen["first"]["id"].as_str().unwrap();
        if model == "fast" {
            assert!(
                sent[0].path.ends_with("/chat/completions"),
                "{}",
                sent[0].path
            );
            assert_eq!(
                hello["messages"][0],
                json!({"role": "system", "content": "Be brief."})
            );
            assert_eq!(hello["stop"], json!(["END"]));
            assert_eq!(hello["max_tokens"], 64);
            assert_eq!(tools["tools"][0]["function"]["name"], "get_weather");
            let messages = result["messages"].as_array().unwrap();
            assert_eq!(messages[1]["tool_calls"][0]["id"], call_id);
            assert_eq!(
                messages[2],
                json!({"role": "tool", "content": "sunny, 21C", "tool_call_id": call_id})
            );
        } else {
            assert!(sent[0].path.ends_with("/messages"), "{}", sent[0].path);
            assert_eq!(hello["system"], "Be brief.", "{hello}");
            assert_eq!(hello["stop_sequences"], json!(["END"]));
            assert_eq!(
                tools["tools"][0]["input_schema"]["required"],
                json!(["city"])
            );
            let messages = result["messages"].as_array().unwrap();
            assert_eq!(
                messages[1]["content"],
                json!([{"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": "Paris"}}])
            );
            assert_eq!(
                messages[2]["content"],
                json!([{"type": "tool_result", "tool_use_id": call_id, "content": "sunny, 21C"}])
            );
        }

        // Recorded like any gateway call: the caller is the SDK's metadata.user_id.
        let id = create["id"].as_str().unwrap();
        let run = server
            .recorded(id.strip_prefix("msg_").expect("msg_ + the run id"))
            .await;
        assert_eq!(run.status, RunStatus::Ok);
        assert_eq!(run.output, Some(Value::String(ANSWER.into())));
        assert_eq!(run.caller.unwrap().user.as_deref(), Some("sdk-user"));
    }
    server.stop().await;
}
