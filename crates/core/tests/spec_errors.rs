//! Every class of config error `shopfloor check` must report, with file, line and field.

use shopfloor_core::spec::{parse_config, parse_workflow, validate_project, ProjectFiles};
use shopfloor_core::version::workflow_version;
use shopfloor_core::Diagnostic;

const CONFIG: &str = r#"
[models.local]
provider = "local"
model = "smollm2"
data_classes = ["public", "internal", "confidential", "restricted"]

[models.gpt-mini]
provider = "openai"
model = "gpt-4o-mini"
data_classes = ["public", "internal"]
"#;

const GOOD: &str = r#"
description = "Route tickets"
owner = "dana@acme.example"
stage = "pilot"
risk = "medium"
data_class = "internal"

[outcome]
kpi = "minutes to first response"
baseline = 42
target = 15
minutes_saved_per_accepted = 3

[input]
schema = { type = "object", required = ["subject", "body"], properties = { subject = { type = "string" }, body = { type = "string" } } }

[prompt]
system = "You route support tickets."
user = "Subject: {{ subject }}\n\n{{ body }}"

[output]
labels = ["billing", "bug", "account", "other"]

[route]
models = ["gpt-mini", "local"]

[eval]
dataset = "datasets/ticket-triage.jsonl"
scorers = ["label_accuracy"]
gate = { label_accuracy = 0.8 }
"#;

/// Check one workflow text against CONFIG; every diagnostic as `file:line: field: message`.
fn check(workflow: &str) -> Vec<String> {
    let (config, mut diags) = parse_config("shopfloor.toml", CONFIG);
    assert!(diags.is_empty(), "{diags:?}");
    let (parsed, wf_diags) =
        parse_workflow("ticket-triage", "workflows/ticket-triage.toml", workflow);
    diags.extend(wf_diags);
    let workflows: Vec<_> = parsed.into_iter().collect();
    let exists = |path: &str| path == "datasets/ticket-triage.jsonl";
    diags.extend(validate_project(&ProjectFiles {
        patterns: &Default::default(),
        config: &config,
        workflows: &workflows,
        file_exists: &exists,
    }));
    diags.iter().map(Diagnostic::to_string).collect()
}

fn assert_has(diags: &[String], expected: &str) {
    assert!(
        diags.iter().any(|d| d.contains(expected)),
        "expected a diagnostic containing {expected:?}, got {diags:#?}"
    );
}

#[test]
fn the_good_workflow_is_clean() {
    assert!(check(GOOD).is_empty(), "{:#?}", check(GOOD));
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let text = GOOD.replace(
        "risk = \"medium\"",
        "risk = \"medium\"\nowner_email = \"x\"",
    );
    let text = text.replace("[route]\n", "[route]\nretry = 3\n");
    let diags = check(&text);
    assert_has(
        &diags,
        "workflows/ticket-triage.toml:6: owner_email: unknown key; expected one of:",
    );
    assert_has(
        &diags,
        "route.retry: unknown key; expected one of: max_tokens, models, retries",
    );
}

#[test]
fn non_draft_needs_owner_and_outcome() {
    let text = GOOD.replace("owner = \"dana@acme.example\"\n", "");
    let text = text.replace("[outcome]\nkpi = \"minutes to first response\"\nbaseline = 42\ntarget = 15\nminutes_saved_per_accepted = 3\n", "");
    let diags = check(&text);
    assert_has(&diags, "owner: a pilot workflow needs an owner");
    assert_has(&diags, "outcome: a pilot workflow needs an [outcome]");
    // A draft may have neither.
    assert!(check(&text.replace("stage = \"pilot\"", "stage = \"draft\"")).is_empty());
}

#[test]
fn unknown_route_model() {
    let diags = check(&GOOD.replace(
        "models = [\"gpt-mini\", \"local\"]",
        "models = [\"gpt-mni\", \"local\"]",
    ));
    assert_has(&diags, "ticket-triage.toml:25: route.models: unknown model \"gpt-mni\"; models defined in shopfloor.toml: gpt-mini, local");
}

#[test]
fn model_not_allowed_the_data_class() {
    let diags = check(&GOOD.replace("data_class = \"internal\"", "data_class = \"confidential\""));
    assert_has(
        &diags,
        "route.models: model \"gpt-mini\" may not see confidential data",
    );
    assert_eq!(
        diags.len(),
        1,
        "local may see confidential data: {diags:#?}"
    );
}

#[test]
fn invalid_input_schema() {
    let diags = check(&GOOD.replace(
        "subject = { type = \"string\" }",
        "subject = { type = \"strin\" }",
    ));
    assert_has(&diags, "input.schema: not a valid JSON Schema");
}

#[test]
fn template_variable_not_in_schema() {
    let diags = check(&GOOD.replace("{{ body }}", "{{ body }} {{ customer_tier }}"));
    assert_has(&diags, "ticket-triage.toml:19: prompt.user: uses variable \"customer_tier\" which the input schema does not define");
}

#[test]
fn template_syntax_error() {
    let diags = check(&GOOD.replace("{{ body }}", "{{ body "));
    assert_has(&diags, "prompt.user: template error");
}

#[test]
fn empty_and_duplicated_labels() {
    assert_has(
        &check(&GOOD.replace(
            "labels = [\"billing\", \"bug\", \"account\", \"other\"]",
            "labels = []",
        )),
        "output.labels: is empty",
    );
    assert_has(
        &check(&GOOD.replace(
            "labels = [\"billing\", \"bug\", \"account\", \"other\"]",
            "labels = [\"billing\", \"Billing\", \"bug\"]",
        )),
        "\"Billing\" is listed twice",
    );
    let long = "x".repeat(65);
    assert_has(
        &check(&GOOD.replace(
            "labels = [\"billing\", \"bug\", \"account\", \"other\"]",
            &format!("labels = [\"billing\", \"{long}\"]"),
        )),
        "is 65 characters long; a label is a name of at most 64 characters",
    );
    assert_has(
        &check(&GOOD.replace(
            "labels = [\"billing\", \"bug\", \"account\", \"other\"]",
            "labels = [\"billing\", \"two\\nlines\"]",
        )),
        "\"two\\nlines\" contains a control character",
    );
}

#[test]
fn a_confidence_threshold_needs_a_model_that_gives_one() {
    // The embedded model on the route chooses among the labels: it gives a confidence.
    let held = format!("{GOOD}\n[review]\nhold_below_confidence = 0.7\n");
    assert!(check(&held).is_empty(), "{:#?}", check(&held));
    let openai_only = held.replace(
        r#"models = ["gpt-mini", "local"]"#,
        r#"models = ["gpt-mini"]"#,
    );
    assert_has(
        &check(&openai_only),
        "workflows/ticket-triage.toml: review.hold_below_confidence: no model of this route gives a confidence",
    );
    let free_choice = held.replace(
        r#"labels = ["billing", "bug", "account", "other"]"#,
        "labels = [\"billing\", \"bug\", \"account\", \"other\"]\nconstrained = false",
    );
    assert_has(&check(&free_choice), "review.hold_below_confidence");
}

#[test]
fn missing_eval_dataset() {
    let diags = check(&GOOD.replace("datasets/ticket-triage.jsonl", "datasets/missing.jsonl"));
    assert_has(
        &diags,
        "ticket-triage.toml:28: eval.dataset: file \"datasets/missing.jsonl\" does not exist",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = GOOD
        .replace("stage = \"pilot\"", "stage = \"pilot\"\ncolour = \"red\"")
        .replace("\"gpt-mini\", \"local\"", "\"nope\"")
        .replace("{{ body }}", "{{ bodyy }}")
        .replace("datasets/ticket-triage.jsonl", "datasets/missing.jsonl");
    let diags = check(&text);
    assert!(diags.len() >= 4, "{diags:#?}");
}

#[test]
fn bad_values_say_what_was_expected() {
    let diags = check(
        &GOOD
            .replace("stage = \"pilot\"", "stage = \"prod\"")
            .replace("risk = \"medium\"", "risk = 3"),
    );
    assert_has(
        &diags,
        "stage: \"prod\" is not one of: draft, pilot, production, retired",
    );
    assert_has(&diags, "risk: expected a string, found integer");
}

#[test]
fn version_ignores_owner_and_comments_but_not_the_prompt() {
    let (config, _) = parse_config("shopfloor.toml", CONFIG);
    let version = |text: &str| {
        let (w, diags) = parse_workflow("t", "workflows/t.toml", text);
        assert!(diags.is_empty(), "{diags:?}");
        workflow_version(&w.unwrap(), &config.models, None, &Default::default())
    };
    let base = version(GOOD);
    assert_eq!(base.len(), 12);
    assert_eq!(
        base,
        version(&GOOD.replace("dana@acme.example", "lee@acme.example"))
    );
    assert_eq!(base, version(&format!("# a comment\n{GOOD}")));
    assert_ne!(
        base,
        version(&GOOD.replace("You route support tickets.", "You route tickets."))
    );
    assert_ne!(
        base,
        version(&GOOD.replace("\"gpt-mini\", \"local\"", "\"local\""))
    );
    assert_ne!(
        base,
        version(&GOOD.replace("[route]\n", "[route]\ntemperature = 0.7\n"))
    );
}

#[test]
fn embedding_models_serve_no_route_and_only_some_providers_embed() {
    let config = format!(
        "{CONFIG}\n[models.embed]\nprovider = \"openai\"\nkind = \"embedding\"\nmodel = \"text-embedding-3-small\"\ndata_classes = [\"internal\"]\n\
         \n[models.claude-embed]\nprovider = \"anthropic\"\nkind = \"embedding\"\nmodel = \"x\"\n\
         \n[models.odd]\nprovider = \"openai\"\nkind = \"vector\"\nmodel = \"x\"\n"
    );
    let (parsed, diags) = parse_config("shopfloor.toml", &config);
    let text: Vec<String> = diags.iter().map(Diagnostic::to_string).collect();
    assert_has(
        &text,
        "models.claude-embed.kind: anthropic models do not serve embeddings",
    );
    assert_has(&text, "models.odd.kind");
    assert_eq!(
        parsed.models["embed"].kind,
        shopfloor_core::spec::ModelUse::Embedding
    );
    assert_eq!(
        parsed.models["local"].kind,
        shopfloor_core::spec::ModelUse::Chat
    );

    let workflow = GOOD.replace(
        "models = [\"gpt-mini\", \"local\"]",
        "models = [\"embed\", \"local\"]",
    );
    let (workflow, _) = parse_workflow("ticket-triage", "workflows/ticket-triage.toml", &workflow);
    let workflows: Vec<_> = workflow.into_iter().collect();
    let diags = validate_project(&ProjectFiles {
        patterns: &Default::default(),
        config: &parsed,
        workflows: &workflows,
        file_exists: &|path: &str| path == "datasets/ticket-triage.jsonl",
    });
    let text: Vec<String> = diags.iter().map(Diagnostic::to_string).collect();
    assert_has(
        &text,
        "route.models: model \"embed\" is an embedding model (kind = \"embedding\"); a workflow's route needs chat models",
    );
}

const VARIANTS: &str = r#"
[variants.terse]
description = "A shorter system prompt"
prompt = { system = "Route tickets. One word." }

[variants.local-only.route]
models = ["local"]
temperature = 0.2
"#;

#[test]
fn variants_replace_what_they_name_and_have_versions_of_their_own() {
    let text = format!("{GOOD}{VARIANTS}");
    assert!(check(&text).is_empty(), "{:#?}", check(&text));
    let (config, _) = parse_config("shopfloor.toml", CONFIG);
    let (parsed, _) = parse_workflow("ticket-triage", "workflows/ticket-triage.toml", &text);
    let workflow = parsed.unwrap();
    let names: Vec<&str> = workflow
        .variants
        .iter()
        .map(|v| v.name.value.as_str())
        .collect();
    assert_eq!(names, ["local-only", "terse"], "by name");
    assert_eq!(
        workflow.variants[1].description.as_deref(),
        Some("A shorter system prompt")
    );
    let terse = workflow.variant("terse").unwrap();
    assert_eq!(
        terse.prompt.system.unwrap().value,
        "Route tickets. One word."
    );
    assert_eq!(
        terse.prompt.user, workflow.prompt.user,
        "the rest is the workflow's"
    );
    assert_eq!(terse.route, workflow.route);
    let local = workflow.variant("local-only").unwrap();
    let models: Vec<&str> = local
        .route
        .models
        .iter()
        .map(|m| m.value.as_str())
        .collect();
    assert_eq!(models, ["local"]);
    assert_eq!(local.route.temperature, 0.2);
    assert_eq!(local.route.retries, workflow.route.retries);
    assert_eq!(local.variant.as_deref(), Some("local-only"));
    assert!(local.variants.is_empty());
    assert!(workflow.variant("nope").is_none());
    let base = workflow_version(&workflow, &config.models, None, &Default::default());
    let versions = [
        workflow_version(
            &workflow.variant("terse").unwrap(),
            &config.models,
            None,
            &Default::default(),
        ),
        workflow_version(&local, &config.models, None, &Default::default()),
    ];
    assert!(
        versions.iter().all(|v| *v != base),
        "{versions:?} vs {base}"
    );
    assert_ne!(versions[0], versions[1]);
    // The variants leave the workflow's own version as it was.
    let (plain, _) = parse_workflow("ticket-triage", "workflows/ticket-triage.toml", GOOD);
    assert_eq!(
        workflow_version(&plain.unwrap(), &config.models, None, &Default::default()),
        base
    );
}

#[test]
fn a_variant_is_checked_as_the_workflow_it_makes() {
    let bad = "\n[variants.typo.route]\nmodels = [\"gpt-mni\"]\n\n[variants.control]\nprompt = { user = \"{{ subjekt }}\" }\n\n[variants.nothing]\ndescription = \"changes nothing\"\n\n[variants.Bad-Name.route]\nretries = 3\n";
    let diags = check(&format!("{GOOD}{bad}"));
    assert_has(
        &diags,
        "variants.typo.route.models: unknown model \"gpt-mni\"; models defined in shopfloor.toml",
    );
    assert_has(
        &diags,
        "variants.control: \"control\" is the workflow itself in an experiment",
    );
    assert_has(&diags, "variants.control.prompt.user");
    assert_has(&diags, "variants.nothing: a variant changes something");
    assert_has(&diags, "\"Bad-Name\" is not a variant name");
}

#[test]
fn balanced_examples_need_labels() {
    let text = GOOD
        .replace(
            "labels = [\"billing\", \"bug\", \"account\", \"other\"]",
            "text = { max_chars = 200 }",
        )
        .replace(
            "[output]",
            "examples = { from = \"datasets/ticket-triage.jsonl\", k = 2, select = \"balanced\" }\n\n[output]",
        )
        .replace("scorers = [\"label_accuracy\"]\ngate = { label_accuracy = 0.8 }", "scorers = [\"exact\"]");
    assert_has(
        &check(&text),
        "prompt.examples.select: \"balanced\" takes k examples per label, and this workflow's output has no labels",
    );
    // The same examples on a workflow with labels are fine.
    let labelled = GOOD.replace(
        "[output]",
        "examples = { from = \"datasets/ticket-triage.jsonl\", k = 2, select = \"balanced\" }\n\n[output]",
    );
    assert!(check(&labelled).is_empty(), "{:#?}", check(&labelled));
    // A key the examples table does not know is named, not ignored.
    let typo = GOOD.replace(
        "[output]",
        "examples = { from = \"datasets/ticket-triage.jsonl\", k = 2, selct = \"fixed\" }\n\n[output]",
    );
    assert_has(&check(&typo), "prompt.examples.selct: unknown key");
}
