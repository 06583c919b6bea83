//! The dashboard in a real browser: `shopfloor serve` on a seeded project (runs held for
//! review, two evals, KPI values), one-time sign-in links from `shopfloor dashboard link`, and
//! `browser/dashboard.mjs` driving Debian's Chromium through playwright-core. Screenshots of
//! every page, light and dark, are left in `target/dashboard-screenshots/` to look at.
//!
//! Needs `chromium` (Debian's package) and `npm ci` in `tests/browser/`; `.ci/run` installs
//! both. Without them the test fails and says so: a browser test that skips is no test.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{create_named_key, keyword_router, scaffold, shopfloor, text, Replica};
use serde_json::{json, Value};
use shopfloor_testkit::FakeServer;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn link(dir: &Path, base: &str, name: &str, role: &str) -> String {
    let out = shopfloor(
        dir,
        &[
            "dashboard",
            "link",
            "--name",
            name,
            "--role",
            role,
            "--url",
            base,
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let url = text(&out).0.trim().to_string();
    assert!(
        url.starts_with(&format!("{base}/login?token=sfl_")),
        "{url}"
    );
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_sign_in_pages_filters_csv_review_by_keyboard_and_roles() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium chromium-driver)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in {}",
        browser_dir().display()
    );
    let upstream = FakeServer::start(keyword_router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &upstream.base_url());
    let workflow = dir.path().join("workflows/ticket-triage.toml");
    let toml = std::fs::read_to_string(&workflow)
        .unwrap()
        .replace("risk = \"medium\"", "risk = \"high\"");
    std::fs::write(&workflow, toml).unwrap();

    // Two evals (the first the baseline) and KPI values over three weeks.
    let mut evals = Vec::new();
    for i in 0..2 {
        let json = dir.path().join(format!("eval-{i}.json"));
        let out = shopfloor(
            dir.path(),
            &[
                "eval",
                "ticket-triage",
                "--no-cache",
                "--json",
                json.to_str().unwrap(),
            ],
        );
        let report: Value = std::fs::read_to_string(&json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| panic!("eval --json: {:?}", text(&out)));
        evals.push(report["eval_id"].as_str().unwrap().to_string());
    }
    let out = shopfloor(dir.path(), &["evals", "baseline", &evals[0]]);
    assert!(out.status.success(), "{:?}", text(&out));
    for (value, at) in [
        ("24", "2026-11-09"),
        ("21", "2026-11-16"),
        ("17.5", "2026-11-23"),
    ] {
        let out = shopfloor(
            dir.path(),
            &[
                "outcomes",
                "record",
                "ticket-triage",
                "--value",
                value,
                "--at",
                at,
            ],
        );
        assert!(out.status.success(), "{:?}", text(&out));
    }

    let ops = create_named_key(dir.path(), None, "ops", "operator");
    let reader = create_named_key(dir.path(), None, "auditor", "viewer");
    let replica = Replica::start(dir.path(), None, &[], "serve.log");
    let client = reqwest::Client::new();
    let bodies = [
        "I was charged twice",
        "the app shows an error",
        "reset my password",
    ];
    let mut held = Vec::new();
    for i in 0..5 {
        let response = client
            .post(format!("{}/v1/workflows/ticket-triage/runs", replica.base))
            .bearer_auth(&ops)
            .json(&json!({"input": {"subject": format!("ticket {i}"), "body": bodies[i % 3]}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "a high-risk run waits for review");
        let body: Value = response.json().await.unwrap();
        held.push(body["run_id"].as_str().unwrap().to_string());
    }
    let store = common::open_store(dir.path()).await;
    let count = |status: Option<shopfloor_store::RunStatus>| {
        let store = store.clone();
        async move {
            store
                .list_runs(&shopfloor_store::RunFilter {
                    workflow: Some("ticket-triage".into()),
                    status,
                    limit: Some(100_000),
                    ..Default::default()
                })
                .await
                .unwrap()
        }
    };
    // The server writes runs within 50 ms of their end: wait for the last of the API's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let all = loop {
        let all = count(None).await;
        if held.iter().all(|id| all.iter().any(|r| &r.id == id)) {
            break all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the held runs were not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // An eval of a high-risk workflow holds its runs too (never queued for review).
    let held_runs = count(Some(shopfloor_store::RunStatus::Held)).await.len();

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    let run = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .current_dir(browser_dir())
        .env("BASE", &replica.base)
        .env(
            "ADMIN_LINK",
            link(dir.path(), &replica.base, "ada", "admin"),
        )
        .env(
            "VIEWER_LINK",
            link(dir.path(), &replica.base, "vera", "viewer"),
        )
        .env("API_KEY", &reader)
        .env("WORKFLOW", "ticket-triage")
        .env("EVAL_A", &evals[0])
        .env("EVAL_B", &evals[1])
        .env("RUN_ID", &all[all.len() - 1].id)
        .env("RUNS", all.len().to_string())
        .env("HELD", held_runs.to_string())
        .env("SHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .expect("run node");
    let (stdout, stderr) = text(&run);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "browser checks failed:\n{stdout}\n{stderr}"
    );

    // What the browser did is in the store: ada approved one held run and corrected another.
    let decided: Vec<_> = store
        .list_reviews(&shopfloor_store::ReviewFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.status != shopfloor_core::review::ReviewStatus::Pending)
        .collect();
    assert_eq!(decided.len(), 2, "{decided:?}");
    let audit = shopfloor(dir.path(), &["audit", "verify"]);
    assert!(audit.status.success(), "{:?}", text(&audit));
    drop(replica);
}

/// A two-person item, once one reviewer approved it, says who approved first to the next
/// reviewer who opens it (plain HTTP with the session cookie a one-time link sets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_person_item_shows_who_approved_first() {
    let upstream = FakeServer::start(keyword_router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &upstream.base_url());
    let workflow = dir.path().join("workflows/ticket-triage.toml");
    let toml = std::fs::read_to_string(&workflow)
        .unwrap()
        .replace("risk = \"medium\"", "risk = \"high\"")
        + "approvals_required = 2\n";
    std::fs::write(&workflow, toml).unwrap();
    let ops = create_named_key(dir.path(), None, "ops", "operator");
    let rita = create_named_key(dir.path(), None, "rita", "reviewer");
    let replica = Replica::start(dir.path(), None, &[], "serve.log");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/v1/workflows/ticket-triage/runs", replica.base))
        .bearer_auth(&ops)
        .json(&json!({"input": {"subject": "Refund", "body": "I was charged twice"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let run_id = response.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let approve = client
        .post(format!("{}/v1/reviews/{run_id}/approve", replica.base))
        .bearer_auth(&rita)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), 200, "{:?}", approve.text().await);

    let signed_in = client
        .get(link(dir.path(), &replica.base, "ada", "admin"))
        .send()
        .await
        .unwrap();
    let cookie = signed_in
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("the link sets the session cookie")
        .to_string();
    let page = client
        .get(format!("{}/review/{run_id}", replica.base))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Approved first by <strong>rita</strong>"),
        "{html}"
    );
    assert!(html.contains("needs 2 approvals"), "{html}");
    assert!(
        html.contains("id=\"approve-form\""),
        "ada may give the second approval"
    );
    drop(replica);
}
