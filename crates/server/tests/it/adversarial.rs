//! What an adversarial client tries, against the real server on 127.0.0.1: bodies sent before
//! a key is checked, bodies that never finish, more bodies than memory should hold, bodies in
//! the wrong media type, and errors that must stay in OpenAI's format.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use shopfloor_server::ServerConfig;
use shopfloor_testkit::FakeServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request head for `POST /v1/chat/completions` declaring `length` bytes of JSON.
fn head(key: Option<&str>, length: usize) -> String {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Send `head` and `body` on a fresh connection, without finishing the body if it is shorter
/// than declared; the connection stays open.
async fn send_partial(server: &TestServer, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// The status and JSON body of the response read from `stream` within `within`, and whether
/// the server closed the connection after it.
async fn response(stream: &mut TcpStream, within: Duration) -> (u16, Value, bool) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    let mut closed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response within {within:?}: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body, closed)
}

async fn start(config: ServerConfig) -> (TestServer, FakeServer, tempfile::TempDir) {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), config).await;
    (server, upstream, dir)
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_before_its_body_is_read() {
    let (server, upstream, _dir) = start(test_config()).await;
    // A broken body: the key is checked first, so the answer is 401, not a parse error.
    let mut stream = send_partial(&server, &head(None, 1), b"{").await;
    let (status, body, _) = response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status, 401, "{body}");
    assert_openai_error(&body, "authentication_error");

    // A body that never arrives: refused at once, and the connection is not kept waiting.
    let started = Instant::now();
    let mut stream = send_partial(&server, &head(None, 4_000_000), b"{\"model\"").await;
    let (status, _, closed) = response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status, 401);
    assert!(closed, "the connection stays open after refusing its body");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(upstream.requests().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_cut_off_with_408() {
    let config = ServerConfig {
        body_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let (server, upstream, _dir) = start(config).await;
    let started = Instant::now();
    let key = server.keys.operator.clone();
    let mut stream = send_partial(&server, &head(Some(&key), 1000), b"{").await;
    let (status, body, closed) = response(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(status, 408, "{body}");
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["code"], "body_timeout");
    assert!(closed, "the connection stays open after its body timed out");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(upstream.requests().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bodies_past_the_in_flight_budget_are_refused_with_503_and_the_budget_comes_back() {
    let config = ServerConfig {
        body_budget_bytes: 64 * 1024,
        body_timeout: Duration::from_secs(20),
        ..test_config()
    };
    let (server, _upstream, _dir) = start(config).await;
    let key = server.keys.operator.clone();
    // Two bodies of 40 KB: the first takes most of the budget while it trickles in.
    let mut first = send_partial(&server, &head(Some(&key), 40_000), b"{").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = send_partial(&server, &head(Some(&key), 40_000), b"{").await;
    let (status, body, closed) = response(&mut second, Duration::from_secs(5)).await;
    assert_eq!(status, 503, "{body}");
    assert_openai_error(&body, "server_error");
    assert_eq!(body["error"]["code"], "server_busy");
    assert!(closed);

    // The first finishes; its share is returned and a request of the same size goes through.
    let padding = " ".repeat(40_000 - 1 - 1);
    first
        .write_all(format!("{padding}}}").as_bytes())
        .await
        .unwrap();
    let (status, _, _) = response(&mut first, Duration::from_secs(5)).await;
    assert_eq!(status, 400, "an empty object is not a chat request");
    drop(first);
    let text = "x".repeat(39_000);
    let (status, body) = post(
        &client(),
        &server.url("/v1/chat/completions"),
        Some(&key),
        &chat_body("fast", &text),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let (server, upstream, _dir) = start(test_config()).await;
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .header("content-type", "text/plain")
        .body(chat_body("fast", "hi").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error");
    assert!(upstream.requests().is_empty());

    // With a charset, JSON is JSON.
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await;
}

/// The test project with `[policy.pii]`: everything detected, redacted before an external
/// model sees it and before the store keeps it.
async fn start_with_pii_policy() -> (TestServer, FakeServer, tempfile::TempDir) {
    start_with_pii_policy_and(&[]).await
}

/// [`start_with_pii_policy`], with `(file, text)` appended to the project's files first.
async fn start_with_pii_policy_and(
    more: &[(&str, &str)],
) -> (TestServer, FakeServer, tempfile::TempDir) {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let policy = "\n[policy.pii]\non_external = \"redact\"\non_store = \"redact\"\n";
    for (file, text) in [("shopfloor.toml", policy)].iter().chain(more) {
        shopfloor_testkit::append(&dir.path().join(file), text);
    }
    let server = TestServer::start(dir.path(), test_config()).await;
    (server, upstream, dir)
}

#[tokio::test]
async fn planted_credentials_reach_neither_the_model_nor_the_store() {
    let (server, upstream, dir) = start_with_pii_policy().await;
    let admin = server.keys.admin.clone();
    let planted = [
        admin.as_str(),
        "password=hunter2",
        "passwd: swordfish",
        "api_key=abc123xyz",
        "token=t0k3n",
        "postgres://u:pw@db.internal/app",
    ];
    let message = format!("please use {} for this", planted.join(" and "));
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .json(&chat_body("fast", &message))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run_id = run_id(&response);
    let sent = upstream.requests()[0].body.to_string();
    let run = server.recorded(&run_id).await;
    let stored = serde_json::to_string(&run.prompt).unwrap();
    server.stop().await;
    let database = std::fs::read(dir.path().join(".shopfloor/shopfloor.db")).unwrap_or_default();
    let database = String::from_utf8_lossy(&database);
    for secret in planted {
        // The distinctive part of each: the value, never the name before it.
        let value = secret.rsplit(['=', ' ', ':']).next().unwrap();
        let value = if secret.contains("://") {
            "u:pw@"
        } else {
            value
        };
        assert!(!sent.contains(value), "{secret} reached the model: {sent}");
        assert!(!stored.contains(value), "{secret} was stored: {stored}");
        assert!(
            !database.contains(value),
            "{secret} is in the database file"
        );
    }
    assert!(sent.contains("[SECRET_"), "{sent}");
}

#[tokio::test]
async fn personal_data_in_any_field_of_a_chat_request_is_redacted_before_an_outside_model() {
    let (server, upstream, _dir) = start_with_pii_policy().await;
    // One address per field that carries text, so that a leak names its field.
    let plant = |field: &str| format!("{}@example.com", field.replace(['_', '.'], "-"));
    let fields = [
        "system",
        "user",
        "tool_call_arguments",
        "tool_result",
        "stop",
        "tool_description",
        "parameter_description",
        "schema_description",
        "property_description",
        "passthrough",
        "bearer",
    ];
    let body = json!({
        "model": "fast",
        "messages": [
            {"role": "system", "content": format!("Write to {}", plant("system"))},
            {"role": "user", "content": "look someone up"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup",
                    "arguments": json!({"q": plant("tool_call_arguments")}).to_string()}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": plant("tool_result")},
            {"role": "user", "content": format!("and {} too, with Authorization: Bearer sk-test-9f8e7d6c5b4a",
                plant("user"))},
        ],
        "stop": [plant("stop")],
        "tools": [{"type": "function", "function": {"name": "lookup",
            "description": format!("Find a person; escalate to {}", plant("tool_description")),
            "parameters": {"type": "object", "properties": {"q": {"type": "string",
                "description": format!("e.g. {}", plant("parameter_description"))}}}}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "person",
            "description": format!("as {} wants it", plant("schema_description")),
            "schema": {"type": "object", "properties": {"email": {"type": "string",
                "description": format!("like {}", plant("property_description"))}}}}},
        "custom_field": {"nested": [plant("passthrough")]},
    });
    let response = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&server.keys.operator)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let sent = upstream.requests()[0].body.clone();
    let sent_text = sent.to_string();
    for field in fields {
        let planted = if field == "bearer" {
            "sk-test-9f8e7d6c5b4a".to_string()
        } else {
            plant(field)
        };
        assert!(
            !sent_text.contains(&planted),
            "{field}: {planted} reached the model: {sent}"
        );
    }
    // Each was replaced, not dropped: the fields are all there, with placeholders.
    assert!(
        sent["stop"][0].as_str().unwrap().starts_with("[EMAIL_"),
        "{sent}"
    );
    assert!(
        sent["tools"][0]["function"]["description"]
            .as_str()
            .unwrap()
            .contains("[EMAIL_"),
        "{sent}"
    );
    assert!(
        sent["custom_field"]["nested"][0]
            .as_str()
            .unwrap()
            .starts_with("[EMAIL_"),
        "{sent}"
    );
    assert!(sent_text.contains("[SECRET_"), "{sent}");
    server.stop().await;
}

#[tokio::test]
async fn caller_fields_are_stored_as_the_pii_policy_says() {
    let (server, _upstream, _dir) = start_with_pii_policy().await;
    let c = client();
    let key = server.keys.operator.clone();
    let mut body = chat_body("fast", "hello");
    body["user"] = json!("jane.doe@example.com");
    let response = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let gateway_run = run_id(&response);
    let (status, run) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        Some(&key),
        &json!({"input": {"text": "bug"}, "user": "jane.doe@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let workflow_run = run["run_id"].as_str().unwrap().to_string();
    let (status, batch) = post(
        &c,
        &server.url("/v1/workflows/triage/batches"),
        Some(&key),
        &json!({"inputs": [{"text": "bug"}], "user": "jane.doe@example.com"}),
    )
    .await;
    assert_eq!(status, 202, "{batch}");
    let batch_url = server.url(&format!(
        "/v1/batches/{}",
        batch["batch_id"].as_str().unwrap()
    ));
    let mut batch_run = None;
    for _ in 0..100 {
        let (_, progress) = get(&c, &batch_url, Some(&key)).await;
        if let Some(id) = progress["results"][0]["run_id"].as_str() {
            batch_run = Some(id.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let batch_run = batch_run.expect("the batch's case ran");
    for id in [gateway_run, workflow_run, batch_run] {
        let (status, run) = get(&c, &server.url(&format!("/v1/runs/{id}")), Some(&key)).await;
        assert_eq!(status, 200, "{run}");
        let user = run["caller"]["user"].as_str().unwrap_or_default();
        assert_eq!(user, "[EMAIL_1]", "run {id}: {run}");
        let stored = server.recorded(&id).await;
        let caller = stored.caller.expect("a caller");
        assert_eq!(caller.user.as_deref(), Some("[EMAIL_1]"));
        assert!(!caller.key_id.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_bad_query_string_is_an_openai_error_and_paging_ends_with_null() {
    let (server, _upstream, _dir) = start(test_config()).await;
    let c = client();
    let key = server.keys.operator.clone();
    let inputs: Vec<Value> = (0..5).map(|_| json!({"text": "bug"})).collect();
    let (status, batch) = post(
        &c,
        &server.url("/v1/workflows/triage/batches"),
        Some(&key),
        &json!({ "inputs": inputs }),
    )
    .await;
    assert_eq!(status, 202, "{batch}");
    let url = server.url(&format!(
        "/v1/batches/{}",
        batch["batch_id"].as_str().unwrap()
    ));
    for _ in 0..100 {
        let (_, progress) = get(&c, &url, Some(&key)).await;
        if progress["done"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let response = c
        .get(format!("{url}?after=-1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "invalid_request_error");

    let (status, body) = get(&c, &format!("{url}?limit=0"), Some(&key)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "limit");
    // A case number past what the store holds is the client's mistake, not a 503.
    let (status, body) = get(&c, &format!("{url}?after=18446744073709551615"), Some(&key)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "after");
    let (status, body) = get(&c, &format!("{url}?after=9223372036854775807"), Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 0, "{body}");

    // A page that holds the last case has nothing after it.
    let (_, page) = get(&c, &format!("{url}?limit=5"), Some(&key)).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 5, "{page}");
    assert_eq!(page["next_after"], Value::Null, "{page}");
    let (_, page) = get(&c, &format!("{url}?limit=2"), Some(&key)).await;
    assert_eq!(page["next_after"], 2, "{page}");
    let (_, page) = get(&c, &format!("{url}?limit=2&after=4"), Some(&key)).await;
    assert_eq!(page["results"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["next_after"], Value::Null, "{page}");
    server.stop().await;
}

#[tokio::test]
async fn upstream_addresses_stay_out_of_client_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Both upstreams refuse connections: the error a client gets must not say where they are.
    let refused = shopfloor_testkit::refused_base_url();
    write_project(dir.path(), &refused, &refused);
    let server = TestServer::start(dir.path(), test_config()).await;
    let (status, body) = post(
        &client(),
        &server.url("/v1/chat/completions"),
        Some(&server.keys.operator),
        &chat_body("fast", "hi"),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    let port = refused
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(!message.contains("127.0.0.1"), "{message}");
    assert!(!message.contains(port), "{message}");
    assert!(message.contains("model backup"), "{message}");
    server.stop().await;
}

/// `next` after sign-in stays on this server: a tab or newline (which browsers drop, making
/// `/\t/host` the other site `//host`) or any control character sends the user home, with a
/// redirect, never a 500 after the one-time link is spent (issue 25 item 3).
#[tokio::test]
async fn sign_in_never_redirects_off_the_server() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
    };
    for next in [
        "%2F%09%2Fevil.example",
        "%2Fruns%01",
        "%2F%0D%0ASet-Cookie:x=1",
    ] {
        let link = server
            .state
            .engine
            .login_link("vic", shopfloor_core::access::Role::Viewer, "test")
            .await
            .unwrap();
        let url = server.url(&format!("/login?token={}&next={next}", link.token));
        let r = c.get(url).send().await.unwrap();
        assert_eq!(r.status(), 303, "next={next}");
        assert_eq!(location(&r).as_deref(), Some("/"), "next={next}");
        assert!(
            r.headers().get("set-cookie").is_some(),
            "next={next}: signed in"
        );
    }
    let r = c
        .post(server.url("/login"))
        .header("origin", &server.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "key={}&next=%2F%09%2Fevil.example",
            server.keys.viewer
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r).as_deref(), Some("/"));
    // A path of this server is kept.
    let link = server
        .state
        .engine
        .login_link("vic", shopfloor_core::access::Role::Viewer, "test")
        .await
        .unwrap();
    let r = c
        .get(server.url(&format!(
            "/login?token={}&next=%2Fruns%3Fstatus%3Dok",
            link.token
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r).as_deref(), Some("/runs?status=ok"));
    server.stop().await;
}

/// A request head for the sign-in form, from our own origin, declaring `length` bytes.
fn login_head(length: usize) -> String {
    format!(
        "POST /login HTTP/1.1\r\nHost: test\r\nOrigin: http://test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn forms_sent_without_signing_in_cannot_spend_the_body_budget_of_signed_in_callers() {
    let config = ServerConfig {
        body_budget_bytes: 64 * 1024,
        body_timeout: Duration::from_secs(20),
        ..test_config()
    };
    let (server, _upstream, _dir) = start(config).await;
    let key = server.keys.operator.clone();

    // A sign-in form is bytes: one that declares megabytes is refused before it is read.
    let mut big = send_partial(&server, &login_head(4_194_304), b"").await;
    let (status, _, closed) = response(&mut big, Duration::from_secs(5)).await;
    assert_eq!(status, 413);
    assert!(closed);

    // Idle sign-in forms of 16 KB, as many as one address may have in flight; the next is
    // refused with 429.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(send_partial(&server, &login_head(16 * 1024), b"k").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = send_partial(&server, &login_head(100), b"").await;
    let (status, _, _) = response(&mut fifth, Duration::from_secs(5)).await;
    assert_eq!(status, 429);

    // They hold none of the shared budget: a signed-in caller's 40 KB body goes through
    // (64 KiB of budget; four 16 KiB forms drawn from it would leave no room).
    let text = "x".repeat(39_000);
    let (status, body) = post(
        &client(),
        &server.url("/v1/chat/completions"),
        Some(&key),
        &chat_body("fast", &text),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Once the idle forms are gone, the address may send forms again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let form = "key=sf-wrong&next=%2F";
    let mut stream = send_partial(&server, &login_head(form.len()), form.as_bytes()).await;
    let (status, _, _) = response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(status, 401, "a wrong key on the sign-in form");
    server.stop().await;
}

/// Sign in on the form with `key`: the `Set-Cookie` of the answer.
async fn sign_in(server: &TestServer, key: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(server.url("/login"))
        .header("origin", server.url("").trim_end_matches('/'))
        .form(&[("key", key), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "sign-in answers with a redirect");
    response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_https_and_pages_are_not_cached() {
    // Reached over plain HTTP (the default): a Secure cookie would never come back.
    let (server, _upstream, _dir) = start(test_config()).await;
    let cookie = sign_in(&server, &server.keys.viewer).await;
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = client()
        .get(server.url("/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    // The stylesheet is the same for everyone, and cached.
    let css = client()
        .get(server.url("/assets/dashboard.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");
    server.stop().await;

    // Behind a proxy that ends TLS (`[server] public_url = "https://…"`): Secure.
    let config = ServerConfig {
        secure_cookies: true,
        ..test_config()
    };
    let (server, _upstream, _dir) = start(config).await;
    let cookie = sign_in(&server, &server.keys.viewer).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
    server.stop().await;
}

use shopfloor_testkit::PLANTED_PII as PLANTED;

#[tokio::test]
async fn notes_webhook_events_and_credential_fields_are_kept_as_the_store_policy_says() {
    let (server, _upstream, dir) = start_with_pii_policy_and(&[(
        "workflows/approve.toml",
        "\n[review]\nwebhook = { url = \"http://127.0.0.1:9/hooks\", secret_env = \"HOME\" }\n\
         \n[outcome]\nkpi = \"minutes to first response\"\nbaseline = 42\ntarget = 15\nminutes_saved_per_accepted = 3\n",
    )])
    .await;
    let (keys, c) = (server.keys.clone(), client());
    let note = format!("called the customer: {}", PLANTED.join(", "));

    // A held run, rejected and another edited by a reviewer with the note: the decisions and
    // the webhook events they queue.
    let mut runs = Vec::new();
    for action in ["reject", "edit"] {
        let (status, held) = post(
            &c,
            &server.url("/v1/workflows/approve/runs"),
            Some(&keys.operator),
            &json!({"input": {"text": "billing", "password": "hunter2-q7", "apiKey": 8812345}}),
        )
        .await;
        assert_eq!(status, 202, "{held}");
        let run_id = held["run_id"].as_str().unwrap().to_string();
        let body = match action {
            "reject" => json!({"reason": "unsafe", "note": note}),
            _ => json!({"output": "bug", "note": note}),
        };
        let (status, decided) = post(
            &c,
            &server.url(&format!("/v1/reviews/{run_id}/{action}")),
            Some(&keys.reviewer),
            &body,
        )
        .await;
        assert_eq!(status, 200, "{action}: {decided}");
        runs.push(run_id);
    }

    // A KPI value with the note; viewers read it back redacted.
    let url = server.url("/v1/workflows/approve/outcomes");
    let (status, recorded) = post(
        &c,
        &url,
        Some(&keys.builder),
        &json!({"value": 30, "note": note}),
    )
    .await;
    assert_eq!(status, 201, "{recorded}");
    let (status, report) = get(&c, &url, Some(&keys.viewer)).await;
    assert_eq!(status, 200, "{report}");
    let shown = report.to_string();
    assert!(shown.contains("[EMAIL_1]"), "{shown}");

    // A gateway call whose metadata carries a credential under its name.
    let mut body = chat_body("fast", "hello");
    body["metadata"] = json!({"api_key": "abc123xyz", "ticket": "T-1"});
    let response = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&keys.operator)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let gateway_run = run_id(&response);
    let stored = server.recorded(&gateway_run).await;
    assert_eq!(stored.input["metadata"]["ticket"], "T-1");
    assert!(
        stored.input["metadata"]["api_key"]
            .as_str()
            .unwrap()
            .starts_with("[SECRET_"),
        "{}",
        stored.input
    );
    let held = server.recorded(&runs[0]).await;
    assert!(held.input["password"]
        .as_str()
        .unwrap()
        .starts_with("[SECRET_"));
    assert!(held.input["apiKey"]
        .as_str()
        .unwrap()
        .starts_with("[SECRET_"));
    server.stop().await;

    // Nothing planted is anywhere in the database: decisions, outbox, KPI values, runs.
    let mut bytes = Vec::new();
    for file in ["shopfloor.db", "shopfloor.db-wal"] {
        bytes.extend(std::fs::read(dir.path().join(".shopfloor").join(file)).unwrap_or_default());
    }
    let database = String::from_utf8_lossy(&bytes);
    assert!(
        database.contains("called the customer"),
        "the notes were kept"
    );
    for planted in PLANTED
        .iter()
        .copied()
        .chain(["hunter2-q7", "8812345", "abc123xyz"])
    {
        assert!(
            !database.contains(planted),
            "{planted} is in the database file"
        );
    }
}
