use proptest::prelude::*;

use super::render::{html_escape, md_code, md_plain, md_text};
use super::*;
use crate::spec::{parse_config, parse_workflow};

const CONFIG: &str = r#"
[project]
name = "acme-support"

[policy.pii]
detect = ["email", "credit_card"]
on_external = "redact"
on_store = "redact"

[models.local]
provider = "local"
model = "smollm2"
data_classes = ["public", "internal", "confidential", "restricted"]

[models.gpt-mini]
provider = "openai"
model = "gpt-4o-mini"
price = { input_per_mtok = 0.15, output_per_mtok = 0.60 }
data_classes = ["public", "internal"]
"#;

/// Every one of `expected` is in `text`.
#[track_caller]
fn assert_contains(text: &str, expected: &[&str]) {
    for expected in expected {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

fn config(text: &str) -> ProjectConfig {
    let (config, diags) = parse_config("shopfloor.toml", text);
    assert!(diags.is_empty(), "{diags:?}");
    config
}

/// A valid workflow; `head` holds its top-level keys (owner, stage, risk, data_class, …).
fn workflow(name: &str, head: &str, models: &str, tail: &str) -> Workflow {
    let text = format!(
        r#"{head}
[input]
schema = {{ type = "object", properties = {{ body = {{ type = "string" }} }} }}
[prompt]
user = "{{{{ body }}}}"
[output]
labels = ["a", "b"]
[route]
models = {models}
{tail}
"#
    );
    let (workflow, diags) = parse_workflow(name, &format!("workflows/{name}.toml"), &text);
    assert!(diags.is_empty(), "{diags:?}");
    workflow.expect("workflow")
}

const OUTCOME: &str = "[outcome]\nkpi = \"minutes to first response\"\nbaseline = 42\ntarget = 15\nminutes_saved_per_accepted = 3\n";

fn triage() -> Workflow {
    workflow(
        "ticket-triage",
        &format!("description = \"Route tickets\"\nowner = \"dana@acme.example\"\nstage = \"pilot\"\nrisk = \"medium\"\ndata_class = \"internal\"\n{OUTCOME}"),
        "[\"gpt-mini\", \"local\"]",
        "[eval]\ndataset = \"d.jsonl\"\nscorers = [\"label_accuracy\"]\ngate = { label_accuracy = 0.8 }\nmax_regression = { label_accuracy = 0.02 }\n[review]\nsample_rate = 0.1\n",
    )
}

fn section<'a>(doc: &'a PolicyDocument, id: &str) -> &'a Section {
    doc.sections
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no section {id}"))
}

/// A section's words without markup.
fn words(section: &Section) -> String {
    let mut out = String::new();
    for block in &section.blocks {
        let texts: Vec<&Text> = match block {
            Block::Paragraph(t) => vec![t],
            Block::List(items) => items.iter().collect(),
            Block::Table(table) => table.rows.iter().flatten().collect(),
            Block::Bars(_) => Vec::new(),
        };
        for t in texts {
            out.push_str(&t.to_plain());
            out.push('\n');
        }
    }
    out
}

fn gap_words(doc: &PolicyDocument) -> Vec<String> {
    doc.gaps.iter().map(Text::to_plain).collect()
}

#[test]
fn every_section_is_present_in_order_with_the_generated_line() {
    let doc = build(&config(CONFIG), &[triage()], "2025-03-14");
    let ids: Vec<&str> = doc.sections.iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        [
            "scope",
            "models",
            "data-classes",
            "personal-data",
            "review",
            "roles",
            "workflows",
            "lifecycle",
            "records",
            "open-points"
        ]
    );
    assert_eq!(doc.title, "AI usage policy: acme-support");
    let generated = doc.generated.to_plain();
    assert_contains(&generated, &["2025-03-14", "acme-support"]);
    let md = doc.to_markdown();
    assert!(md.starts_with("# AI usage policy: acme-support\n"), "{md}");
    for heading in [
        "## Models",
        "## Data classes",
        "## Personal data",
        "## Human review by risk tier",
        "## Who may do what",
        "## Workflows",
        "## Lifecycle and promotion",
        "## Records and retention",
        "## Open points",
    ] {
        assert!(md.contains(heading), "{heading} missing:\n{md}");
    }
    assert_contains(
        &md,
        &[
            "run records are kept until an administrator deletes them; no automatic retention period is configured",
            "append-only and hash-chained",
        ],
    );
}

#[test]
fn models_show_where_they_run_and_what_they_may_see() {
    let doc = build(&config(CONFIG), &[triage()], "d");
    let md = doc.to_markdown();
    assert_contains(
        &md,
        &[
            "| `gpt-mini` | openai | `gpt-4o-mini` | OpenAI's API | no | public, internal | 0.15 / 0.6 |",
            "| `local` | local | `smollm2` | embedded in shopfloor, on its own CPU | yes | public, internal, confidential, restricted | not priced |",
            // Restricted data: only the local model, which is on premises.
            "| restricted | `local` | none | none |",
        ],
    );
    assert!(
        md.contains("| internal | `local`, `gpt-mini` | `gpt-mini` | `ticket-triage` |")
            || md.contains("| internal | `gpt-mini`, `local` | `gpt-mini` | `ticket-triage` |"),
        "{md}"
    );
    let classes = words(section(&doc, "data-classes"));
    assert_contains(
        &classes,
        &[
            "shopfloor check rejects a route",
            "a fallback never goes to a model that may not see it",
        ],
    );
}

#[test]
fn redact_wording_names_the_external_models_and_the_store() {
    let doc = build(&config(CONFIG), &[triage()], "d");
    let pii = words(section(&doc, "personal-data"));
    assert_contains(
        &pii,
        &[
            "email addresses (email)",
            "payment card numbers, Luhn-checked (credit_card)",
        ],
    );
    assert!(!pii.contains("phone"), "only the configured kinds: {pii}");
    assert_contains(
        &pii,
        &[
            "Before text goes to a model outside the premises (gpt-mini), with on_external = \"redact\": each finding is redacted",
            "Models on the premises (local) see the text as is",
            "only redacted copies are kept",
        ],
    );
    assert!(doc.gaps.is_empty(), "{:?}", gap_words(&doc));
}

#[test]
fn block_and_allow_say_what_the_runner_does() {
    let blocking = CONFIG.replace("on_external = \"redact\"", "on_external = \"block\"");
    let doc = build(&config(&blocking), &[triage()], "d");
    let pii = words(section(&doc, "personal-data"));
    assert_contains(
        &pii,
        &[
            "the call to that model is blocked and the reason names the kinds found, never the data",
            "recorded as refused",
        ],
    );
    assert!(!pii.contains("each finding is redacted"), "{pii}");
    assert!(doc.gaps.is_empty(), "{:?}", gap_words(&doc));

    let allowing = CONFIG
        .replace("on_external = \"redact\"", "on_external = \"allow\"")
        .replace("on_store = \"redact\"", "on_store = \"allow\"");
    let doc = build(&config(&allowing), &[triage()], "d");
    let pii = words(section(&doc, "personal-data"));
    assert_contains(
        &pii,
        &[
            "the text is sent as is, personal data included",
            "kept as they are, personal data included",
        ],
    );
    let gaps = gap_words(&doc);
    assert!(
        gaps.iter()
            .any(|g| g.contains("sent as is to models outside the premises")),
        "{gaps:?}"
    );
    assert!(
        gaps.iter()
            .any(|g| g.contains("The database keeps personal data as is")),
        "{gaps:?}"
    );
}

#[test]
fn no_pii_policy_is_said_and_flagged() {
    let without = CONFIG.replace(
        "[policy.pii]\ndetect = [\"email\", \"credit_card\"]\non_external = \"redact\"\non_store = \"redact\"\n",
        "",
    );
    assert!(!without.contains("policy"));
    let doc = build(&config(&without), &[triage()], "d");
    let pii = words(section(&doc, "personal-data"));
    assert!(
        pii.contains("No personal-data detection is configured."),
        "{pii}"
    );
    let gaps = gap_words(&doc);
    assert!(
        gaps.iter()
            .any(|g| g.starts_with("No personal-data detection is configured")),
        "{gaps:?}"
    );
}

#[test]
fn an_external_model_that_may_see_restricted_data_is_flagged() {
    let risky = format!(
        "{CONFIG}\n[models.claude]\nprovider = \"anthropic\"\nmodel = \"claude-x\"\ndata_classes = [\"public\", \"restricted\"]\n"
    );
    let doc = build(&config(&risky), &[triage()], "d");
    let gaps = gap_words(&doc);
    assert_eq!(
        gaps,
        ["Model claude may see restricted data but is not on premises."],
        "the on-premises local model, also allowed restricted data, is not flagged"
    );
    let md = doc.to_markdown();
    assert_contains(
        &md,
        &[
            "- Model `claude` may see restricted data but is not on premises.",
            "| restricted | `claude`, `local` | `claude` | none |",
            "One open point is listed at the end.",
        ],
    );
}

#[test]
fn workflows_table_review_tiers_and_gaps() {
    let orphan = workflow(
        "contract-check",
        "risk = \"high\"\ndata_class = \"confidential\"",
        "[\"local\"]",
        "",
    );
    let unsampled = workflow(
        "faq-draft",
        &format!("owner = \"sam@acme.example\"\nstage = \"production\"\nrisk = \"medium\"\ndata_class = \"public\"\n{OUTCOME}"),
        "[\"gpt-mini\"]",
        "",
    );
    let doc = build(&config(CONFIG), &[triage(), orphan, unsampled], "d");
    let md = doc.to_markdown();
    assert_contains(
        &md,
        &[
            "| `ticket-triage` | dana@acme.example | pilot | medium | internal | `gpt-mini` → `local` |",
            "| `contract-check` | none — cannot be promoted | draft | high | confidential | `local` |",
        ],
    );
    let review = words(section(&doc, "review"));
    assert_contains(
        &review,
        &[
            "ticket-triage (10% sampled), faq-draft (0% sampled)",
            "Every output is held until a reviewer approves it",
            "Outputs go straight out",
            "role grants review: admin, reviewer.",
        ],
    );
    let lifecycle = words(section(&doc, "lifecycle"));
    assert!(
        lifecycle.contains(
            "label_accuracy at least 0.8; label_accuracy at most 0.02 below the baseline"
        ),
        "{lifecycle}"
    );
    let list = words(section(&doc, "workflows"));
    assert_contains(
        &list,
        &[
            "ticket-triage: Route tickets. Measured by minutes to first response, baseline 42, target 15; 3 minutes saved per accepted output.",
            "contract-check: no description. No outcome KPI is set.",
        ],
    );
    assert_eq!(
        gap_words(&doc),
        [
            "Workflow contract-check has no owner; it cannot be promoted out of draft.",
            "Medium-risk workflow faq-draft samples no outputs for review ([review] sample_rate is 0).",
            "Workflow faq-draft is in production but has no eval gate.",
        ]
    );
}

#[test]
fn bars_are_a_list_in_markdown_and_inline_svg_in_html() {
    let doc = PolicyDocument {
        title: "T".into(),
        generated: "g".into(),
        sections: vec![Section {
            id: "s",
            heading: "S".into(),
            blocks: vec![Block::Bars(super::Bars {
                caption: "Minutes <saved>".into(),
                bars: vec![
                    ("a".into(), 10.0, "10 min".into()),
                    ("b".into(), 5.0, "5 min".into()),
                ],
            })],
        }],
        gaps: Vec::new(),
    };
    assert!(
        doc.to_markdown()
            .contains("Minutes \\<saved\\>:\n- a: 10 min\n- b: 5 min"),
        "{}",
        doc.to_markdown()
    );
    let html = doc.to_html();
    assert_contains(
        &html,
        &[
            "<svg role=\"img\" aria-label=\"Minutes &lt;saved&gt;\"",
            // The largest bar takes the whole track (330 px), the other half of it.
            "width=\"330\"",
            "width=\"165\"",
        ],
    );
    assert!(!html.contains("<script"), "no scripts");
}

#[test]
fn each_workflow_has_its_review_path() {
    let strict = workflow(
        "contract-check",
        "risk = \"high\"\ndata_class = \"confidential\"",
        "[\"local\"]",
        "[review]\napprovals_required = 2\nsla_minutes = 240\non_sla = \"reject\"\nhold_below_confidence = 0.7\nreasons = [\"unsafe\", \"other\"]\nwebhook = { url = \"http://127.0.0.1:9/h\", secret_env = \"HOOK_SECRET\" }\n",
    );
    let doc = build(&config(CONFIG), &[triage(), strict], "d");
    assert_contains(
        &doc.to_markdown(),
        &[
            "| Workflow | Reviewed | Approvals | Time limit | Reject reasons | Events |",
            "| `ticket-triage` | 10% of outputs, after release | one reviewer | none | `wrong_label`, `unsafe`, `hallucination`, `other` | none |",
            "| `contract-check` | every output, held until approved; outputs with confidence below 0.7, held | 2 different reviewers; a reject by any ends it | 240 min, then rejected | `unsafe`, `other` | decisions and overdue items sent to a webhook, signed with `HOOK_SECRET` |",
        ],
    );
}

#[test]
fn the_roles_table_is_the_access_matrix() {
    let doc = build(&config(CONFIG), &[], "d");
    let Some(Block::Table(table)) = section(&doc, "roles")
        .blocks
        .iter()
        .find(|b| matches!(b, Block::Table(_)))
    else {
        panic!("no roles table");
    };
    assert_eq!(
        table.header,
        [
            "Permission",
            "admin",
            "builder",
            "reviewer",
            "operator",
            "viewer"
        ]
    );
    assert_eq!(table.rows.len(), Permission::ALL.len());
    for (row, permission) in table.rows.iter().zip(Permission::ALL.iter().copied()) {
        assert_eq!(
            row[0].to_plain().to_lowercase(),
            permission.describe().to_lowercase()
        );
        for ((_, role), cell) in Role::CHOICES.iter().zip(&row[1..]) {
            let expected = if role.allows(permission) { "yes" } else { "no" };
            assert_eq!(cell.to_plain(), expected, "{role} / {permission:?}");
        }
    }
    let md = doc.to_markdown();
    assert_contains(
        &md,
        &[
            "| Create and revoke API keys | yes | no | no | no | no |",
            "No workflows are defined.",
        ],
    );
}

#[test]
fn markdown_escapes_pipes_and_markup_from_the_config() {
    let odd = format!(
        "{CONFIG}\n[models.\"a|b\"]\nprovider = \"openai-compatible\"\nmodel = \"m`x|y\"\nbase_url = \"http://h/v1\"\ndata_classes = [\"public\"]\n"
    );
    let w = workflow(
        "odd",
        "description = \"*bold* <script>x</script> [link](http://e) &amp; R&D\\nsecond line\"\nowner = \"ops|team\"\nrisk = \"low\"\ndata_class = \"public\"",
        "[\"a|b\"]",
        "",
    );
    let md = build(&config(&odd), &[w], "d").to_markdown();
    assert_contains(
        &md,
        &[
            "| `odd` | ops\\|team | draft | low | public | a\\|b |",
            "| a\\|b | openai-compatible | m\\`x\\|y | `http://h/v1` | no |",
            "- `odd`: \\*bold\\* \\<script\\>x\\</script\\> \\[link\\](http://e) \\&amp; R&D second line",
        ],
    );
    // Every table line has exactly as many unescaped pipes as its header.
    for table in md.split("\n\n").filter(|b| b.starts_with('|')) {
        let pipes: Vec<usize> = table.lines().map(unescaped_pipes).collect();
        assert!(pipes.iter().all(|n| *n == pipes[0]), "{table}");
    }
}

fn unescaped_pipes(line: &str) -> usize {
    let mut count = 0;
    let mut escaped = false;
    for c in line.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => count += 1,
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    count
}

#[test]
fn html_is_one_escaped_self_contained_page() {
    let w = workflow(
        "odd",
        "description = \"<script>alert('x')</script> & \\\"quotes\\\"\"\nowner = \"<b>ops</b>\"\nrisk = \"low\"\ndata_class = \"public\"",
        "[\"local\"]",
        "",
    );
    let html = build(&config(CONFIG), &[w, triage()], "2025-03-14").to_html();
    assert!(
        html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"),
        "{html}"
    );
    assert!(html.contains("<style>"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(
        !html.contains("<link") && !html.contains(" src="),
        "no external assets"
    );
    assert_contains(
        &html,
        &[
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;",
            "<td>&lt;b&gt;ops&lt;/b&gt;</td>",
            "<tr><td><code>ticket-triage</code></td><td>dana@acme.example</td><td>pilot</td><td>medium</td><td>internal</td><td><code>gpt-mini</code> → <code>local</code></td></tr>",
            "<section id=\"roles\">",
            "<a href=\"#open-points\">Open points</a>",
            "<strong>2025-03-14</strong>",
        ],
    );
    assert!(html.trim_end().ends_with("</html>"));
}

#[test]
fn code_spans_hold_backticks_and_block_starts_are_escaped() {
    assert_eq!(md_code("plain"), "`plain`");
    assert_eq!(md_code("a`b"), "``a`b``");
    assert_eq!(md_code("`x"), "`` `x ``");
    assert_eq!(md_code("a|b"), "`a|b`");
    assert_eq!(md_text(&Text::new().code("a|b"), true), "a\\|b");
    assert_eq!(md_text(&Text::new().code("a|b"), false), "`a|b`");
    let doc = PolicyDocument {
        title: "t".into(),
        generated: Text::from("# not a heading"),
        sections: vec![Section {
            id: "s",
            heading: "s".into(),
            blocks: vec![Block::List(vec![
                Text::from("1. not a list"),
                Text::from("- no"),
            ])],
        }],
        gaps: vec![],
    };
    let md = doc.to_markdown();
    assert_contains(
        &md,
        &["\n\\# not a heading\n", "- 1\\. not a list\n- \\- no"],
    );
}

proptest! {
    #[test]
    fn escaped_markdown_stays_on_one_line_with_no_bare_pipe(text in "\\PC*|[|`\\\\\n*<>]{0,12}") {
        let plain = md_plain(&text);
        prop_assert!(!plain.contains('\n'));
        prop_assert_eq!(unescaped_pipes(&plain), 0);
        let code = md_code(&text);
        prop_assert!(!code.contains('\n'));
        let cell = md_text(&Text::new().code(text.clone()).plain(text.clone()), true);
        prop_assert!(!cell.contains('\n'));
        prop_assert_eq!(unescaped_pipes(&cell), 0);
    }

    #[test]
    fn escaped_html_has_no_markup(text in "\\PC*|[<>&\"']{0,12}") {
        let html = html_escape(&text);
        prop_assert!(!html.contains(['<', '>', '"', '\'']));
        let decoded = html
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        prop_assert_eq!(decoded, text);
    }
}
