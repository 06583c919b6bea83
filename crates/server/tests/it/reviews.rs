//! The review loop through the real server: a high-risk run is pending; a reviewer key claims
//! and decides it; the caller then reads the released output (or the rejection) through the
//! workflow API. Corrections are checked against the output contract, reasons against the
//! workflow's list, and a reviewer never decides a run their own key requested.

use crate::common;

use common::*;
use serde_json::{json, Value};
use shopfloor_testkit::FakeServer;

/// A server over the test project, with the upstream and folder it needs kept alive.
async fn start() -> (FakeServer, tempfile::TempDir, TestServer) {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    (upstream, dir, server)
}

async fn held_run(server: &TestServer, key: &str, text: &str) -> String {
    let (status, body) = post(
        &client(),
        &server.url("/v1/workflows/approve/runs"),
        Some(key),
        &json!({"input": {"text": text}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["run_id"].as_str().unwrap().to_string()
}

async fn act(
    server: &TestServer,
    key: &str,
    run_id: &str,
    action: &str,
    body: Value,
) -> (u16, Value) {
    post(
        &client(),
        &server.url(&format!("/v1/reviews/{run_id}/{action}")),
        Some(key),
        &body,
    )
    .await
}

#[tokio::test]
async fn a_held_output_is_approved_by_a_reviewer_and_then_read_by_its_caller() {
    let (_upstream, _dir, server) = start().await;
    let keys = server.keys.clone();
    let c = client();
    let run_id = held_run(&server, &keys.operator, "billing question").await;

    // The queue needs the review permission.
    let (status, _) = get(&c, &server.url("/v1/reviews"), Some(&keys.operator)).await;
    assert_eq!(status, 403);
    let (status, body) = get(
        &c,
        &server.url("/v1/reviews?workflow=approve"),
        Some(&keys.reviewer),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["run_id"], run_id.as_str());
    assert_eq!(items[0]["status"], "pending");
    assert_eq!(items[0]["reason"], "high_risk");
    assert_eq!(items[0]["output"], "billing");

    // A correction must meet the contract; a reason must be one of the workflow's.
    let (status, body) = act(
        &server,
        &keys.reviewer,
        &run_id,
        "edit",
        json!({"output": "refund"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_output");
    let (status, body) = act(
        &server,
        &keys.reviewer,
        &run_id,
        "reject",
        json!({"reason": "boring"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_reason");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("wrong_label, unsafe, hallucination, other"));

    // Claimed by the reviewer: nobody else may decide it meanwhile.
    let (status, body) = act(&server, &keys.reviewer, &run_id, "claim", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["input"], json!({"text": "billing question"}));
    let (status, body) = act(&server, &keys.admin, &run_id, "approve", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "claimed_by_other");

    let (status, body) = act(
        &server,
        &keys.reviewer,
        &run_id,
        "approve",
        json!({"note": "fine"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    let (status, body) = act(&server, &keys.reviewer, &run_id, "approve", json!({})).await;
    assert_eq!(status, 409, "a decided item stays decided: {body}");

    let (status, body) = get(
        &c,
        &server.url(&format!("/v1/runs/{run_id}")),
        Some(&keys.operator),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["output"], "billing");
    assert_eq!(body["review"]["decision"], "approve");
    assert_eq!(body["review"]["status"], "approved");
    assert!(body["review"]["by"].is_string(), "{body}");

    let (status, stats) = get(&c, &server.url("/v1/reviews/stats"), Some(&keys.reviewer)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (stats["pending"].as_u64(), stats["approved"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(stats["acceptance_rate"], 1.0);
    server.stop().await;
}

#[tokio::test]
async fn edits_release_the_correction_and_rejects_release_nothing() {
    let (_upstream, _dir, server) = start().await;
    let keys = server.keys.clone();
    let c = client();
    let edited = held_run(&server, &keys.operator, "billing wrongly").await;
    let rejected = held_run(&server, &keys.operator, "other stuff").await;

    // The queue hands out the oldest first, with its run.
    let (status, next) = post(
        &c,
        &server.url("/v1/reviews/next"),
        Some(&keys.reviewer),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["item"]["run_id"], edited.as_str());

    let (status, body) = act(
        &server,
        &keys.reviewer,
        &edited,
        "edit",
        json!({"output": "Bug", "note": "a crash"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "edited");
    assert_eq!(
        body["corrected_output"], "bug",
        "labels are matched as the contract matches them"
    );
    let (_, run) = get(
        &c,
        &server.url(&format!("/v1/runs/{edited}")),
        Some(&keys.operator),
    )
    .await;
    assert_eq!(
        (run["status"].clone(), run["output"].clone()),
        (json!("ok"), json!("bug"))
    );

    let (status, body) = act(
        &server,
        &keys.reviewer,
        &rejected,
        "reject",
        json!({"reason": "unsafe"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, run) = get(
        &c,
        &server.url(&format!("/v1/runs/{rejected}")),
        Some(&keys.operator),
    )
    .await;
    assert_eq!(run["status"], "rejected");
    assert!(run["output"].is_null(), "{run}");
    assert_eq!(run["review"]["reject_reason"], "unsafe");

    let (status, _) = post(
        &c,
        &server.url("/v1/reviews/next"),
        Some(&keys.reviewer),
        &json!({}),
    )
    .await;
    assert_eq!(status, 204, "the queue is empty");
    server.stop().await;
}

#[tokio::test]
async fn a_reviewer_never_decides_a_run_their_own_key_requested() {
    let (_upstream, _dir, server) = start().await;
    let keys = server.keys.clone();
    // The admin key may run workflows and review: not its own run.
    let run_id = held_run(&server, &keys.admin, "billing").await;
    let (status, body) = act(&server, &keys.admin, &run_id, "approve", json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "own_run");
    let (status, _) = post(
        &client(),
        &server.url("/v1/reviews/next"),
        Some(&keys.admin),
        &json!({}),
    )
    .await;
    assert_eq!(status, 204, "nor is it handed the run to review");
    let (status, body) = act(&server, &keys.reviewer, &run_id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = act(&server, &keys.reviewer, "no-such-run", "approve", json!({})).await;
    assert_eq!(status, 404, "{body}");
    server.stop().await;
}

/// The model's own answer of a rejected or corrected run is for roles that review: every other
/// role reads the released output only, through the API and the dashboard (issue 25 item 1).
#[tokio::test]
async fn a_rejected_or_corrected_answer_is_shown_only_to_reviewers() {
    use shopfloor_core::access::Role;
    let (_upstream, _dir, server) = start().await;
    let keys = server.keys.clone();
    let c = client();
    let rejected = held_run(&server, &keys.operator, "billing question").await;
    let corrected = held_run(&server, &keys.operator, "billing again").await;
    let (status, body) = act(
        &server,
        &keys.reviewer,
        &rejected,
        "reject",
        json!({"reason": "unsafe"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = act(
        &server,
        &keys.reviewer,
        &corrected,
        "edit",
        json!({"output": "bug"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    for role in [Role::Operator, Role::Viewer, Role::Builder] {
        let key = keys.for_role(role);
        let (status, body) = get(&c, &server.url(&format!("/v1/runs/{rejected}")), Some(key)).await;
        assert_eq!(status, 200, "{role}: {body}");
        assert!(
            !body.to_string().contains("billing\""),
            "{role} reads the rejected answer: {body}"
        );
        assert_eq!(body["withheld"], "rejected", "{role}: {body}");
        assert_eq!(body["output"], Value::Null, "{role}: {body}");
        let (status, body) =
            get(&c, &server.url(&format!("/v1/runs/{corrected}")), Some(key)).await;
        assert_eq!(status, 200, "{role}: {body}");
        assert_eq!(body["output"], "bug", "{role}: {body}");
        assert_eq!(body["withheld"], "corrected", "{role}: {body}");
        assert!(
            !body.to_string().contains("billing\""),
            "{role} reads the overridden answer: {body}"
        );
    }
    for role in [Role::Reviewer, Role::Admin] {
        let key = keys.for_role(role);
        let (_, body) = get(&c, &server.url(&format!("/v1/runs/{rejected}")), Some(key)).await;
        assert_eq!(body["raw_output"], "billing", "{role}: {body}");
        let (_, body) = get(&c, &server.url(&format!("/v1/runs/{corrected}")), Some(key)).await;
        assert_eq!(body["raw_output"], "billing", "{role}: {body}");
        assert_eq!(body["output"], "bug", "{role}: {body}");
    }

    // The dashboard's run page follows the same rule.
    let page = |role: Role, id: String| {
        let (c, server, key) = (c.clone(), &server, keys.for_role(role).to_string());
        async move {
            let session = server
                .state
                .engine
                .sign_in_with_key(&key)
                .await
                .unwrap()
                .expect("a session");
            let r = c
                .get(server.url(&format!("/runs/{id}")))
                .header("cookie", format!("sf_session={}", session.secret))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{role} /runs/{id}");
            r.text().await.unwrap()
        }
    };
    for role in [Role::Viewer, Role::Builder] {
        let html = page(role, rejected.clone()).await;
        assert!(
            html.contains("Rejected by review: not released"),
            "{role}: {html}"
        );
        assert!(
            !html.contains("&quot;billing&quot;") && !html.contains("\"billing\""),
            "{role}: {html}"
        );
        assert!(!html.contains(">billing<"), "{role}: {html}");
        let html = page(role, corrected.clone()).await;
        assert!(
            html.contains("Released as corrected by review"),
            "{role}: {html}"
        );
        assert!(!html.contains(">billing<"), "{role}: {html}");
    }
    let html = page(Role::Reviewer, rejected.clone()).await;
    assert!(
        html.contains("The model&#x27;s own answer") || html.contains("The model's own answer"),
        "{html}"
    );
    assert!(html.contains(">billing<"), "{html}");
    server.stop().await;
}

/// An answer that breaks the contract of a workflow that holds outputs is not a 502 the caller
/// reads past review: it waits for a reviewer, who corrects or rejects it; there is nothing to
/// approve (issue 25 item 2).
#[tokio::test]
async fn an_invalid_answer_of_a_held_workflow_waits_for_a_reviewer() {
    let (_upstream, _dir, server) = start().await;
    let keys = server.keys.clone();
    let c = client();
    // `approve` is high risk; "CANARY7Q" is not one of its labels.
    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/approve/runs"),
        Some(&keys.operator),
        &json!({"input": {"text": "CANARY7Q"}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "held", "{body}");
    assert!(!body.to_string().contains("CANARY7Q"), "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();

    // The reviewer reads the answer in the queue.
    let (status, body) = get(
        &c,
        &server.url(&format!("/v1/reviews/{run_id}")),
        Some(&keys.reviewer),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["item"]["reason"], "invalid_output", "{body}");
    assert_eq!(body["run"]["raw_output"], "CANARY7Q", "{body}");
    // Nothing to approve.
    let (status, body) = act(&server, &keys.reviewer, &run_id, "approve", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "edit_or_reject", "{body}");
    // A correction releases a valid output.
    let (status, body) = act(
        &server,
        &keys.reviewer,
        &run_id,
        "edit",
        json!({"output": "bug"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(
        &c,
        &server.url(&format!("/v1/runs/{run_id}")),
        Some(&keys.operator),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["output"], "bug", "{body}");
    assert_eq!(body["error"], Value::Null, "{body}");
    // The caller's own input is the canary here; nothing else carries it.
    let mut shown = body.clone();
    shown["input"] = Value::Null;
    assert!(!shown.to_string().contains("CANARY7Q"), "{body}");

    // A workflow that holds nothing still answers 502 (its callers handle invalid outputs).
    let (status, body) = post(
        &c,
        &server.url("/v1/workflows/triage/runs"),
        Some(&keys.operator),
        &json!({"input": {"text": "CANARY7Q"}}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    server.stop().await;
}

/// Opening the review pages claims nothing (a link, a prefetch or a crawler used to reserve an
/// item in the reviewer's name); taking the next item or holding one is a form post with the
/// session's CSRF token, and a decision takes the next item (issue 25 item 8).
#[tokio::test]
async fn opening_review_pages_claims_nothing_and_a_posted_form_does() {
    use shopfloor_core::access::Role;
    let (_upstream, _dir, server) = start().await;
    let keys = server.keys.clone();
    let run_id = held_run(&server, &keys.operator, "billing question").await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = server.url("").trim_end_matches('/').to_string();
    let session = |role: Role| {
        let key = keys.for_role(role).to_string();
        let engine = server.state.engine.clone();
        async move {
            let session = engine.sign_in_with_key(&key).await.unwrap().unwrap();
            (
                format!("sf_session={}", session.secret),
                session.record.csrf_token.clone(),
            )
        }
    };
    let page = |cookie: String, path: String| {
        let (browser, url) = (browser.clone(), server.url(&path));
        async move {
            let r = browser
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.unwrap()
        }
    };
    let form = |cookie: String, path: String, fields: Vec<(&'static str, String)>| {
        let (browser, url, origin) = (browser.clone(), server.url(&path), origin.clone());
        async move {
            let r = browser
                .post(url)
                .header("cookie", cookie)
                .header("origin", origin)
                .form(&fields)
                .send()
                .await
                .unwrap();
            let to = r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), to)
        }
    };
    let holder = || async {
        let (status, view) = get(
            &client(),
            &server.url(&format!("/v1/reviews/{run_id}")),
            Some(&keys.reviewer),
        )
        .await;
        assert_eq!(status, 200, "{view}");
        view["item"]["claimed_by"].clone()
    };

    let (rita, rita_csrf) = session(Role::Reviewer).await;
    let queue = page(rita.clone(), "/review".into()).await;
    assert!(queue.contains("id=\"next-form\""), "{queue}");
    assert!(queue.contains(&run_id), "the queue lists the item: {queue}");
    let item = page(rita.clone(), format!("/review/{run_id}")).await;
    assert!(item.contains("id=\"claim-form\""), "{item}");
    assert!(
        item.contains("id=\"approve-form\""),
        "a free item may be decided: {item}"
    );
    assert_eq!(
        holder().await,
        Value::Null,
        "opening pages claimed the item"
    );

    // Without the session's token the post is refused and claims nothing.
    let (status, _) = form(rita.clone(), "/review/next".into(), vec![]).await;
    assert_eq!(status, 403);
    assert_eq!(holder().await, Value::Null);

    let (status, to) = form(
        rita.clone(),
        "/review/next".into(),
        vec![("csrf", rita_csrf.clone())],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(to.as_deref(), Some(format!("/review/{run_id}").as_str()));
    let held_by = holder().await;
    assert!(
        held_by.is_string(),
        "taking the next item claims it: {held_by}"
    );
    let item = page(rita.clone(), format!("/review/{run_id}")).await;
    assert!(!item.contains("id=\"claim-form\""), "{item}");
    assert!(item.contains("id=\"approve-form\""), "{item}");

    // Someone else sees who holds it, and cannot decide it meanwhile.
    let (ada, _) = session(Role::Admin).await;
    let item = page(ada, format!("/review/{run_id}")).await;
    let name = held_by.as_str().unwrap();
    assert!(
        item.contains(&format!("{name} is reviewing this item")),
        "{item}"
    );
    assert!(!item.contains("id=\"approve-form\""), "{item}");
    assert!(!item.contains("id=\"claim-form\""), "{item}");

    // A decision takes the next item: none left, back to the queue saying so.
    let (status, to) = form(
        rita.clone(),
        format!("/review/{run_id}/approve"),
        vec![("csrf", rita_csrf.clone())],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        to.as_deref(),
        Some(format!("/review?done={run_id}&none=true").as_str())
    );
    let queue = page(rita, format!("/review?done={run_id}&none=true")).await;
    assert!(queue.contains("id=\"none-left\""), "{queue}");
    assert!(!queue.contains("id=\"next-form\""), "{queue}");
    server.stop().await;
}
