//! Every field of OpenAI's Chat Completions request gets one of three treatments through the
//! gateway: carried to the model (in that provider's own form), applied by the gateway, or
//! refused with a 400 that names it — never dropped. The list below is the request schema's
//! fields as of this writing; each is sent alone to an OpenAI-compatible, an Anthropic and the
//! embedded model, and what reached the fake upstream is checked.

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_testkit::{
    anthropic_message, anthropic_stream, openai_completion, openai_stream, FakeServer,
    ReceivedRequest, Reply,
};

/// What the gateway does with a field for one kind of model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gets {
    /// Sent upstream; the upstream body has this key.
    Carried(&'static str),
    /// Taken by the gateway: the call succeeds and the field is not in the upstream body.
    Applied,
    /// 400 naming the field; nothing reaches the upstream.
    Refused,
}

use Gets::*;

/// (field, a value, OpenAI-compatible, Anthropic, embedded). The current request schema.
fn fields() -> Vec<(&'static str, Value, Gets, Gets, Gets)> {
    let tool = json!([{"type": "function", "function": {"name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
    vec![
        (
            "audio",
            json!({"voice": "alloy", "format": "wav"}),
            Carried("audio"),
            Refused,
            Refused,
        ),
        (
            "frequency_penalty",
            json!(0.5),
            Carried("frequency_penalty"),
            Refused,
            Refused,
        ),
        (
            "function_call",
            json!({"name": "lookup"}),
            Carried("tool_choice"),
            Carried("tool_choice"),
            Refused,
        ),
        (
            "functions",
            json!([{"name": "lookup", "parameters": {"type": "object"}}]),
            Carried("tools"),
            Carried("tools"),
            Refused,
        ),
        (
            "logit_bias",
            json!({"50256": -100}),
            Carried("logit_bias"),
            Refused,
            Refused,
        ),
        (
            "logprobs",
            json!(true),
            Carried("logprobs"),
            Refused,
            Refused,
        ),
        (
            "max_completion_tokens",
            json!(3),
            // Under its own name to OpenAI (reasoning models take only that one).
            Carried("max_completion_tokens"),
            Carried("max_tokens"),
            Applied,
        ),
        (
            "max_tokens",
            json!(3),
            Carried("max_tokens"),
            Carried("max_tokens"),
            Applied,
        ),
        (
            "messages",
            json!([{"role": "user", "content": "Hi"}]),
            Carried("messages"),
            Carried("messages"),
            Applied,
        ),
        (
            "metadata",
            json!({"ticket": "T-1"}),
            Applied,
            Applied,
            Applied,
        ),
        (
            "modalities",
            json!(["text"]),
            Carried("modalities"),
            Refused,
            Refused,
        ),
        ("model", Value::Null, Applied, Applied, Applied),
        ("n", json!(1), Applied, Applied, Applied),
        (
            "parallel_tool_calls",
            json!(false),
            Carried("parallel_tool_calls"),
            Carried("tool_choice"),
            Refused,
        ),
        (
            "prediction",
            json!({"type": "content", "content": "Hi"}),
            Carried("prediction"),
            Refused,
            Refused,
        ),
        (
            "presence_penalty",
            json!(0.5),
            Carried("presence_penalty"),
            Refused,
            Refused,
        ),
        (
            "prompt_cache_key",
            json!("k1"),
            Carried("prompt_cache_key"),
            Refused,
            Refused,
        ),
        (
            "prompt_cache_retention",
            json!("24h"),
            Carried("prompt_cache_retention"),
            Refused,
            Refused,
        ),
        (
            "reasoning_effort",
            json!("low"),
            Carried("reasoning_effort"),
            Refused,
            Refused,
        ),
        (
            "response_format",
            json!({"type": "json_object"}),
            Carried("response_format"),
            Carried("tools"),
            // Decoded under the JSON mask.
            Applied,
        ),
        (
            "safety_identifier",
            json!("hash-1"),
            Carried("safety_identifier"),
            Refused,
            Refused,
        ),
        ("seed", json!(7), Carried("seed"), Refused, Applied),
        (
            "service_tier",
            json!("auto"),
            Carried("service_tier"),
            Refused,
            Refused,
        ),
        (
            "stop",
            json!(["END"]),
            Carried("stop"),
            Carried("stop_sequences"),
            Refused,
        ),
        ("store", json!(true), Applied, Applied, Applied),
        ("stream", json!(true), Applied, Applied, Applied),
        (
            "stream_options",
            json!({"include_usage": true}),
            Applied,
            Applied,
            Applied,
        ),
        (
            "temperature",
            json!(0.3),
            Carried("temperature"),
            Carried("temperature"),
            Applied,
        ),
        (
            "tool_choice",
            json!("auto"),
            Carried("tool_choice"),
            Carried("tool_choice"),
            Refused,
        ),
        ("tools", tool, Carried("tools"), Carried("tools"), Refused),
        (
            "top_logprobs",
            json!(2),
            Carried("top_logprobs"),
            Refused,
            Refused,
        ),
        (
            "top_p",
            json!(0.9),
            Carried("top_p"),
            Carried("top_p"),
            Applied,
        ),
        (
            "user",
            json!("end-user-1"),
            Carried("user"),
            Carried("metadata"),
            Applied,
        ),
        (
            "verbosity",
            json!("low"),
            Carried("verbosity"),
            Refused,
            Refused,
        ),
        (
            "web_search_options",
            json!({}),
            Carried("web_search_options"),
            Refused,
            Refused,
        ),
        // Not in OpenAI's schema: what vLLM, Ollama or llama.cpp may take.
        (
            "x_vendor_option",
            json!({"k": 1}),
            Carried("x_vendor_option"),
            Refused,
            Refused,
        ),
    ]
}

/// Answers as OpenAI or Anthropic by path, streamed when asked.
fn upstream(request: &ReceivedRequest) -> Reply {
    let stream = request.body["stream"] == json!(true);
    match (request.path.ends_with("/messages"), stream) {
        (true, true) => Reply::Sse(anthropic_stream(&["Hel", "lo"], 5, 2)),
        (true, false) => Reply::Json(200, anthropic_message("Hello", 5, 2)),
        (false, true) => Reply::Sse(openai_stream(&["Hel", "lo"], 5, 2)),
        (false, false) => Reply::Json(200, openai_completion("Hello", 5, 2)),
    }
}

pub fn write_fields_project(dir: &std::path::Path, url: &str) {
    let config = format!(
        r#"
[models.oai]
provider = "openai-compatible"
model = "fake-oai"
base_url = "{url}"
data_classes = ["public", "internal"]

[models.claude]
provider = "anthropic"
model = "fake-claude"
base_url = "{url}"
# Any variable that is set: the fake upstream takes any key.
api_key_env = "HOME"
data_classes = ["public", "internal"]

[models.local]
provider = "local"
model = "smollm2"
on_premises = true
data_classes = ["public", "internal"]
"#
    );
    std::fs::write(dir.join("shopfloor.toml"), config).unwrap();
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
}

#[tokio::test]
async fn every_request_field_is_carried_applied_or_refused_by_name() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let client = client();
    let mut seen = Vec::new();
    for (field, value, oai, claude, local) in fields() {
        for (model, expected) in [("oai", oai), ("claude", claude), ("local", local)] {
            let mut body = json!({
                "model": model,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 2,
            });
            if !value.is_null() {
                body[field] = value.clone();
            }
            if field == "top_logprobs" {
                body["logprobs"] = json!(true);
            }
            if field == "stream_options" {
                body["stream"] = json!(true);
            }
            let before = fake.request_count();
            let response = client
                .post(server.url("/v1/chat/completions"))
                .bearer_auth(&server.keys.operator)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let run_id = response
                .headers()
                .get("x-shopfloor-run-id")
                .map(|v| v.to_str().unwrap().to_string());
            let text = response.text().await.unwrap();
            let sent = fake.requests().get(before).map(|r| r.body.clone());
            let what = format!("{field} to {model}: {status} {text}");
            match expected {
                Refused => {
                    assert_eq!(status, 400, "{what}");
                    let error: Value = serde_json::from_str(&text).unwrap();
                    // top_logprobs goes with logprobs, which is named first.
                    let named = if field == "top_logprobs" {
                        "logprobs"
                    } else {
                        field
                    };
                    assert_eq!(error["error"]["param"], named, "{what}");
                    assert!(
                        error["error"]["message"].as_str().unwrap().contains(named),
                        "{what}"
                    );
                    assert_eq!(
                        fake.request_count(),
                        before,
                        "{what}: nothing may reach the upstream"
                    );
                }
                Applied | Carried(_) => {
                    assert_eq!(status, 200, "{what}");
                    if model != "local" {
                        let sent = sent.unwrap_or_else(|| panic!("{what}: no upstream call"));
                        match expected {
                            Carried(key) => {
                                assert!(!sent[key].is_null(), "{what}: upstream got {sent}")
                            }
                            // The gateway streams from its upstream on its own terms (`stream`,
                            // `stream_options`) and names the vendor's model id.
                            _ if ["model", "stream", "stream_options"].contains(&field) => {}
                            _ => assert!(
                                sent.get(field).is_none(),
                                "{what}: applied fields are not forwarded: {sent}"
                            ),
                        }
                    }
                }
            }
            if field == "metadata" && status == 200 {
                let run = server.recorded(&run_id.unwrap()).await;
                assert_eq!(run.input["metadata"], json!({"ticket": "T-1"}), "{what}");
            }
            seen.push(field);
        }
    }
    assert_eq!(seen.len(), fields().len() * 3);

    // n > 1 is refused by name for every model (one choice per answer).
    for model in ["oai", "claude", "local"] {
        let response = client
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&server.keys.operator)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "n": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], "n");
    }
    server.stop().await;
}

#[tokio::test]
async fn carried_fields_reach_each_provider_in_its_own_form() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let client = client();
    let body = |model: &str| {
        json!({
            "model": model,
            "messages": [{"role": "user", "content": "Hi"}],
            "stop": "END",
            "user": "end-user-1",
            "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "lookup", "description": "Find",
                "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        })
    };
    for model in ["oai", "claude"] {
        let response = client
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&server.keys.operator)
            .json(&body(model))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{model}");
    }
    let sent = fake.requests();
    let oai = &sent[0].body;
    assert_eq!(oai["stop"], json!(["END"]));
    assert_eq!(oai["user"], "end-user-1");
    assert_eq!(oai["parallel_tool_calls"], false);
    assert_eq!(oai["tools"][0]["function"]["name"], "lookup");
    assert_eq!(
        oai["tool_choice"],
        json!({"type": "function", "function": {"name": "lookup"}})
    );
    let claude = &sent[1].body;
    assert_eq!(claude["stop_sequences"], json!(["END"]));
    assert_eq!(claude["metadata"], json!({"user_id": "end-user-1"}));
    assert_eq!(
        claude["tools"],
        json!([{"name": "lookup", "description": "Find", "input_schema": {"type": "object"}}])
    );
    assert_eq!(
        claude["tool_choice"],
        json!({"type": "tool", "name": "lookup", "disable_parallel_tool_use": true})
    );
    server.stop().await;
}

#[tokio::test]
async fn user_is_redacted_by_the_pii_policy_before_it_leaves() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let config = std::fs::read_to_string(dir.path().join("shopfloor.toml")).unwrap();
    std::fs::write(
        dir.path().join("shopfloor.toml"),
        format!("{config}\n[policy.pii]\ndetect = [\"email\"]\non_external = \"redact\"\n"),
    )
    .unwrap();
    let server = TestServer::start(dir.path(), test_config()).await;
    for model in ["oai", "claude"] {
        let response = client()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&server.keys.operator)
            .json(
                &json!({"model": model, "messages": [{"role": "user", "content": "Hi"}],
                "user": "dana@acme.example"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let sent = fake.requests();
    let oai_user = sent[0].body["user"].as_str().unwrap();
    let claude_user = sent[1].body["metadata"]["user_id"].as_str().unwrap();
    for user in [oai_user, claude_user] {
        assert!(!user.contains("dana@acme.example"), "{user}");
        assert!(user.contains("EMAIL"), "a placeholder is sent: {user}");
    }
    server.stop().await;
}

#[tokio::test]
async fn usage_is_null_not_zero_when_the_upstream_sends_none_and_finish_reasons_pass_through() {
    let fake = FakeServer::start(|request: &ReceivedRequest| {
        let last = request.body["messages"][0]["content"].as_str().unwrap_or("");
        let stream = request.body["stream"] == json!(true);
        if stream {
            return Reply::Sse(vec![
                json!({"id": "c", "object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": "x"}, "finish_reason": null}]})
                .to_string(),
                json!({"id": "c", "object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {}, "finish_reason": last}]})
                .to_string(),
                "[DONE]".to_string(),
            ]);
        }
        Reply::Json(
            200,
            json!({"id": "c", "object": "chat.completion", "model": "fake-oai", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": last}]}),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    for reason in ["content_filter", "length", "stop"] {
        let body: Value = client()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&server.keys.operator)
            .json(&json!({"model": "oai", "messages": [{"role": "user", "content": reason}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], reason, "{body}");
        assert!(body["usage"].is_null(), "no made-up zeros: {body}");

        let text = client()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&server.keys.operator)
            .json(
                &json!({"model": "oai", "messages": [{"role": "user", "content": reason}],
                "stream": true, "stream_options": {"include_usage": true}}),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let chunks: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let finish: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finish, vec![&json!(reason)], "{text}");
        let usage_chunk = chunks.last().unwrap();
        assert_eq!(usage_chunk["choices"], json!([]), "{text}");
        assert!(
            usage_chunk["usage"].is_null(),
            "usage is null, not zeros: {text}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn sampling_numbers_outside_openais_ranges_are_refused_by_name() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let client = client();
    let cases = [
        ("temperature", json!(2.5)),
        ("temperature", json!(-0.1)),
        ("temperature", json!(1e308)),
        ("top_p", json!(1.5)),
        ("top_p", json!(-1)),
        ("presence_penalty", json!(2.01)),
        ("frequency_penalty", json!(-3)),
        ("frequency_penalty", json!(1e308)),
        ("top_logprobs", json!(21)),
    ];
    for (field, value) in cases {
        let mut body = json!({"model": "oai", "messages": [{"role": "user", "content": "Hi"}]});
        body[field] = value.clone();
        if field == "top_logprobs" {
            body["logprobs"] = json!(true);
        }
        let before = fake.request_count();
        let (status, error) = post(
            &client,
            &server.url("/v1/chat/completions"),
            Some(&server.keys.operator),
            &body,
        )
        .await;
        assert_eq!(status, 400, "{field} = {value}: {error}");
        assert_eq!(error["error"]["param"], field, "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(field),
            "{error}"
        );
        assert_eq!(fake.request_count(), before, "{field} reached the upstream");
    }

    // The edges are inside, and reach the upstream as the numbers they were.
    let body = json!({"model": "oai", "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 2, "top_p": 0, "presence_penalty": -2, "frequency_penalty": 2});
    let (status, answer) = post(
        &client,
        &server.url("/v1/chat/completions"),
        Some(&server.keys.operator),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(sent["temperature"], json!(2.0));
    assert_eq!(sent["frequency_penalty"], json!(2.0));
    assert_eq!(sent["presence_penalty"], json!(-2.0));

    // A temperature too small for the embedded model's f32 arithmetic is its limit, greedy
    // decoding: an answer, not a 503.
    let greedy = |temperature: Value| {
        json!({"model": "local", "messages": [{"role": "user", "content": "Say hello"}],
            "max_tokens": 4, "temperature": temperature})
    };
    let mut answers = Vec::new();
    for temperature in [json!(1e-45), json!(0)] {
        let (status, answer) = post(
            &client,
            &server.url("/v1/chat/completions"),
            Some(&server.keys.operator),
            &greedy(temperature.clone()),
        )
        .await;
        assert_eq!(status, 200, "temperature {temperature}: {answer}");
        answers.push(answer["choices"][0]["message"]["content"].clone());
    }
    assert_eq!(answers[0], answers[1], "1e-45 decodes as greedy");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_cut_off_by_its_client_records_the_tokens_it_streamed() {
    use futures::StreamExt;
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    // The embedded model streams a long answer a token at a time; the client reads a few
    // events and hangs up long before the end (and before any usage is reported).
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .json(&json!({"model": "local", "stream": true, "max_tokens": 400,
            "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run_id = run_id(&response);
    let mut body = response.bytes_stream();
    let mut events = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        let text = String::from_utf8_lossy(&chunk);
        // Pieces of text, not the opening event's empty content.
        events += text.matches("\"content\":\"").count() - text.matches("\"content\":\"\"").count();
        if events >= 4 {
            break;
        }
    }
    drop(body);
    let run = server.eventually_recorded(&run_id).await;
    assert_eq!(
        run.status,
        shopfloor_store::RunStatus::Failed,
        "cut off: {run:?}"
    );
    assert!(
        run.completion_tokens >= 4,
        "{} completion tokens recorded for at least 4 streamed",
        run.completion_tokens
    );
    assert_eq!(run.attempts[0].completion_tokens, run.completion_tokens);
    server.stop().await;
}

/// `count_tokens` on the embedded model counts with its own tokenizer and chat template: the
/// number it then reports as input tokens when it answers the same messages.
#[tokio::test]
async fn the_embedded_model_counts_tokens_as_it_reads_them() {
    let fake = FakeServer::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write_fields_project(dir.path(), &fake.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let (c, key) = (client(), server.keys.operator.clone());
    let body = json!({"model": "local", "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello to the whole team"}]});
    let (status, counted) = post(
        &c,
        &server.url("/v1/messages/count_tokens"),
        Some(&key),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{counted}");
    let tokens = counted["input_tokens"].as_u64().unwrap();
    assert!(tokens > 10, "{counted}");
    let mut ask = body.clone();
    ask["max_tokens"] = json!(2);
    let (status, answer) = post(&c, &server.url("/v1/messages"), Some(&key), &ask).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["input_tokens"], tokens, "{answer}");
    assert_eq!(
        fake.request_count(),
        0,
        "counted and answered on this machine"
    );
    server.stop().await;
}
