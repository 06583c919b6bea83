//! Shared by the server's integration tests: a project routed to fake OpenAI upstreams, the
//! real server on 127.0.0.1 port 0 over the real SQLite file, and one API key per role.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use shopfloor_core::access::Role;
use shopfloor_engine::{Engine, EngineOptions, RetryPolicy};
use shopfloor_server::{AppState, Server, ServerConfig, WorkerConfig};
use shopfloor_store::{RunRecord, Store};
use shopfloor_testkit::{openai_completion, openai_stream, ReceivedRequest, Reply};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The answer the default upstream gives to a chat call.
pub const ANSWER: &str = "Hello from upstream";

/// Two models behind two upstreams (`fast` falls back to `backup`) and three workflows:
/// `triage` (labels, one text field), `ticket` (two fields), `approve` (high risk: held).
pub fn write_project(dir: &Path, fast_url: &str, backup_url: &str) {
    let config = format!(
        r#"
[models.fast]
provider = "openai-compatible"
model = "fake-fast"
base_url = "{fast_url}"
price = {{ input_per_mtok = 1.0, output_per_mtok = 2.0 }}
data_classes = ["public", "internal"]

[models.backup]
provider = "openai-compatible"
model = "fake-backup"
base_url = "{backup_url}"
price = {{ input_per_mtok = 3.0, output_per_mtok = 4.0 }}
data_classes = ["public", "internal"]

[models.secret-only]
provider = "openai-compatible"
model = "fake-secret"
base_url = "{fast_url}"
data_classes = ["public"]

[gateway]
timeout_ms = 1500
retries = 1
fallbacks = {{ fast = ["backup"] }}
"#
    );
    std::fs::write(dir.join("shopfloor.toml"), config).unwrap();
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let workflow = |risk: &str, schema: &str, user: &str| {
        format!(
            r#"description = "test workflow"
owner = "dana@example.com"
risk = "{risk}"
data_class = "internal"

[input]
schema = {schema}

[prompt]
user = "{user}"

[output]
labels = ["billing", "bug", "other"]
retry_on_invalid = false

[route]
models = ["fast"]
timeout_ms = 1500
retries = 0
"#
        )
    };
    let one_field =
        r#"{ type = "object", required = ["text"], properties = { text = { type = "string" } } }"#;
    let two_fields = r#"{ type = "object", required = ["subject", "body"], properties = { subject = { type = "string" }, body = { type = "string" } } }"#;
    std::fs::write(
        dir.join("workflows/triage.toml"),
        workflow("low", one_field, "Classify: {{ text }}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("workflows/ticket.toml"),
        workflow("low", two_fields, "Classify: {{ subject }} {{ body }}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("workflows/approve.toml"),
        workflow("high", one_field, "Classify: {{ text }}"),
    )
    .unwrap();
}

/// The default upstream: a label for workflow prompts (`Classify: …` → the first word after
/// it), [`ANSWER`] otherwise; streamed when asked.
pub fn answer(request: &ReceivedRequest) -> Reply {
    if request.path.ends_with("/embeddings") {
        return embeddings(request);
    }
    if let Some(counted) = counted(request) {
        return counted;
    }
    let last = request.body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let text = match last.strip_prefix("Classify: ") {
        Some(rest) => rest
            .split_whitespace()
            .next()
            .unwrap_or("other")
            .to_string(),
        None => ANSWER.to_string(),
    };
    if request.body["stream"] == json!(true) {
        let (a, b) = text.split_at(text.len() / 2);
        Reply::Sse(openai_stream(&[a, b], 7, 3))
    } else {
        Reply::Json(200, openai_completion(&text, 7, 3))
    }
}

/// A fake embedding model: for each text, `[characters, words, 1]`, 4 tokens a text.
pub fn embeddings(request: &ReceivedRequest) -> Reply {
    let inputs = request.body["input"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let text = text.as_str().unwrap_or_default();
            let vector = [
                text.chars().count() as f32,
                text.split_whitespace().count() as f32,
                1.0,
            ];
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    let tokens = 4 * inputs.len();
    Reply::Json(
        200,
        json!({"object": "list", "data": data, "model": "fake-embed",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
}

/// One secret per role.
#[derive(Debug, Clone)]
pub struct Keys {
    pub admin: String,
    pub builder: String,
    pub reviewer: String,
    pub operator: String,
    pub viewer: String,
}

impl Keys {
    pub fn for_role(&self, role: Role) -> &str {
        match role {
            Role::Admin => &self.admin,
            Role::Builder => &self.builder,
            Role::Reviewer => &self.reviewer,
            Role::Operator => &self.operator,
            Role::Viewer => &self.viewer,
        }
    }
}

/// A running server and what a test needs to talk to it and check its records.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub keys: Keys,
    pub state: AppState,
    pub project: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

/// Test defaults: no key cache (revocation is seen at once), a fast worker.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        key_cache_ttl: Duration::ZERO,
        worker: Some(WorkerConfig {
            concurrency: 4,
            lease: Duration::from_secs(5),
            poll: Duration::from_millis(50),
            ..WorkerConfig::default()
        }),
        ..ServerConfig::default()
    }
}

impl TestServer {
    /// Open the project in `dir` (SQLite under it), create one key per role, serve on port 0.
    pub async fn start(dir: &Path, config: ServerConfig) -> TestServer {
        Self::serve(dir, config, None).await
    }

    /// Serve the project in `dir` again, with the keys an earlier server created there.
    pub async fn restart(dir: &Path, config: ServerConfig, keys: Keys) -> TestServer {
        Self::serve(dir, config, Some(keys)).await
    }

    async fn serve(dir: &Path, config: ServerConfig, keys: Option<Keys>) -> TestServer {
        let engine = Engine::open(EngineOptions {
            project_dir: dir.to_path_buf(),
            retry: RetryPolicy {
                base: Duration::from_millis(10),
                max: Duration::from_millis(50),
                max_retry_after: Duration::from_millis(100),
            },
            ..EngineOptions::default()
        })
        .await
        .expect("open the engine");
        let secret = |name: &str, role: Role, team: Option<&str>| {
            let engine = &engine;
            let name = name.to_string();
            let team = team.map(str::to_string);
            async move {
                engine
                    .create_key(&name, role, team.as_deref(), "test")
                    .await
                    .expect("create key")
                    .secret
            }
        };
        let keys = match keys {
            Some(keys) => keys,
            None => Keys {
                admin: secret("ada", Role::Admin, None).await,
                builder: secret("bob", Role::Builder, None).await,
                reviewer: secret("rita", Role::Reviewer, None).await,
                operator: secret("billing-service", Role::Operator, Some("finance")).await,
                viewer: secret("vic", Role::Viewer, None).await,
            },
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::build(engine, listener, config);
        let addr = server.local_addr().unwrap();
        let state = server.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            base: format!("http://{addr}"),
            keys,
            state,
            project: dir.to_path_buf(),
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /metrics` as the viewer.
    pub async fn metrics(&self) -> String {
        reqwest::Client::new()
            .get(self.url("/metrics"))
            .bearer_auth(&self.keys.viewer)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn store(&self) -> &std::sync::Arc<dyn Store> {
        self.state.engine.store()
    }

    /// A run as recorded, once the recorder has written it.
    pub async fn recorded(&self, id: &str) -> RunRecord {
        self.state.engine.flush().await;
        self.store()
            .get_run(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("run {id} is not recorded"))
    }

    /// A run recorded in the background (a stream its client left), once it is written; a
    /// failure after 10 s.
    pub async fn eventually_recorded(&self, id: &str) -> RunRecord {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.state.engine.flush().await;
            if let Some(run) = self.store().get_run(id).await.unwrap() {
                return run;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {id} was never recorded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Shut down gracefully and wait until the server has returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("the server stops within 30 s")
                .expect("the server task")
                .expect("the server returns Ok");
        }
    }
}

/// An HTTP client that keeps connections alive.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POST JSON with a bearer key; the status and the body as JSON (Null if not JSON).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    send(client.post(url).json(body), key).await
}

/// GET with a bearer key; the status and the body as JSON (Null if not JSON).
pub async fn get(client: &reqwest::Client, url: &str, key: Option<&str>) -> (u16, Value) {
    send(client.get(url), key).await
}

/// The id of the run a response names in `x-shopfloor-run-id`.
pub fn run_id(response: &reqwest::Response) -> String {
    response.headers()["x-shopfloor-run-id"]
        .to_str()
        .expect("a run id")
        .to_string()
}

/// Send `request` with a bearer key; the status and the body as JSON (Null if not JSON).
async fn send(mut request: reqwest::RequestBuilder, key: Option<&str>) -> (u16, Value) {
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A chat request body for `model`.
pub fn chat_body(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

/// Assert an OpenAI-format error body with this type.
pub fn assert_openai_error(body: &Value, kind: &str) {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["type"], json!(kind), "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
}

/// Serve `engine` on port 0 as a bench wants it (keys cached, no worker, no review sweep)
/// until the returned sender is dropped; its base URL.
pub async fn serve_bench(engine: Engine) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServerConfig {
        key_cache_ttl: Duration::from_secs(60),
        worker: None,
        jobs_every: None,
        ..ServerConfig::default()
    };
    let server = Server::build(engine, listener, config);
    let base = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// Run `tests/python/SCRIPT` with a Python client (the one its name starts with: `openai_…`,
/// `anthropic_…`, `langchain_…`) against `server` (its base URL and operator key in
/// `SHOPFLOOR_BASE_URL` and `SHOPFLOOR_API_KEY`, `model` in `SHOPFLOOR_MODEL`), and read the
/// JSON it prints. Fails, saying how to install it, when the SDK is missing: a client test
/// that passes without its client proves nothing.
pub async fn python_sdk_script(server: &TestServer, script: &str, model: &str) -> Value {
    let (module, package) = match script.split('_').next().unwrap_or("openai") {
        "langchain" => ("langchain_openai", "langchain-openai"),
        sdk => (sdk, sdk),
    };
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        panic!(
            "the Python package {package} is not installed (`python3 -c \"import {module}\"` fails); \
             `python3 -m pip install {package}` and run this test again: {probe:?}"
        );
    }
    let dir = format!("{}/tests/python", env!("CARGO_MANIFEST_DIR"));
    client_script(server, "python3", &dir, script, model).await
}

/// Run `PROGRAM SCRIPT` in `dir` against `server` (its base URL and operator key in
/// `SHOPFLOOR_BASE_URL` and `SHOPFLOOR_API_KEY`, `model` in `SHOPFLOOR_MODEL`), and read the
/// JSON it prints.
pub async fn client_script(
    server: &TestServer,
    program: &str,
    dir: &str,
    script: &str,
    model: &str,
) -> Value {
    let (program, dir, script) = (program.to_string(), dir.to_string(), script.to_string());
    let (base_url, key, model) = (
        server.url("/v1"),
        server.keys.operator.clone(),
        model.to_string(),
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .arg(&script)
            .current_dir(&dir)
            .env("SHOPFLOOR_BASE_URL", base_url)
            .env("SHOPFLOOR_API_KEY", key)
            .env("SHOPFLOOR_MODEL", model)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the client script failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).expect("the script prints JSON")
}

/// The text of the first user message an upstream was sent (a string, or the first block's).
pub fn first_user_text(request: &ReceivedRequest) -> String {
    let first = request.body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .map(|m| m["content"].clone())
        .unwrap_or_default();
    first
        .as_str()
        .or_else(|| first[0]["text"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Anthropic's `count_tokens` answered as a fake: 3 tokens a message, 5 for the system
/// prompt; `None` for any other path.
pub fn counted(request: &ReceivedRequest) -> Option<Reply> {
    if !request.path.ends_with("/messages/count_tokens") {
        return None;
    }
    let messages = request.body["messages"].as_array().map_or(0, Vec::len);
    let system = if request.body["system"].is_null() {
        0
    } else {
        5
    };
    Some(Reply::Json(
        200,
        json!({"input_tokens": 3 * messages + system}),
    ))
}

/// [`ANSWER`], in two pieces when streamed, in the wire form of the path it is called on
/// (OpenAI or Anthropic).
pub fn hello(request: &ReceivedRequest) -> Reply {
    if let Some(counted) = counted(request) {
        return counted;
    }
    let anthropic = request.path.ends_with("/messages");
    let stream = request.body["stream"] == json!(true);
    let (a, b) = ANSWER.split_at(ANSWER.len() / 2);
    match (anthropic, stream) {
        (false, false) => Reply::Json(200, openai_completion(ANSWER, 7, 3)),
        (false, true) => Reply::Sse(openai_stream(&[a, b], 7, 3)),
        (true, false) => Reply::Json(200, shopfloor_testkit::anthropic_message(ANSWER, 7, 3)),
        (true, true) => Reply::Sse(shopfloor_testkit::anthropic_stream(&[a, b], 7, 3)),
    }
}

/// A fake upstream that calls `get_weather` until it is given the tool's result, in the
/// wire form of the path it is called on (OpenAI or Anthropic), streamed when asked.
pub fn weather(request: &shopfloor_testkit::ReceivedRequest) -> shopfloor_testkit::Reply {
    use shopfloor_testkit::Reply;
    let body = &request.body;
    let anthropic = request.path.ends_with("/messages");
    let last = body["messages"].as_array().and_then(|m| m.last()).cloned();
    let answered =
        last.is_some_and(|m| m["role"] == "tool" || m["content"][0]["type"] == "tool_result");
    let stream = body["stream"] == json!(true);
    match (anthropic, answered, stream) {
        (false, true, _) => Reply::Json(200, shopfloor_testkit::openai_completion("It is sunny.", 9, 4)),
        (true, true, _) => Reply::Json(200, shopfloor_testkit::anthropic_message("It is sunny.", 9, 4)),
        (false, false, false) => Reply::Json(200, json!({
            "id": "c1", "object": "chat.completion", "model": "fake",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}})),
        (false, false, true) => Reply::Sse(vec![
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [{"index": 0,
                "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": "{\"city\":"}}]}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": "\"Paris\"}"}}]}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
            "[DONE]".to_string(),
        ]),
        (true, false, false) => Reply::Json(200, json!({
            "id": "m1", "type": "message", "role": "assistant", "model": "fake-claude",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 9, "output_tokens": 4}})),
        (true, false, true) => Reply::Sse(vec![
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}).to_string(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}).to_string(),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}).to_string(),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}).to_string(),
            json!({"type": "content_block_stop", "index": 0}).to_string(),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}).to_string(),
            json!({"type": "message_stop"}).to_string(),
        ]),
    }
}

/// A server over the test project with `claude` added, all its models on one fake upstream
/// that answers with `reply`.
pub async fn start_with_claude(
    reply: impl Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static,
) -> (shopfloor_testkit::FakeServer, tempfile::TempDir, TestServer) {
    let upstream = shopfloor_testkit::FakeServer::start(reply).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    shopfloor_testkit::append(
        &dir.path().join("shopfloor.toml"),
        &claude_model(&upstream.base_url()),
    );
    let server = TestServer::start(dir.path(), test_config()).await;
    (upstream, dir, server)
}

/// `claude`: an Anthropic-kind model at `base_url`, as `shopfloor.toml` lines.
pub fn claude_model(base_url: &str) -> String {
    format!(
        "\n[models.claude]\nprovider = \"anthropic\"\nmodel = \"fake-claude\"\nbase_url = \"{base_url}\"\n# Any variable that is set: the fake takes any key.\napi_key_env = \"HOME\"\ndata_classes = [\"public\", \"internal\"]\n"
    )
}
