//! Who may call what: every route the router serves against every role, missing, unknown and
//! revoked keys, a key that may read only what it made, the request body limit, and requests
//! that match no route.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shopfloor_core::access::{Permission, Role};
use shopfloor_server::{Access, Route, ServerConfig, ROUTES};
use shopfloor_testkit::FakeServer;

/// The ids a request needs: a workflow run, a batch, a held run, a gateway response.
struct Made {
    run_id: String,
    batch_id: String,
    held_id: String,
    response_id: String,
}

/// A request to `route` that succeeds for a key allowed it: (path, body).
fn request_for(route: &Route, made: &Made) -> (String, Option<Value>) {
    let Made {
        run_id,
        batch_id,
        held_id,
        response_id,
    } = made;
    let path = route
        .path
        .replace("/v1/models/{id}", "/v1/models/fast")
        .replace(
            "/v1/responses/{id}",
            &format!("/v1/responses/{response_id}"),
        )
        .replace("{name}", "triage")
        .replace("{run_id}", held_id)
        .replace(
            "{id}",
            if route.path.contains("batches") {
                batch_id
            } else {
                run_id
            }
            .as_str(),
        );
    let body = match route.path {
        "/v1/chat/completions" => Some(chat_body("fast", "Hi")),
        "/v1/embeddings" => Some(json!({"model": "embed", "input": "Hi"})),
        "/v1/responses" => Some(json!({"model": "fast", "input": "Hi"})),
        "/v1/messages" => Some(json!({"model": "fast", "max_tokens": 16,
            "messages": [{"role": "user", "content": "Hi"}]})),
        "/v1/messages/count_tokens" => Some(json!({"model": "claude",
            "messages": [{"role": "user", "content": "Hi"}]})),
        "/v1/workflows/{name}/runs" => Some(json!({"input": {"text": "billing"}})),
        "/v1/workflows/{name}/batches" => Some(json!({"inputs": [{"text": "bug"}]})),
        "/v1/reviews/{run_id}/edit" => Some(json!({"output": "bug"})),
        "/v1/reviews/{run_id}/reject" => Some(json!({"reason": "other"})),
        "/v1/workflows/{name}/outcomes" if route.method == reqwest::Method::POST => {
            Some(json!({"value": 12.5}))
        }
        "/v1/workflows/{name}/experiments" if route.method == reqwest::Method::POST => Some(
            json!({"variant": "warm", "hypothesis": "warmer reads better", "metric": "acceptance_rate"}),
        ),
        "/v1/workflows/{name}/experiments/stop" => Some(json!({"decision": "cut"})),
        path if path.starts_with("/v1/reviews/") && route.method == reqwest::Method::POST => {
            Some(json!({}))
        }
        _ => None,
    };
    (path, body)
}

/// An error in the form of the route's API: Anthropic's on `/v1/messages`, else OpenAI's.
fn assert_error(route: &Route, response: &Value, kind: &str) {
    if route.path.starts_with("/v1/messages") {
        assert_eq!(response["type"], "error", "{response}");
        assert_eq!(response["error"]["type"], kind, "{response}");
        assert!(response["error"]["message"].is_string(), "{response}");
    } else {
        assert_openai_error(response, kind);
    }
}

async fn call(
    c: &reqwest::Client,
    server: &TestServer,
    route: &Route,
    path: &str,
    body: &Option<Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let url = server.url(path);
    match (route.method.as_str(), body) {
        ("POST", Some(body)) => post(c, &url, key, body).await,
        ("GET", None) => get(c, &url, key).await,
        other => panic!("no request for {other:?}"),
    }
}

#[tokio::test]
async fn every_route_against_every_role() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    // A KPI to record values of.
    shopfloor_testkit::append(
        &dir.path().join("workflows/triage.toml"),
        "\n[outcome]\nkpi = \"minutes to triage\"\nminutes_saved_per_accepted = 2\n",
    );
    // A model for /v1/embeddings.
    shopfloor_testkit::append(
        &dir.path().join("shopfloor.toml"),
        &format!(
            "\n[models.embed]\nprovider = \"openai-compatible\"\nkind = \"embedding\"\nmodel = \"e\"\nbase_url = \"{}\"\ndata_classes = [\"internal\"]\n",
            upstream.base_url()
        ),
    );
    // A model that counts tokens, for /v1/messages/count_tokens.
    shopfloor_testkit::append(
        &dir.path().join("shopfloor.toml"),
        &claude_model(&upstream.base_url()),
    );
    // A variant whose eval passed, to start an experiment of (and stop it).
    shopfloor_testkit::append(
        &dir.path().join("workflows/triage.toml"),
        "\n[eval]\ndataset = \"cases.jsonl\"\nscorers = [\"label_accuracy\"]\ngate = { label_accuracy = 0.5 }\n\n[variants.warm]\nroute = { temperature = 0.5 }\n",
    );
    std::fs::write(
        dir.path().join("cases.jsonl"),
        r#"{"id": "c1", "input": {"text": "bug"}, "expected": "bug"}"#,
    )
    .unwrap();
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let eval = server
        .state
        .engine
        .run_eval(
            &shopfloor_engine::EvalRequest {
                workflow: "triage".into(),
                variant: Some("warm".into()),
                concurrency: 1,
                ..Default::default()
            },
            &(),
            std::future::pending(),
        )
        .await
        .unwrap();
    assert!(eval.passed);

    // Something to read: a run and a batch made by the admin.
    let (_, run) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        Some(&server.keys.admin),
        &json!({"input": {"text": "bug"}}),
    )
    .await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (_, batch) = post(
        &c,
        &server.url("/v1/workflows/triage/batches"),
        Some(&server.keys.admin),
        &json!({"inputs": [{"text": "bug"}]}),
    )
    .await;
    let batch_id = batch["batch_id"].as_str().unwrap().to_string();
    // Something to review: a held run an operator asked for.
    let (_, held) = post(
        &c,
        &server.url("/v1/workflows/approve/runs"),
        Some(&server.keys.operator),
        &json!({"input": {"text": "billing"}}),
    )
    .await;
    let held_id = held["run_id"].as_str().unwrap().to_string();
    // A response to read back: a gateway call the admin made.
    let (_, response) = post(
        &c,
        &server.url("/v1/responses"),
        Some(&server.keys.admin),
        &json!({"model": "fast", "input": "Hi"}),
    )
    .await;
    let made = Made {
        run_id,
        batch_id,
        held_id,
        response_id: response["id"].as_str().unwrap().to_string(),
    };
    server.state.engine.flush().await;

    // The router is built from ROUTES and nothing else (`shopfloor_server::app`), so these are
    // the routes it serves; each answers its method and refuses another with 405, which
    // only a route the router serves does (a path it does not serve is a 404).
    let mut checked = 0;
    for route in ROUTES.iter() {
        let (path, body) = request_for(route, &made);
        // No route is served for PATCH, so it is another method than each path's own (a path
        // can be served for several methods, e.g. GET and POST of outcomes).
        let response = c
            .request(reqwest::Method::PATCH, server.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{route:?} is not served at {path}");
        let (status, response) = call(&c, &server, route, &path, &body, None).await;
        match route.access {
            Access::Public => assert_eq!(
                status, 200,
                "{} {path} without a key: {response}",
                route.method
            ),
            _ => {
                assert_eq!(
                    status, 401,
                    "{} {path} without a key: {response}",
                    route.method
                );
                assert_error(route, &response, "authentication_error");
            }
        }
        for &(name, role) in Role::CHOICES {
            let (status, response) = call(
                &c,
                &server,
                route,
                &path,
                &body,
                Some(server.keys.for_role(role)),
            )
            .await;
            let allowed = match route.access {
                Access::Public => true,
                Access::Needs(p) | Access::NeedsOrOwn(p) => role.allows(p),
            };
            // The first allowed reviewer decides the one item; later decisions on it are
            // refused as conflicts (409), which is past the permission check.
            let decides = route.path.starts_with("/v1/reviews/{run_id}/");
            if allowed {
                assert!(
                    (200..300).contains(&status) || (decides && status == 409),
                    "{name} on {} {path}: {status} {response}",
                    route.method
                );
            } else if matches!(route.access, Access::NeedsOrOwn(_))
                && (role.allows(Permission::RunWorkflows) || role.allows(Permission::CallModels))
            {
                // A read-own route for something the admin made: answered as if it did not
                // exist, so that another key cannot tell a real id from a made-up one.
                assert_eq!(status, 404, "{name} on {} {path}: {response}", route.method);
                assert_error(route, &response, "not_found_error");
            } else {
                assert_eq!(status, 403, "{name} on {} {path}: {response}", route.method);
                assert_error(route, &response, "permission_error");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * Role::CHOICES.len());

    // An operator may read what it made itself, and nothing else.
    let (_, own) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        Some(&server.keys.operator),
        &json!({"input": {"text": "bug"}}),
    )
    .await;
    let own_run = own["run_id"].as_str().unwrap();
    server.state.engine.flush().await;
    let (status, _) = get(
        &c,
        &server.url(&format!("/v1/runs/{own_run}")),
        Some(&server.keys.operator),
    )
    .await;
    assert_eq!(status, 200);
    let (_, own_batch) = post(
        &c,
        &server.url("/v1/workflows/triage/batches"),
        Some(&server.keys.operator),
        &json!({"inputs": [{"text": "bug"}]}),
    )
    .await;
    let own_batch = own_batch["batch_id"].as_str().unwrap();
    let (status, _) = get(
        &c,
        &server.url(&format!("/v1/batches/{own_batch}")),
        Some(&server.keys.operator),
    )
    .await;
    assert_eq!(status, 200);
    // A viewer reads everything but runs nothing.
    assert!(
        Role::Viewer.allows(Permission::ReadRuns) && !Role::Viewer.allows(Permission::CallModels)
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_and_revoked_keys_are_refused() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let url = server.url("/v1/models");

    let (status, body) = get(&c, &url, Some("sf_not_a_key")).await;
    assert_eq!(status, 401);
    assert_openai_error(&body, "authentication_error");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let response = c
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let (status, _) = get(&c, &url, Some(&server.keys.operator)).await;
    assert_eq!(status, 200);
    server
        .state
        .engine
        .revoke_key("billing-service", "test")
        .await
        .expect("revoke");
    let (status, body) = get(&c, &url, Some(&server.keys.operator)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_within_the_cache_ttl() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let config = ServerConfig {
        key_cache_ttl: Duration::from_millis(300),
        ..test_config()
    };
    let server = TestServer::start(dir.path(), config).await;
    let c = client();
    let url = server.url("/v1/models");
    assert_eq!(get(&c, &url, Some(&server.keys.operator)).await.0, 200);
    server
        .state
        .engine
        .revoke_key("billing-service", "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&c, &url, Some(&server.keys.operator)).await.0, 401);
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_413() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let config = ServerConfig {
        max_body_bytes: 16 * 1024,
        ..test_config()
    };
    let server = TestServer::start(dir.path(), config).await;
    let c = client();
    let url = server.url("/v1/chat/completions");
    let (status, body) = post(
        &c,
        &url,
        Some(&server.keys.operator),
        &chat_body("fast", &"x".repeat(20 * 1024)),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_eq!(upstream.request_count(), 0);
    let (status, _) = post(
        &c,
        &url,
        Some(&server.keys.operator),
        &chat_body("fast", &"x".repeat(8 * 1024)),
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_request_that_matches_no_route_is_observed_like_any_other() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let c = client();
    let response = c
        .get(server.url("/v1/no-such-thing"))
        .header("x-request-id", "lost-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "lost-123");
    let body: Value = response.json().await.unwrap();
    assert_openai_error(&body, "not_found_error");
    let response = c.get(server.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        response.headers().contains_key("x-request-id"),
        "a made-up request id"
    );
    let (status, _) = get(&c, &server.url("/healthz"), None).await;
    assert_eq!(status, 200);
    let metrics = server.metrics().await;
    for line in [
        "shopfloor_http_requests_total{route=\"unmatched\",status=\"404\"} 2\n",
        "shopfloor_http_requests_total{route=\"/healthz\",status=\"200\"} 1\n",
        "shopfloor_http_request_duration_seconds_count{route=\"unmatched\"} 2\n",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    server.stop().await;
}

/// An API-only replica (`serve --no-dashboard`): the pages answer 404 like any unknown path,
/// the APIs as before.
#[tokio::test]
async fn without_the_dashboard_only_the_apis_answer() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let config = ServerConfig {
        dashboard: false,
        ..test_config()
    };
    let server = TestServer::start(dir.path(), config).await;
    let c = client();
    for page in ["/", "/login", "/runs", "/assets/dashboard.css"] {
        let (status, body) = get(&c, &server.url(page), None).await;
        assert_eq!(status, 404, "{page}: {body}");
    }
    let models = server.url("/v1/models");
    assert_eq!(get(&c, &models, Some(&server.keys.operator)).await.0, 200);
    server.stop().await;

    let other = tempfile::tempdir().unwrap();
    write_project(other.path(), &upstream.base_url(), &upstream.base_url());
    let with = TestServer::start(other.path(), test_config()).await;
    assert_eq!(get(&c, &with.url("/login"), None).await.0, 200);
    with.stop().await;
}
