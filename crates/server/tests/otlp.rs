//! OTLP trace export, end to end: the real server with the exporter layer installed, a real
//! HTTP collector on 127.0.0.1 that records what it is sent. One test in a binary of its own,
//! because it installs the process-wide tracing subscriber.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shopfloor_server::otlp::{self, OtlpConfig};
use shopfloor_testkit::{FakeServer, Reply};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn text(span: &Value, key: &str) -> String {
    attribute(span, key)
        .and_then(|v| v["stringValue"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn spans_reach_the_collector_as_one_trace_under_the_callers_context_and_carry_no_text() {
    let collector = FakeServer::start(|_| Reply::Json(200, json!({}))).await;
    let (layer, exporter) = otlp::pipeline(OtlpConfig {
        endpoint: format!("http://{}", collector.addr()),
        service_name: "shopfloor-test".into(),
        headers: vec![("x-api-key".into(), "collector-key".into())],
    })
    .unwrap();
    tracing_subscriber::registry()
        .with(layer.with_filter(tracing_subscriber::filter::filter_fn(otlp::exported)))
        .init();
    let exporter = exporter.spawn();

    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let key = &server.keys.operator;

    // A workflow run, with personal data in its input, as part of the caller's trace.
    let response = c
        .post(server.url("/v1/workflows/triage/runs"))
        .bearer_auth(key)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"input": {"text": "bug reported by jane.doe@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let run_id = body["run_id"].as_str().unwrap().to_string();
    // A gateway call with no trace context: a trace of its own.
    let response = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "fast", "messages": [{"role": "user", "content": "call me on +44 20 7946 0958"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A streamed one: the run's span covers the route until the first event.
    let response = c
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "stream it"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let streamed = response.text().await.unwrap();
    assert!(streamed.contains("[DONE]"), "{streamed}");
    server.stop().await;
    exporter.shutdown(Duration::from_secs(10)).await;

    let posts = collector.requests();
    assert!(!posts.is_empty(), "the collector got nothing");
    let mut spans = Vec::new();
    for post in &posts {
        assert_eq!(post.method, "POST");
        assert_eq!(post.path, "/v1/traces");
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(post.header("x-api-key"), Some("collector-key"));
        let raw = String::from_utf8_lossy(&post.raw_body);
        // Names, ids and figures only: no input, prompt or answer text.
        for text in [
            "jane.doe",
            "bug reported",
            // Not "7946" alone: four digits turn up in nanosecond timestamps by chance.
            "20 7946 0958",
            "stream it",
            ANSWER,
            "Classify",
        ] {
            assert!(!raw.contains(text), "{text:?} reached the collector: {raw}");
        }
        for resource in post.body["resourceSpans"].as_array().unwrap() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .unwrap();
            assert_eq!(service["value"]["stringValue"], "shopfloor-test");
            for scope in resource["scopeSpans"].as_array().unwrap() {
                spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    for span in &spans {
        let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(start > 0 && start <= end, "{span}");
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16, "{span}");
        assert_eq!(span["traceId"].as_str().unwrap().len(), 32, "{span}");
    }
    let find = |name: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        spans
            .iter()
            .find(|s| s["name"] == name && pred(s))
            .unwrap_or_else(|| panic!("no {name} span among {spans:#?}"))
            .clone()
    };

    // request → run → attempt, all in the caller's trace.
    let request = find("request", &|s| {
        text(s, "http.route") == "/v1/workflows/{name}/runs"
    });
    assert_eq!(request["traceId"], TRACE_ID);
    assert_eq!(request["parentSpanId"], CALLER_SPAN);
    assert_eq!(request["kind"], 2, "server");
    assert_eq!(text(&request, "http.request.method"), "POST");
    assert_eq!(
        attribute(&request, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    assert!(!text(&request, "request_id").is_empty());
    let run = find("run", &|s| text(s, "run_id") == run_id);
    assert_eq!(run["traceId"], TRACE_ID);
    assert_eq!(run["parentSpanId"], request["spanId"]);
    assert_eq!(text(&run, "workflow"), "triage");
    assert_eq!(text(&run, "status"), "ok");
    assert_eq!(text(&run, "model"), "fast");
    assert_eq!(run["status"]["code"], 1);
    let attempt = find("attempt", &|s| s["parentSpanId"] == run["spanId"]);
    assert_eq!(attempt["traceId"], TRACE_ID);
    assert_eq!(attempt["kind"], 3, "client");
    assert_eq!(text(&attempt, "model"), "fast");
    assert_eq!(text(&attempt, "outcome"), "ok");
    assert_eq!(
        attribute(&attempt, "prompt_tokens").unwrap()["intValue"],
        "7"
    );
    // The call to the model carried the attempt as its parent.
    let carried: Vec<String> = upstream
        .requests()
        .iter()
        .filter_map(|r| r.header("traceparent").map(str::to_string))
        .collect();
    assert_eq!(
        carried.len(),
        3,
        "every model call carries one: {carried:?}"
    );
    let expected = format!("00-{TRACE_ID}-{}-01", attempt["spanId"].as_str().unwrap());
    assert!(carried.contains(&expected), "{expected} not in {carried:?}");

    // The gateway call: its own trace, with the same shape.
    let gateway_runs: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "run" && text(s, "workflow") == "gateway")
        .collect();
    assert_eq!(gateway_runs.len(), 2, "one plain, one streamed");
    for run in gateway_runs {
        assert_eq!(text(run, "model"), "fast");
        assert_eq!(text(run, "status"), "ok");
        assert!(!text(run, "run_id").is_empty());
    }
    let request = find("request", &|s| {
        text(s, "http.route") == "/v1/chat/completions"
    });
    assert_ne!(request["traceId"], TRACE_ID);
    assert!(request.get("parentSpanId").is_none(), "{request}");
    let run = find("run", &|s| s["parentSpanId"] == request["spanId"]);
    assert_eq!(text(&run, "workflow"), "gateway");
    assert_eq!(run["traceId"], request["traceId"]);
    let attempt = find("attempt", &|s| s["parentSpanId"] == run["spanId"]);
    assert_eq!(text(&attempt, "provider"), "openai-compatible");
}
