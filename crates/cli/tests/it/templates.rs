//! The template gallery end to end: every template makes a project that checks clean and
//! evaluates on the real embedded model (a slice of two cases each), and `new workflow` adds
//! one to an existing project under a name of its own.

use std::path::Path;

use crate::common;
use common::{shopfloor, text};

use serde_json::Value;
use shopfloor_testkit::assert_contains;

fn output(out: &std::process::Output) -> String {
    let (stdout, stderr) = text(out);
    format!("{stdout}{stderr}")
}

const NAMES: [&str; 6] = [
    "ticket-triage",
    "lead-qualification",
    "invoice-fields",
    "reply-drafting",
    "contract-clauses",
    "meeting-notes",
];

#[test]
fn the_gallery_lists_every_template_with_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let out = shopfloor(dir.path(), &["templates", "list", "--json"]);
    assert!(out.status.success(), "{}", output(&out));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, NAMES);
    for t in &list {
        // Every template carries a dataset big enough to judge a change by.
        assert!(t["cases"].as_u64().unwrap() >= 40, "{t}");
    }
    let out = shopfloor(dir.path(), &["templates", "list"]);
    assert_contains(
        &output(&out),
        &[
            "meeting-notes",
            "coverage",
            "shopfloor init DIR --template NAME",
        ],
    );
}

/// Each template's project checks clean and its eval runs on the embedded model: two cases,
/// scored by the template's own scorers, none of them an error.
#[test]
fn every_template_checks_clean_and_evaluates_on_the_embedded_model() {
    for name in NAMES {
        let dir = tempfile::tempdir().unwrap();
        let out = shopfloor(dir.path(), &["init", ".", "--template", name]);
        assert!(out.status.success(), "{name}: {}", output(&out));
        assert_contains(
            &output(&out),
            &[&format!("datasets/{name}.jsonl"), "GUIDE.md"],
        );
        let guide = std::fs::read_to_string(dir.path().join("GUIDE.md")).unwrap();
        assert!(
            guide.contains(&format!("## {name}")) || name == "ticket-triage",
            "{guide}"
        );
        let out = shopfloor(dir.path(), &["check"]);
        assert!(out.status.success(), "{name}: {}", output(&out));
        assert_contains(&output(&out), &[name, "no problems"]);
        let report = dir.path().join("eval.json");
        let out = shopfloor(
            dir.path(),
            &[
                "eval",
                name,
                "--limit",
                "2",
                "--json",
                report.to_str().unwrap(),
            ],
        );
        // A gate may fail on two cases (exit 1); the eval itself must have run.
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{name}: {}",
            output(&out)
        );
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(summary["cases"], 2, "{name}: {summary}");
        let scores = summary["scores"].as_array().unwrap();
        assert!(!scores.is_empty(), "{name}: {summary}");
        for score in scores {
            assert!(score["mean"].is_number(), "{name}: {summary}");
        }
        eprintln!(
            "{name}: {}",
            serde_json::to_string(&summary["scores"]).unwrap()
        );
    }
}

#[test]
fn new_workflow_adds_a_template_to_a_project_under_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shopfloor(dir.path(), &["init"]).status.success());
    let out = shopfloor(
        dir.path(),
        &[
            "new",
            "workflow",
            "vendor-invoices",
            "--template",
            "invoice-fields",
        ],
    );
    assert!(out.status.success(), "{}", output(&out));
    assert_contains(
        &output(&out),
        &[
            "Added workflow vendor-invoices from the invoice-fields template",
            "workflows/vendor-invoices.toml",
            "datasets/vendor-invoices.jsonl",
            "shopfloor eval vendor-invoices",
        ],
    );
    let workflow =
        std::fs::read_to_string(dir.path().join("workflows/vendor-invoices.toml")).unwrap();
    assert!(
        workflow.contains("datasets/vendor-invoices.jsonl"),
        "{workflow}"
    );
    assert!(
        !workflow.contains("datasets/invoice-fields.jsonl"),
        "{workflow}"
    );
    assert!(Path::new(&dir.path().join("datasets/vendor-invoices.jsonl")).is_file());
    let out = shopfloor(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", output(&out));
    assert_contains(&output(&out), &["ticket-triage", "vendor-invoices"]);

    // Nothing is overwritten; names and templates are checked.
    let again = shopfloor(
        dir.path(),
        &[
            "new",
            "workflow",
            "vendor-invoices",
            "--template",
            "meeting-notes",
        ],
    );
    assert_eq!(again.status.code(), Some(1), "{}", output(&again));
    assert_contains(
        &output(&again),
        &["already has workflows/vendor-invoices.toml", "--force"],
    );
    let unknown = shopfloor(dir.path(), &["new", "workflow", "x", "--template", "nope"]);
    assert_contains(
        &output(&unknown),
        &["unknown template \"nope\"; templates: ticket-triage, lead-qualification"],
    );
    let bad = shopfloor(
        dir.path(),
        &[
            "new",
            "workflow",
            "Vendor Invoices",
            "--template",
            "meeting-notes",
        ],
    );
    assert_contains(
        &output(&bad),
        &["use lower case letters, digits and dashes"],
    );
    // Outside a project it says how to make one.
    let empty = tempfile::tempdir().unwrap();
    let outside = shopfloor(
        empty.path(),
        &["new", "workflow", "notes", "--template", "meeting-notes"],
    );
    assert_contains(
        &output(&outside),
        &[
            "is not a shopfloor project",
            "shopfloor init --template meeting-notes",
        ],
    );
}

const INVOICES: &str = r#"process = "Key supplier invoices into the ledger"
owner = "priya@acme.example"
cases_per_week = 400
minutes_per_case = 3
error_cost = "medium"
data_class = "confidential"
risk = "medium"
examples_available = true
output = "fields"
"#;

const CONTRACTS: &str = r#"process = "First-pass review of customer contracts"
owner = "lena@acme.example"
cases_per_week = 30
minutes_per_case = 45
error_cost = "high"
data_class = "confidential"
risk = "high"
examples_available = false
output = "labels"
"#;

/// From proposals to an evaluated draft: intake rank, intake accept, cases of one's own,
/// check, eval.
#[test]
fn intake_ranks_proposals_and_accepts_one_as_a_draft_that_needs_its_own_cases() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shopfloor(dir.path(), &["init"]).status.success());
    let out = shopfloor(dir.path(), &["intake", "rank"]);
    assert_contains(&output(&out), &["no intake/ folder", "intake/NAME.toml"]);
    std::fs::create_dir_all(dir.path().join("intake")).unwrap();
    std::fs::write(dir.path().join("intake/invoices.toml"), INVOICES).unwrap();
    std::fs::write(dir.path().join("intake/contracts.toml"), CONTRACTS).unwrap();
    std::fs::write(
        dir.path().join("shopfloor.toml"),
        std::fs::read_to_string(dir.path().join("shopfloor.toml")).unwrap()
            + "\n[intake]\nhourly_rate = 60\n",
    )
    .unwrap();

    let out = shopfloor(dir.path(), &["intake", "rank", "--json"]);
    assert!(out.status.success(), "{}", output(&out));
    let ranked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ranked["hourly_rate"], 60.0);
    let first = &ranked["intakes"][0];
    assert_eq!(first["name"], "invoices", "{ranked}");
    assert_eq!(first["suggestion"], "start here");
    // 400 × 3 minutes a week: 86.7 hours a month, at 60 an hour.
    assert!(
        (first["value_per_month"].as_f64().unwrap() - 5200.0).abs() < 1.0,
        "{first}"
    );
    let second = &ranked["intakes"][1];
    assert_eq!(second["name"], "contracts");
    assert_eq!(second["suggestion"], "later");
    let reasons = second["reasons"].to_string();
    assert_contains(
        &reasons,
        &["30 cases by hand", "every output waits for a person"],
    );
    let text = output(&shopfloor(dir.path(), &["intake", "rank"]));
    assert_contains(&text, &["1. invoices", "start here", "Value at 60 an hour"]);

    // A broken proposal is named with its file and field, and the rest still ranks.
    std::fs::write(
        dir.path().join("intake/broken.toml"),
        "process = \"x\"\nowner = \"o\"\ncases_per_week = -1\n",
    )
    .unwrap();
    let out = shopfloor(dir.path(), &["intake", "rank"]);
    assert_eq!(out.status.code(), Some(2), "{}", output(&out));
    assert_contains(
        &output(&out),
        &[
            "intake/broken.toml",
            "cases_per_week: must be more than 0",
            "1. invoices",
        ],
    );
    std::fs::remove_file(dir.path().join("intake/broken.toml")).unwrap();

    let out = shopfloor(dir.path(), &["intake", "accept", "invoices"]);
    assert!(out.status.success(), "{}", output(&out));
    assert_contains(
        &output(&out),
        &[
            "the invoice-fields template",
            "workflows/invoices.toml",
            "at least 30 known-good cases",
        ],
    );
    let workflow = std::fs::read_to_string(dir.path().join("workflows/invoices.toml")).unwrap();
    assert_contains(
        &workflow,
        &[
            "owner = \"priya@acme.example\"",
            "kpi = \"minutes per case: Key supplier invoices into the ledger\"",
            "min_cases = 30",
            "datasets/invoices.jsonl",
        ],
    );
    let out = shopfloor(dir.path(), &["check"]);
    assert!(out.status.success(), "{}", output(&out));
    // The first eval waits for 30 cases of the owner's own.
    let out = shopfloor(dir.path(), &["eval", "invoices"]);
    assert_eq!(out.status.code(), Some(2), "{}", output(&out));
    assert_contains(
        &output(&out),
        &[
            "datasets/invoices.jsonl has 0 answered case(s)",
            "at least 30",
        ],
    );
    let cases: String = templates_dataset("invoice-fields")
        .lines()
        .take(30)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("datasets/invoices.jsonl"), cases).unwrap();
    let out = shopfloor(dir.path(), &["eval", "invoices", "--limit", "1"]);
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        output(&out)
    );
    assert_contains(&output(&out), &["json_match"]);
}

fn templates_dataset(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("templates/{name}/datasets/{name}.jsonl")),
    )
    .unwrap()
}
