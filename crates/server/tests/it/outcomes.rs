//! The outcome API through the real server: a builder records the KPI, a viewer reads the
//! outcomes, an operator may do neither, and bad values are refused naming the field.

use crate::common;

use common::*;
use serde_json::json;
use shopfloor_testkit::FakeServer;

#[tokio::test]
async fn kpi_values_are_recorded_and_read_back_with_the_outcomes() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    shopfloor_testkit::append(
        &dir.path().join("workflows/triage.toml"),
        "\n[outcome]\nkpi = \"minutes to first response\"\nbaseline = 42\ntarget = 15\nminutes_saved_per_accepted = 3\n",
    );
    let server = TestServer::start(dir.path(), test_config()).await;
    let (keys, c) = (server.keys.clone(), client());
    let url = server.url("/v1/workflows/triage/outcomes");

    let body = json!({"value": 28.5, "at": "2026-12-01", "note": "November"});
    let (status, _) = post(&c, &url, Some(&keys.operator), &body).await;
    assert_eq!(status, 403);
    let (status, recorded) = post(&c, &url, Some(&keys.builder), &body).await;
    assert_eq!(status, 201, "{recorded}");
    assert_eq!(recorded["recorded_by"], "bob");
    let (status, bad) = post(
        &c,
        &url,
        Some(&keys.builder),
        &json!({"value": 1, "at": "yesterday"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["param"], "at", "{bad}");
    // A value no KPI has, and a date not yet come, are refused naming the field; nothing of
    // them is recorded.
    for (body, field) in [
        (json!({"value": 1e308}), "value"),
        (json!({"value": -2e15}), "value"),
        (json!({"value": 20, "at": "9999-12-31"}), "at"),
    ] {
        let (status, bad) = post(&c, &url, Some(&keys.builder), &body).await;
        assert_eq!(status, 400, "{body}: {bad}");
        assert_eq!(bad["error"]["param"], field, "{bad}");
    }
    // Unknown fields are refused by name, not ignored.
    let (status, bad) = post(
        &c,
        &url,
        Some(&keys.builder),
        &json!({"value": 20, "date": "2026-12-01"}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["error"]["param"], "date", "{bad}");

    let (status, report) = get(&c, &url, Some(&keys.viewer)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["kpi"]["latest"]["value"], 28.5,
        "only the good value was recorded"
    );
    assert_eq!(report["kpi"]["progress"], 0.5);
    assert_eq!(report["total"]["runs"], 0);
    let (status, _) = get(
        &c,
        &server.url("/v1/workflows/ticket/outcomes"),
        Some(&keys.operator),
    )
    .await;
    assert_eq!(status, 403);
    let (status, missing) = post(
        &c,
        &server.url("/v1/workflows/ticket/outcomes"),
        Some(&keys.builder),
        &json!({"value": 1}),
    )
    .await;
    assert_eq!(status, 400, "a workflow without [outcome]: {missing}");
    server.stop().await;
}
