use std::sync::Arc;

use serde_json::json;
use shopfloor_providers::{
    request_key, ChatRequest, ChatResponse, ExchangeRecorder, FinishReason, Message, OpenAi,
    Provider, ProviderError, Replay, Role, Usage,
};
use shopfloor_testkit::{openai_completion, openai_error, FakeServer, Reply};

use crate::triage_request;

fn answer(text: &str) -> ChatResponse {
    ChatResponse {
        text: text.into(),
        usage: Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 1,
        }),
        finish_reason: FinishReason::Stop,
        model: "gpt-4o-mini".into(),
        choice_probability: None,
        tool_calls: Vec::new(),
        logprobs: None,
    }
}

fn line(request: &ChatRequest, response: &ChatResponse) -> String {
    json!({ "key": request_key(request), "request": request, "response": response }).to_string()
}

#[tokio::test]
async fn replay_answers_recorded_requests_and_refuses_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("triage.jsonl");
    let recorded = triage_request();
    let text = format!(
        "{}\n\n{}\n",
        line(&recorded, &answer("bug")),
        line(&recorded, &answer("billing"))
    );
    std::fs::write(&path, text).expect("write recording");

    let replay = Replay::open(&path).expect("a valid recording");
    assert_eq!(replay.kind(), "replay");
    assert_eq!(replay.len(), 1);
    let response = replay.complete(&recorded).await.expect("recorded");
    assert_eq!(
        response,
        answer("billing"),
        "the last recording of a request wins"
    );

    let other = ChatRequest {
        temperature: Some(0.0),
        ..triage_request()
    };
    let error = replay.complete(&other).await.expect_err("not recorded");
    assert_eq!(
        error,
        ProviderError::NotRecorded {
            key: request_key(&other),
            file: path.display().to_string()
        }
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn replay_reports_the_capabilities_the_recording_was_made_with() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("prefix.jsonl");
    let request = ChatRequest {
        assistant_prefix: Some("Category:".into()),
        ..triage_request()
    };
    std::fs::write(&path, line(&request, &answer("billing"))).expect("write recording");
    let replay = Replay::open(&path).expect("a valid recording");
    assert!(replay.capabilities().assistant_prefix);
    assert!(!replay.capabilities().constrained_choice);
}

#[test]
fn a_missing_recording_is_a_config_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nowhere.jsonl");
    let error = Replay::open(&path).expect_err("no such file");
    assert!(matches!(error, ProviderError::Config(_)), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn a_corrupt_line_is_a_config_error_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("corrupt.jsonl");
    let good = line(&triage_request(), &answer("billing"));
    std::fs::write(&path, format!("{good}\n{{\"key\": \"abc\", \"respo\n")).expect("write");
    let error = Replay::open(&path).expect_err("corrupt");
    assert!(matches!(error, ProviderError::Config(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&format!("{}:2:", path.display())),
        "{error}"
    );
}

#[tokio::test]
async fn recorded_answers_replay_identically_without_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("recorded.jsonl");
    let server = FakeServer::start(|request| {
        let user = request.body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default();
        Reply::Json(200, openai_completion(&format!("answer to {user}"), 10, 3))
    })
    .await;
    let upstream = OpenAi::new("gpt-mini", Some(server.base_url()), None).expect("provider");
    let recorder = ExchangeRecorder::new(Arc::new(upstream), &path).expect("recorder");
    assert_eq!(recorder.kind(), "openai");

    let requests: Vec<ChatRequest> = ["refund", "crash", "password"]
        .into_iter()
        .map(|topic| ChatRequest {
            messages: vec![
                Message::new(Role::System, "You route support tickets."),
                Message::new(Role::User, topic),
            ],
            temperature: Some(0.7),
            ..triage_request()
        })
        .collect();
    let mut live = Vec::new();
    for request in &requests {
        live.push(recorder.complete(request).await.expect("live answer"));
    }
    drop(server);

    let replay = Replay::open(&path).expect("the recording");
    for (request, expected) in requests.iter().zip(&live) {
        assert_eq!(&replay.complete(request).await.expect("replayed"), expected);
    }
    assert_eq!(live[1].text, "answer to crash");
}

#[tokio::test]
async fn the_recorder_skips_failures_and_never_interleaves_concurrent_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("concurrent.jsonl");
    let server = FakeServer::start(|request| {
        let user = request.body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default();
        if user == "fail" {
            Reply::Json(500, openai_error("boom", "server_error"))
        } else {
            Reply::Json(200, openai_completion(&user.repeat(200), 10, 3))
        }
    })
    .await;
    let upstream = OpenAi::new("gpt-mini", Some(server.base_url()), None).expect("provider");
    let recorder = Arc::new(ExchangeRecorder::new(Arc::new(upstream), &path).expect("recorder"));

    let mut tasks = Vec::new();
    for index in 0..40 {
        let recorder = Arc::clone(&recorder);
        tasks.push(tokio::spawn(async move {
            let user = if index % 10 == 0 {
                "fail".to_owned()
            } else {
                format!("case {index} ")
            };
            let request = ChatRequest {
                messages: vec![
                    Message::new(Role::System, "s"),
                    Message::new(Role::User, user),
                ],
                ..triage_request()
            };
            recorder.complete(&request).await.is_ok()
        }));
    }
    let mut successes = 0;
    for task in tasks {
        successes += usize::from(task.await.expect("task"));
    }
    assert_eq!(successes, 36);

    let text = std::fs::read_to_string(&path).expect("recording");
    assert_eq!(
        text.lines().count(),
        36,
        "one line per success, none for failures"
    );
    for line in text.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).expect("every line is whole JSON");
        assert!(value["key"].is_string() && value["request"].is_object());
    }
    assert_eq!(Replay::open(&path).expect("replayable").len(), 36);
}
