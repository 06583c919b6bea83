//! Experiments through the real server: a variant whose answers a simulated reviewer accepts
//! more often ends in a "keep" recommendation over a few thousand runs, an A/A experiment does
//! not, a variant that costs 3× is halted by its guardrail within the first window, assignment
//! is sticky per user, and the decision lands in the audit log and the weekly review.

use crate::common;

use std::sync::Arc;

use common::*;
use serde_json::{json, Value};
use shopfloor_core::calendar::iso_week;
use shopfloor_engine::EvalRequest;
use shopfloor_store::{AuditAction, RunFilter};
use shopfloor_testkit::{openai_completion, FakeServer, OpenAiModel, ReceivedRequest, Reply};

/// How often each model answers a ticket right, in percent: `careful` is the better one,
/// `pricey` answers as `plain` does at three times the price.
fn right_percent(model: &str) -> u64 {
    match model {
        "careful" => 85,
        _ => 55,
    }
}

/// Tickets read `ticket N truth LABEL`; a model answers right for a fixed share of tickets,
/// decided by the ticket number, so every run of the test sees the same answers.
fn upstream(request: &ReceivedRequest) -> Reply {
    let text = first_user_text(request);
    let words: Vec<&str> = text.split_whitespace().collect();
    let n: u64 = words.get(1).and_then(|w| w.parse().ok()).unwrap_or(0);
    let truth = words.get(3).copied().unwrap_or("other");
    let model = request.body["model"].as_str().unwrap_or("");
    let right = (n.wrapping_mul(2_654_435_761) >> 7) % 100 < right_percent(model);
    let answer = match (right, truth) {
        (true, truth) => truth,
        (false, "bug") => "billing",
        (false, _) => "bug",
    };
    Reply::Json(200, openai_completion(answer, 100, 2))
}

fn truth(n: u64) -> &'static str {
    ["billing", "bug", "other"][(n % 3) as usize]
}

fn workflow(models: &str, variant: &str) -> String {
    format!(
        r#"description = "Route tickets"
owner = "dana@acme.example"
risk = "medium"
data_class = "internal"

[input]
schema = {{ type = "object", required = ["text"], properties = {{ text = {{ type = "string" }} }} }}

[prompt]
user = "{{{{ text }}}}"

[output]
labels = ["billing", "bug", "other"]

[route]
models = [{models}]
retries = 0

[eval]
dataset = "datasets/tickets.jsonl"
scorers = ["label_accuracy"]
gate = {{ label_accuracy = 0.3 }}

[review]
sample_rate = 1.0

{variant}
"#
    )
}

fn write(dir: &std::path::Path, base_url: &str) {
    let models = [
        OpenAiModel::new("plain", base_url)
            .id("plain")
            .price(1.0, 1.0),
        OpenAiModel::new("careful", base_url)
            .id("careful")
            .price(1.0, 1.0),
        OpenAiModel::new("pricey", base_url)
            .id("pricey")
            .price(3.0, 3.0),
    ];
    let config: String = models.iter().map(|m| format!("{m}\n")).collect();
    shopfloor_testkit::write_project(
        dir,
        &config,
        &[
            (
                "triage",
                &workflow(
                    r#""plain""#,
                    "[variants.careful]\nroute = { models = [\"careful\"] }",
                ),
            ),
            (
                "steady",
                &workflow(
                    r#""plain""#,
                    "[variants.same]\nroute = { temperature = 0.1 }",
                ),
            ),
            (
                "costly",
                &workflow(
                    r#""plain""#,
                    "[variants.pricey]\nroute = { models = [\"pricey\"] }",
                ),
            ),
        ],
    );
    std::fs::create_dir_all(dir.join("datasets")).unwrap();
    let cases: String = (1..=12)
        .map(|n| {
            format!(
                "{}\n",
                json!({"id": format!("c{n}"), "input": {"text": format!("ticket {n} truth {}", truth(n))}, "expected": truth(n)})
            )
        })
        .collect();
    std::fs::write(dir.join("datasets/tickets.jsonl"), cases).unwrap();
}

/// Evaluate `variant` of `workflow` so that it may take traffic.
async fn make_eligible(server: &TestServer, workflow: &str, variant: &str) {
    let summary = server
        .state
        .engine
        .run_eval(
            &EvalRequest {
                workflow: workflow.into(),
                variant: Some(variant.into()),
                concurrency: 4,
                ..Default::default()
            },
            &(),
            std::future::pending(),
        )
        .await
        .unwrap();
    assert!(summary.passed, "{workflow}/{variant}");
}

/// Run `count` tickets from `first` on, one user per ticket, eight at a time; a reviewer
/// approves each right answer and corrects each wrong one. Returns (run id, user) pairs.
async fn drive(server: &TestServer, workflow: &str, first: u64, count: u64, review: bool) {
    let server_url = Arc::new(server.base.clone());
    let keys = server.keys.clone();
    let c = client();
    let mut tasks = tokio::task::JoinSet::new();
    let lanes = 8;
    for lane in 0..lanes {
        let (c, url, keys, workflow) = (
            c.clone(),
            server_url.clone(),
            keys.clone(),
            workflow.to_string(),
        );
        tasks.spawn(async move {
            let mut n = first + lane;
            while n < first + count {
                let text = format!("ticket {n} truth {}", truth(n));
                let (status, body) = post(
                    &c,
                    &format!("{url}/v1/workflows/{workflow}/runs"),
                    Some(&keys.operator),
                    &json!({"input": {"text": text}, "user": format!("user-{n}")}),
                )
                .await;
                assert_eq!(status, 200, "{body}");
                if review {
                    let run_id = body["run_id"].as_str().unwrap();
                    let (action, body) = if body["output"] == truth(n) {
                        ("approve", json!({}))
                    } else {
                        ("edit", json!({"output": truth(n)}))
                    };
                    let (status, answer) = post(
                        &c,
                        &format!("{url}/v1/reviews/{run_id}/{action}"),
                        Some(&keys.reviewer),
                        &body,
                    )
                    .await;
                    assert_eq!(status, 200, "{answer}");
                }
                n += lanes;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

async fn start(server: &TestServer, workflow: &str, body: Value) -> (u16, Value) {
    post(
        &client(),
        &server.url(&format!("/v1/workflows/{workflow}/experiments")),
        Some(&server.keys.admin),
        &body,
    )
    .await
}

async fn status(server: &TestServer, workflow: &str) -> Value {
    let (code, body) = get(
        &client(),
        &server.url(&format!("/v1/workflows/{workflow}/experiments")),
        Some(&server.keys.viewer),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["data"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_better_variant_is_kept_an_equal_one_is_not_and_a_costly_one_is_halted() {
    let upstream = FakeServer::start_without_recording(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &upstream.base_url());
    let mut config = test_config();
    config.jobs_every = Some(std::time::Duration::from_millis(200));
    let server = TestServer::start(dir.path(), config).await;
    let c = client();

    // Only a variant that passed its eval, only with a hypothesis, and only by a key that may
    // promote.
    let body = json!({"variant": "careful", "hypothesis": "the careful model is accepted more often",
        "metric": "acceptance_rate", "share": 0.5, "min_runs": 500});
    let (code, refused) = start(&server, "triage", body.clone()).await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "variant", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no eval of this version yet"),
        "{refused}"
    );
    make_eligible(&server, "triage", "careful").await;
    make_eligible(&server, "steady", "same").await;
    make_eligible(&server, "costly", "pricey").await;
    let (code, _) = post(
        &c,
        &server.url("/v1/workflows/triage/experiments"),
        Some(&server.keys.builder),
        &body,
    )
    .await;
    assert_eq!(code, 403);
    let (code, bad) = start(
        &server,
        "triage",
        json!({"variant": "careful", "hypothesis": "x", "metric": "acceptance_rate", "guardrails": ["speed:2"]}),
    )
    .await;
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["error"]["param"], "guardrails", "{bad}");
    let (code, started) = start(&server, "triage", body.clone()).await;
    assert_eq!(code, 201, "{started}");
    assert_eq!(started["state"], "running");
    let (code, conflict) = start(&server, "triage", body).await;
    assert_eq!(code, 409, "{conflict}");
    let (code, aa) = start(
        &server,
        "steady",
        json!({"variant": "same", "hypothesis": "a tenth more temperature changes nothing",
            "metric": "acceptance_rate", "share": 0.5, "min_runs": 500}),
    )
    .await;
    assert_eq!(code, 201, "{aa}");

    // Two thousand runs each, every one reviewed.
    drive(&server, "triage", 0, 2000, true).await;
    drive(&server, "steady", 0, 2000, true).await;

    let better = status(&server, "triage").await;
    let figures = &better["figures"];
    let (control, variant) = (&figures["control"], &figures["variant"]);
    assert_eq!(
        control["runs"].as_u64().unwrap() + variant["runs"].as_u64().unwrap(),
        2000,
        "{better}"
    );
    assert_eq!(control["reviewed"], control["runs"], "{better}");
    let rate = |arm: &Value| arm["accepted"].as_f64().unwrap() / arm["reviewed"].as_f64().unwrap();
    assert!(rate(variant) > rate(control) + 0.2, "{better}");
    assert_eq!(better["recommendation"]["verdict"], "keep", "{better}");
    let interval = &better["recommendation"]["difference"];
    assert!(interval["low"].as_f64().unwrap() > 0.0, "{better}");
    let equal = status(&server, "steady").await;
    assert_ne!(equal["recommendation"]["verdict"], "keep", "{equal}");
    assert!(
        equal["recommendation"]["difference"]["low"]
            .as_f64()
            .unwrap()
            < 0.0,
        "{equal}"
    );

    // Sticky: the same user lands in the same arm again.
    server.state.engine.flush().await;
    let store = server.store();
    let arm_of = |run: &shopfloor_store::RunRecord| run.experiment.as_ref().unwrap().arm.clone();
    let arms_of_user_7 = || async {
        let mut arms = Vec::new();
        let filter = RunFilter {
            workflow: Some("triage".into()),
            caller: Some("user-7".into()),
            ..Default::default()
        };
        for summary in store.list_runs(&filter).await.unwrap() {
            arms.push(arm_of(&store.get_run(&summary.id).await.unwrap().unwrap()));
        }
        arms
    };
    let first = arms_of_user_7().await;
    assert_eq!(first.len(), 1);
    drive(&server, "triage", 7, 1, false).await;
    server.state.engine.flush().await;
    assert_eq!(arms_of_user_7().await, [first[0].clone(), first[0].clone()]);

    // A variant at three times the cost is halted within its first window (read every
    // fifth variant run), and takes no more traffic.
    let (code, costly) = start(
        &server,
        "costly",
        json!({"variant": "pricey", "hypothesis": "the pricey model is worth it",
            "metric": "acceptance_rate", "share": 0.5, "guardrails": ["cost_per_run:2x"]}),
    )
    .await;
    assert_eq!(code, 201, "{costly}");
    let id = costly["id"].as_str().unwrap().to_string();
    drive(&server, "costly", 0, 80, false).await;
    server.state.engine.flush().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let halted = loop {
        let record = store.experiments(Some("costly")).await.unwrap().remove(0);
        if record.state == shopfloor_store::ExperimentState::Halted {
            break record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guardrail never halted the variant"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let reason = halted.halted_reason.unwrap();
    assert!(reason.contains("guardrail cost_per_run:2x"), "{reason}");
    // Halted within the first window: once both arms had their 20 runs, at most the five
    // runs before the next read and those the eight lanes finish while it reads went on
    // (15 to 24 seen on two loaded cores; the background job alone would take 200 ms).
    let figures = store.experiment_figures(&id).await.unwrap();
    assert!(figures.variant.runs >= 20, "{figures:?}");
    let at_halt = figures.control.runs + figures.variant.runs;
    let mut arms = Vec::new();
    let filter = RunFilter {
        workflow: Some("costly".into()),
        limit: Some(1_000),
        ..Default::default()
    };
    for summary in store.list_runs(&filter).await.unwrap() {
        let run = store.get_run(&summary.id).await.unwrap().unwrap();
        if run.experiment.as_ref().is_some_and(|e| e.id == id) {
            arms.push((run.created_at_ms, run.id.clone(), arm_of(&run)));
        }
    }
    arms.sort();
    let (mut control, mut variant) = (0, 0);
    let window_full = arms
        .iter()
        .position(|(_, _, arm)| {
            if arm == "control" {
                control += 1;
            } else {
                variant += 1;
            }
            control >= 20 && variant >= 20
        })
        .map(|i| i as u64 + 1)
        .expect("both arms had their first window");
    assert!(
        (window_full..=window_full + 30).contains(&at_halt),
        "halted after {at_halt} runs; both arms had 20 after {window_full}: {figures:?}"
    );
    drive(&server, "costly", 1000, 40, false).await;
    server.state.engine.flush().await;
    // The experiment's figures stop where the halt came; the runs after it are the
    // workflow's own.
    let figures = store.experiment_figures(&id).await.unwrap();
    assert_eq!(
        figures.control.runs + figures.variant.runs,
        at_halt,
        "{figures:?}"
    );
    let later = store
        .list_runs(&RunFilter {
            workflow: Some("costly".into()),
            limit: Some(40),
            ..Default::default()
        })
        .await
        .unwrap();
    for summary in &later {
        let run = store.get_run(&summary.id).await.unwrap().unwrap();
        assert_eq!(run.experiment, None, "run {} after the halt", run.id);
        assert_eq!(run.model.as_deref(), Some("plain"));
    }

    // Decisions: kept, audited with the hypothesis and the figures, and in the weekly review.
    let (code, stopped) = post(
        &c,
        &server.url("/v1/workflows/triage/experiments/stop"),
        Some(&server.keys.admin),
        &json!({"decision": "keep", "note": "accepted 30 points more often"}),
    )
    .await;
    assert_eq!(code, 200, "{stopped}");
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(stopped["decision"], "keep");
    assert_eq!(stopped["ended_by"], "ada");
    let (code, none) = post(
        &c,
        &server.url("/v1/workflows/triage/experiments/stop"),
        Some(&server.keys.admin),
        &json!({"decision": "cut"}),
    )
    .await;
    assert_eq!(code, 404, "{none}");
    let audit = store.audit_entries(0, 10_000).await.unwrap();
    let stop = audit
        .iter()
        .find(|e| e.action == AuditAction::ExperimentStop)
        .expect("the decision is audited");
    assert_eq!(stop.subject, "triage");
    assert_eq!(stop.actor, "ada");
    assert_eq!(
        stop.detail["hypothesis"],
        "the careful model is accepted more often"
    );
    assert_eq!(stop.detail["recommendation"]["verdict"], "keep");
    assert!(
        stop.detail["figures"]["variant"]["accepted"]
            .as_u64()
            .unwrap()
            > 0,
        "{}",
        stop.detail
    );
    assert!(audit
        .iter()
        .any(|e| e.action == AuditAction::ExperimentHalt && e.subject == "costly"));
    let week = iso_week(shopfloor_engine::now_ms());
    let review = server
        .state
        .engine
        .weekly_report(&week)
        .await
        .unwrap()
        .to_markdown();
    for expected in [
        "Experiments and decisions due",
        "decided: keep by ada (accepted 30 points more often)",
        "halted: guardrail cost\\_per\\_run:2x",
        "decision due: halted by guardrail cost\\_per\\_run:2x",
    ] {
        assert!(review.contains(expected), "{expected}:\n{review}");
    }

    // The workflow page shows the decided experiment to a viewer.
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = server
        .state
        .engine
        .login_link("vic", shopfloor_core::access::Role::Viewer, "test")
        .await
        .unwrap();
    let signed_in = c
        .get(server.url(&format!("/login?token={}", link.token)))
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = c
        .get(server.url("/workflows/triage"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    for expected in [
        "<h2 id=\"experiments\">Experiments</h2>",
        "Variant <code>careful</code> · stopped",
        "Hypothesis: the careful model is accepted more often",
        "Decided <strong>keep</strong> by ada: accepted 30 points more often",
        "acceptance_rate (decides)",
    ] {
        assert!(page.contains(expected), "{expected}:\n{page}");
    }

    // The guardrail that halted the costly variant ran as a named job, each in its own task,
    // and /metrics reports every job's passes.
    let metrics = server.metrics().await;
    for job in ["review_sla", "webhooks", "experiments"] {
        let passes: u64 = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "shopfloor_job_passes_total{{job=\"{job}\",outcome=\"ok\"}} "
                ))
            })
            .unwrap_or_else(|| panic!("no passes of {job} in\n{metrics}"))
            .parse()
            .unwrap();
        assert!(passes >= 1, "{job}: {passes}");
        assert!(
            metrics.contains(&format!(
                "shopfloor_job_last_end_timestamp_seconds{{job=\"{job}\"}}"
            )),
            "{job}:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("outcome=\"failed\""),
        "no job failed:\n{metrics}"
    );
    server.stop().await;
}
