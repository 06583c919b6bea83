//! `POST /v1/embeddings` through the real server: an OpenAI-compatible upstream (what reached
//! it, redacted as the policy says), the embedded MiniLM, base64 and float answers, the
//! official Python SDK, and refusals naming their field.

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_testkit::FakeServer;

/// The test project plus two embedding models and the PII policy.
async fn start() -> (TestServer, FakeServer, tempfile::TempDir) {
    let fake = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &fake.base_url(), &fake.base_url());
    shopfloor_testkit::append(
        &dir.path().join("shopfloor.toml"),
        &format!(
            r#"
[models.embed]
provider = "openai-compatible"
kind = "embedding"
model = "fake-embed"
base_url = "{}"
price = {{ input_per_mtok = 0.02 }}
data_classes = ["public", "internal"]

[models.minilm]
provider = "local"
kind = "embedding"
model = "minilm"
data_classes = ["public", "internal"]

[policy.pii]
on_external = "redact"
on_store = "redact"
"#,
            fake.base_url()
        ),
    );
    let server = TestServer::start(dir.path(), test_config()).await;
    (server, fake, dir)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("a vector")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn texts_become_vectors_upstream_and_on_the_embedded_model_and_are_recorded() {
    let (server, fake, _dir) = start().await;
    let c = client();
    let key = server.keys.operator.clone();
    let url = server.url("/v1/embeddings");

    // An outside model: the texts reach it redacted; the vectors come back in order.
    let body = json!({"model": "embed", "input": ["reset my password", "mail dana.k@client.example"],
        "user": "end-user-7"});
    let response = c
        .post(&url)
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run_id = run_id(&response);
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["model"], "embed");
    assert_eq!(list["usage"]["prompt_tokens"], 8);
    assert_eq!(list["data"][1]["index"], 1);
    assert_eq!(floats(&list["data"][0]["embedding"]), [17.0, 3.0, 1.0]);
    let sent = fake.requests().last().unwrap().body.clone();
    assert_eq!(sent["model"], "fake-embed");
    assert_eq!(sent["input"][1], "mail [EMAIL_1]", "{sent}");
    let run = server.recorded(&run_id).await;
    assert_eq!(run.workflow, "gateway");
    assert_eq!(run.model.as_deref(), Some("embed"));
    assert_eq!(run.prompt_tokens, 8);
    assert!(run.cost_usd > 0.0);
    assert_eq!(run.output, Some(json!({"vectors": 2, "dimensions": 3})));
    assert!(!run.input.to_string().contains("dana.k@"), "{}", run.input);
    assert_eq!(run.caller.unwrap().user.as_deref(), Some("end-user-7"));

    // base64: the same floats, little-endian f32.
    let body = json!({"model": "embed", "input": "reset my password", "encoding_format": "base64"});
    let (status, list) = post(&c, &url, Some(&key), &body).await;
    assert_eq!(status, 200, "{list}");
    let encoded = list["data"][0]["embedding"].as_str().expect("base64 text");
    let bytes = base64_decode(encoded);
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(decoded, [17.0, 3.0, 1.0]);

    // The embedded MiniLM: 384 dimensions, near for near meanings.
    let body = json!({"model": "minilm", "input": [
        "The invoice was charged twice this month",
        "I was billed two times for my subscription",
        "The mobile app crashes when I open settings",
    ]});
    let (status, list) = post(&c, &url, Some(&key), &body).await;
    assert_eq!(status, 200, "{list}");
    let v: Vec<Vec<f64>> = (0..3)
        .map(|i| floats(&list["data"][i]["embedding"]))
        .collect();
    assert_eq!(v[0].len(), 384);
    let (near, far) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(
        near > far + 0.2,
        "billing pair {near:.3}, unrelated {far:.3}"
    );
    assert!(list["usage"]["prompt_tokens"].as_u64().unwrap() > 10);
    server.stop().await;
}

/// Standard base64, for the test's own check.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[tokio::test]
async fn wrong_models_and_inputs_are_refused_naming_the_field() {
    let (server, fake, _dir) = start().await;
    let c = client();
    let key = server.keys.operator.clone();
    let url = server.url("/v1/embeddings");
    let cases = [
        (json!({"model": "fast", "input": "x"}), 400, "model"),
        (json!({"model": "nope", "input": "x"}), 404, "model"),
        (
            json!({"model": "embed", "input": [101, 2023]}),
            400,
            "input",
        ),
        (json!({"model": "embed", "input": []}), 400, "input"),
        (
            json!({"model": "embed", "input": "x", "encoding_format": "int8"}),
            400,
            "encoding_format",
        ),
        (
            json!({"model": "minilm", "input": "x", "dimensions": 256}),
            400,
            "dimensions",
        ),
        (
            json!({"model": "embed", "input": "x", "truncate": true}),
            400,
            "truncate",
        ),
    ];
    let before = fake.request_count();
    for (body, status, param) in cases {
        let (got, error) = post(&c, &url, Some(&key), &body).await;
        assert_eq!(got, status, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
    assert_eq!(
        fake.request_count(),
        before,
        "nothing refused reached the upstream"
    );

    // An embedding model is not a chat model.
    let (status, error) = post(
        &c,
        &server.url("/v1/chat/completions"),
        Some(&key),
        &chat_body("embed", "hi"),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "model");
    // A viewer may not call models.
    let (status, _) = post(
        &c,
        &url,
        Some(&server.keys.viewer),
        &json!({"model": "embed", "input": "x"}),
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn the_official_python_sdk_embeds_through_the_gateway() {
    let (server, fake, _dir) = start().await;
    let seen = python_sdk_script(&server, "openai_embeddings.py", "embed").await;
    // The SDK asks for base64 by default and decodes it itself.
    assert_eq!(
        seen["default"],
        json!([[17.0, 3.0, 1.0], [4.0, 1.0, 1.0]]),
        "{seen}"
    );
    assert_eq!(seen["float"], json!([[17.0, 3.0, 1.0]]), "{seen}");
    assert_eq!(seen["minilm_dimensions"], 384);
    assert_eq!(seen["usage"], 8);
    let asked: Vec<Value> = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/embeddings"))
        .map(|r| r.body["encoding_format"].clone())
        .collect();
    assert!(
        asked.iter().all(|f| f == "float"),
        "upstream always gets floats: {asked:?}"
    );
    server.stop().await;
}

/// LangChain's `OpenAIEmbeddings` (langchain-openai), the embeddings of most retrieval
/// pipelines, against the gateway: documents, a query, and the embedded MiniLM.
#[tokio::test]
async fn langchain_embeds_through_the_gateway() {
    let (server, fake, _dir) = start().await;
    let before = fake.request_count();
    let seen = python_sdk_script(&server, "langchain_embeddings.py", "embed").await;
    assert_eq!(
        seen["documents"],
        json!([[17.0, 3.0, 1.0], [4.0, 1.0, 1.0]]),
        "{seen}"
    );
    assert_eq!(seen["query"], json!([17.0, 3.0, 1.0]), "{seen}");
    assert_eq!(seen["minilm_dimensions"], 384);
    let sent: Vec<Value> = fake.requests()[before..]
        .iter()
        .filter(|r| r.path.ends_with("/embeddings"))
        .map(|r| r.body["input"].clone())
        .collect();
    assert_eq!(
        sent,
        [
            json!(["reset my password", "help"]),
            json!(["reset my password"])
        ],
        "the texts reached the upstream as text"
    );
    server.stop().await;
}
