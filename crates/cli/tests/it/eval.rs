//! `shopfloor eval` and `shopfloor evals` end to end: the loop a builder runs in CI —
//! eval → baseline → change the prompt → eval → compare → gate.

use std::process::Output;

use crate::common;
use common::{keyword_router as router, scaffold, shopfloor};

use serde_json::Value;
use shopfloor_testkit::{assert_contains, FakeServer};

fn text(out: &Output) -> String {
    let (stdout, stderr) = common::text(out);
    format!("{stdout}{stderr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_baseline_change_compare_gate() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());

    let out = shopfloor(
        dir.path(),
        &[
            "eval",
            "ticket-triage",
            "--gate",
            "--json",
            "first.json",
            "--junit",
            "first.xml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("first.json")).unwrap())
            .unwrap();
    let accuracy = first["scores"][0]["mean"].as_f64().unwrap();
    assert!(
        accuracy >= 0.5,
        "the keyword router should pass the example gate: {accuracy}"
    );
    let report = text(&out);
    assert!(
        report.contains("label_accuracy") && report.contains("95% CI"),
        "{report}"
    );
    assert!(report.contains("gate absolute   PASS"), "{report}");
    let junit = std::fs::read_to_string(dir.path().join("first.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 60);
    assert!(
        junit.contains("<failure message=\"label_accuracy failed\">expected:"),
        "{junit}"
    );
    let first_id = first["eval_id"].as_str().unwrap().to_string();

    let out = shopfloor(dir.path(), &["evals", "baseline", &first_id]);
    assert!(out.status.success(), "{}", text(&out));

    // Change the prompt: the version changes, so nothing is reused from the cache.
    let workflow = dir.path().join("workflows/ticket-triage.toml");
    let changed = std::fs::read_to_string(&workflow).unwrap().replace(
        "Which queue should handle this ticket",
        "Which team should handle this ticket",
    );
    std::fs::write(&workflow, changed).unwrap();
    let before = server.request_count();
    let out = shopfloor(
        dir.path(),
        &["eval", "ticket-triage", "--gate", "--json", "second.json"],
    );
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed gate exits 1: {report}"
    );
    assert_eq!(
        server.request_count() - before,
        60,
        "a new version is not served from the cache"
    );
    assert_contains(
        &report,
        &[
            "against baseline",
            "gate absolute   FAIL",
            "gate regression FAIL",
        ],
    );
    let second: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("second.json")).unwrap())
            .unwrap();
    assert!(second["baseline"]["scores"][0]["significant"]
        .as_bool()
        .unwrap());
    let second_id = second["eval_id"].as_str().unwrap();

    let out = shopfloor(dir.path(), &["evals", "compare", &first_id, second_id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("shared case(s) differ"),
        "{}",
        text(&out)
    );

    let out = shopfloor(dir.path(), &["evals", "list"]);
    let listing = text(&out);
    assert!(
        listing.contains("(baseline)") && listing.contains("FAIL"),
        "{listing}"
    );
    let out = shopfloor(dir.path(), &["evals", "show", second_id]);
    assert!(text(&out).contains("macro-F1"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_dataset_exits_2() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    let dataset = dir.path().join("datasets/ticket-triage.jsonl");
    let mut text_ = std::fs::read_to_string(&dataset).unwrap();
    text_.push_str("{\"input\": {\"subject\": \"no body\"}, \"expected\": \"bug\"}\n");
    std::fs::write(&dataset, text_).unwrap();
    let out = shopfloor(dir.path(), &["eval", "ticket-triage", "--gate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("datasets/ticket-triage.jsonl:61: input"),
        "{}",
        text(&out)
    );
    assert_eq!(server.request_count(), 0);
}

/// `[variants.NAME]`: `check` lists each with its version and whether it may take traffic;
/// `eval --variant` evaluates that version; a passed eval makes it eligible, a failed one not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_are_evaluated_as_versions_of_their_own_and_eligible_once_they_pass() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    // `careful` keeps "queue" in the prompt (the router answers); `terse` drops it (the router
    // then says "other" to everything).
    shopfloor_testkit::append(
        &dir.path().join("workflows/ticket-triage.toml"),
        "\n[variants.careful]\ndescription = \"Ask for care\"\nprompt = { system = \"You route support tickets carefully. Answer with one word.\" }\n\n[variants.terse.prompt]\nuser = \"{{ subject }}: {{ body }}\"\n",
    );
    let out = shopfloor(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = text(&out);
    assert_contains(
        &listing,
        &["not yet: no eval of this version yet: shopfloor eval ticket-triage --variant careful"],
    );
    assert_contains(&listing, &["1 with variants"]);
    // An eval of the first cases only proves nothing: the variant is still not eligible.
    let out = shopfloor(
        dir.path(),
        &[
            "eval",
            "ticket-triage",
            "--variant",
            "careful",
            "--limit",
            "5",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_contains(
        &text(&shopfloor(dir.path(), &["check"])),
        &["not yet: no eval of this version yet: shopfloor eval ticket-triage --variant careful"],
    );

    let out = shopfloor(
        dir.path(),
        &[
            "eval",
            "ticket-triage",
            "--variant",
            "careful",
            "--json",
            "careful.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let careful: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("careful.json")).unwrap())
            .unwrap();
    let version = careful["version"].as_str().unwrap();
    assert_contains(
        &text(&out),
        &[&format!(
            "variant careful of ticket-triage (version {version})"
        )],
    );
    assert_eq!(careful["passed"], true, "{careful}");
    let out = shopfloor(dir.path(), &["eval", "ticket-triage", "--variant", "terse"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let listing = text(&shopfloor(dir.path(), &["check"]));
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.starts_with("ticket-triage") && l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{listing}"))
            .to_string()
    };
    let careful_line = line("careful");
    assert!(careful_line.contains(version), "{careful_line}");
    assert!(
        careful_line.contains(&format!(
            "eligible: eval {} passed its gates",
            careful["eval_id"].as_str().unwrap()
        )),
        "{careful_line}"
    );
    assert_contains(&line("terse"), &["not yet: eval "]);
    assert_contains(&line("terse"), &["failed its gates"]);

    let out = shopfloor(dir.path(), &["eval", "ticket-triage", "--variant", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(
        &text(&out),
        &["workflow ticket-triage has no variant \"nope\"; its variants: careful, terse"],
    );

    // Experiments: only an eligible variant, only a testable metric, one live at a time.
    let start = |variant: &str, metric: &str| {
        shopfloor(
            dir.path(),
            &[
                "experiment",
                "start",
                "ticket-triage",
                "--variant",
                variant,
                "--metric",
                metric,
                "--hypothesis",
                "careful routing is accepted more often",
                "--guardrail",
                "cost_per_accepted:2x",
                "--share",
                "0.5",
            ],
        )
    };
    let out = start("terse", "acceptance_rate");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(
        &text(&out),
        &[
            "variant terse of ticket-triage may not take traffic yet: eval ",
            "failed its gates",
        ],
    );
    let out = start("careful", "cost_per_accepted");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(
        &text(&out),
        &[
            "make it a guardrail",
            "acceptance_rate, invalid_rate, cost_per_run",
        ],
    );
    let out = start("careful", "acceptance_rate");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_contains(
        &text(&out),
        &["variant careful of ticket-triage takes 50% of its single runs"],
    );
    let out = start("careful", "acceptance_rate");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(
        &text(&out),
        &[
            "already has a live experiment",
            "hint: shopfloor experiment stop WORKFLOW",
        ],
    );

    // Single runs split between the arms, and each records its arm.
    for i in 0..16 {
        let input = format!(r#"{{"subject": "Invoice {i} charged twice", "body": "refund"}}"#);
        let out = shopfloor(dir.path(), &["run", "ticket-triage", "--json", &input]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let out = shopfloor(
        dir.path(),
        &["experiment", "status", "ticket-triage", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let live = &status[0];
    assert_eq!(live["state"], "running", "{live}");
    assert_eq!(live["variant"], "careful");
    assert_eq!(live["variant_version"], version);
    let (control, variant) = (
        live["figures"]["control"]["runs"].as_u64().unwrap(),
        live["figures"]["variant"]["runs"].as_u64().unwrap(),
    );
    assert_eq!(control + variant, 16, "{live}");
    assert!(control > 0 && variant > 0, "{live}");
    assert_eq!(live["recommendation"]["verdict"], "continue", "{live}");
    let store = common::open_store(dir.path()).await;
    let runs = store
        .list_runs(&shopfloor_store::RunFilter {
            workflow: Some("ticket-triage".into()),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut versions = std::collections::BTreeSet::new();
    for summary in runs.iter().filter(|r| r.batch_id.is_none()) {
        let run = store.get_run(&summary.id).await.unwrap().unwrap();
        let arm = run
            .experiment
            .expect("every single run is in the experiment");
        assert_eq!(arm.id, live["id"].as_str().unwrap());
        // The variant's runs run the variant's version.
        assert_eq!(
            arm.arm == "careful",
            run.version == version,
            "{}",
            run.version
        );
        versions.insert(run.version);
    }
    assert_eq!(versions.len(), 2, "{versions:?}");

    let out = shopfloor(
        dir.path(),
        &[
            "experiment",
            "stop",
            "ticket-triage",
            "--decision",
            "cut",
            "--note",
            "too few runs to tell",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_contains(
        &text(&out),
        &["stopped", "decided: cut by ", " — too few runs to tell"],
    );
    let out = shopfloor(
        dir.path(),
        &["experiment", "stop", "ticket-triage", "--decision", "keep"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(
        &text(&out),
        &["workflow ticket-triage has no live experiment"],
    );
    let audit = text(&shopfloor(dir.path(), &["audit", "list", "--json"]));
    assert_contains(
        &audit,
        &[
            "experiment.start",
            "experiment.stop",
            "too few runs to tell",
        ],
    );
}

/// The version hash of `workflow` as `check` prints it.
fn version_of(dir: &std::path::Path, workflow: &str) -> String {
    let out = shopfloor(dir, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    text(&out)
        .lines()
        .find(|l| l.starts_with(workflow))
        .and_then(|l| l.split_whitespace().nth(4))
        .unwrap_or_else(|| panic!("no line for {workflow}: {}", text(&out)))
        .to_string()
}

/// Prompt patterns: a workflow imports a macro from patterns/, its version covers the
/// pattern's text, and `patterns list` shows the pattern with the workflow's eval scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_import_patterns_whose_text_their_versions_cover() {
    let server = FakeServer::start(router).await;
    let dir = tempfile::tempdir().unwrap();
    scaffold(dir.path(), &server.base_url());
    let before = version_of(dir.path(), "ticket-triage");
    std::fs::create_dir_all(dir.path().join("patterns")).unwrap();
    std::fs::write(
        dir.path().join("patterns/route.j2"),
        "{% macro route(subject, body) %}Ticket subject: {{ subject }}\n\n{{ body }}\n\nWhich queue should handle this ticket: billing, bug, account or other?{% endmacro %}\n",
    )
    .unwrap();
    let file = dir.path().join("workflows/ticket-triage.toml");
    let workflow = std::fs::read_to_string(&file).unwrap();
    let start = workflow.find("user = \"\"\"").unwrap();
    let end = start + workflow[start..].find("?\"\"\"").unwrap() + 4;
    let imported = format!(
        "{}user = \"{{% from 'patterns/route.j2' import route %}}{{{{ route(subject, body) }}}}\"{}",
        &workflow[..start],
        &workflow[end..]
    );
    std::fs::write(&file, imported).unwrap();
    let with_pattern = version_of(dir.path(), "ticket-triage");
    assert_ne!(with_pattern, before);

    let out = shopfloor(dir.path(), &["eval", "ticket-triage"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = shopfloor(dir.path(), &["patterns", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["pattern"], "patterns/route.j2");
    assert_eq!(list[0]["macros"], serde_json::json!(["route"]));
    let user = &list[0]["workflows"][0];
    assert_eq!(user["workflow"], "ticket-triage");
    assert_eq!(user["version"], with_pattern.as_str());
    assert_eq!(user["last_eval"]["scores"][0]["scorer"], "label_accuracy");
    assert!(
        user["last_eval"]["scores"][0]["mean"].as_f64().unwrap() >= 0.5,
        "{user}"
    );
    assert_contains(
        &text(&shopfloor(dir.path(), &["patterns", "list"])),
        &[
            "patterns/route.j2  macros: route",
            "ticket-triage (version",
            "label_accuracy 0.",
        ],
    );

    // The pattern's text is part of the version of every workflow using it.
    std::fs::write(
        dir.path().join("patterns/route.j2"),
        "{% macro route(subject, body) %}Subject: {{ subject }}\n{{ body }}\nQueue: billing, bug, account or other?{% endmacro %}\n",
    )
    .unwrap();
    assert_ne!(version_of(dir.path(), "ticket-triage"), with_pattern);
    // A pattern that is not there is named.
    std::fs::remove_file(dir.path().join("patterns/route.j2")).unwrap();
    let out = shopfloor(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_contains(
        &text(&out),
        &["imports patterns/route.j2, which is not in the project; patterns: none"],
    );
}
