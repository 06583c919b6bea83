//! `workflows/NAME.toml`: one business process step done by a model.

use serde::Serialize;
use serde_json::Value as Json;

use super::reader::{parse, Located, Source, TableReader};
use super::review::{read_review, ReviewSpec};
use super::types::{DataClass, RiskTier, Stage, WorkflowName};
use crate::scorers::{known_scorers, unknown_scorer};
use crate::Diagnostic;

/// The business outcome a workflow is measured against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub kpi: String,
    pub baseline: Option<f64>,
    pub target: Option<f64>,
    pub minutes_saved_per_accepted: f64,
    /// What an hour of a reviewer's time costs (in the currency of model prices, US dollars),
    /// for the cost per accepted output; 0 when unset.
    pub reviewer_cost_per_hour: f64,
    /// The minutes a week the workflow was expected to save when it was proposed (intake);
    /// after 30 days in production the portfolio holds the realised minutes against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_minutes_saved_per_week: Option<f64>,
}

/// The prompt templates (minijinja over the input object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptSpec {
    pub system: Option<Located<String>>,
    pub user: Located<String>,
    /// Text the answer starts with, for providers that can take it.
    pub assistant_prefix: Option<String>,
    /// Solved cases shown to the model before the input (in-context examples).
    pub examples: Option<ExamplesSpec>,
}

impl PromptSpec {
    /// The template texts: the system's, if any, then the user's.
    pub fn texts(&self) -> Vec<&str> {
        self.system
            .iter()
            .map(|s| s.value.as_str())
            .chain([self.user.value.as_str()])
            .collect()
    }
}

/// `[prompt] examples = { from = "datasets/NAME.jsonl", k = 4, select = "similar" }`: cases of
/// a dataset shown to the model as user/assistant turns before the input, the user turn being
/// the case's input through the workflow's own template and the assistant turn its expected
/// output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExamplesSpec {
    /// The dataset file, relative to the project folder.
    pub from: Located<String>,
    /// How many examples (per label, for `balanced`).
    pub k: usize,
    pub select: ExampleSelect,
}

/// How examples are chosen for an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExampleSelect {
    /// The k cases nearest to the input (cosine similarity of the embedded MiniLM's vectors
    /// of the rendered user message).
    Similar,
    /// The first k cases of the file.
    Fixed,
    /// The first k cases of each label, labels in the order they first appear.
    Balanced,
}

/// Default number of examples.
pub const DEFAULT_EXAMPLES: u64 = 4;
/// At most this many examples (per label): each one lengthens every prompt.
pub const MAX_EXAMPLES: u64 = 32;

/// What a valid output looks like.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum OutputContract {
    /// Exactly one of these labels.
    Labels(Vec<String>),
    /// A JSON value valid against this schema.
    Json(Json),
    /// Free text, optionally bounded.
    Text { max_chars: Option<usize> },
}

/// `[output]`: the contract and how to enforce it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputSpec {
    pub contract: OutputContract,
    /// Ask the model once more, with the validation error, when its answer breaks the contract.
    pub retry_on_invalid: bool,
    /// Let providers that can (the local model) keep the answer to the contract while
    /// decoding: choose among the labels by likelihood, or decode JSON under the mask of the
    /// `json_schema`, instead of generating free text.
    pub constrained: bool,
}

/// `[route]`: models in fallback order and call parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSpec {
    pub models: Vec<Located<String>>,
    pub timeout_ms: u64,
    pub retries: u32,
    pub temperature: f32,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

/// `[eval]`: the fixed test set and its gates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalSpec {
    pub dataset: Option<Located<String>>,
    pub scorers: Vec<String>,
    pub gate: Vec<(String, f64)>,
    pub max_regression: Vec<(String, f64)>,
    /// The LLM-as-judge settings, required when `scorers` has `llm_judge`.
    pub judge: Option<JudgeSpec>,
    /// `min_cases`: the eval refuses to run on a dataset with fewer answered cases (a workflow
    /// accepted from intake starts with an empty dataset and a minimum of 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_cases: Option<u64>,
}

/// `[eval] judge = { model = "…", rubric = "…", scale = "unit" | "five" }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeSpec {
    /// A model name from `shopfloor.toml`.
    pub model: Located<String>,
    /// What a good output is, in words the judge model grades against.
    pub rubric: String,
    pub scale: crate::scorers::JudgeScale,
}

/// A parsed workflow. Cross-file checks (models, datasets) are in [`super::validate_project`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workflow {
    pub name: WorkflowName,
    /// The file, relative to the project folder.
    pub file: String,
    pub description: String,
    pub owner: Option<String>,
    pub stage: Stage,
    pub risk: RiskTier,
    pub data_class: DataClass,
    pub outcome: Option<Outcome>,
    pub input_schema: Json,
    pub prompt: PromptSpec,
    pub output: OutputSpec,
    pub route: RouteSpec,
    pub eval: Option<EvalSpec>,
    pub review: ReviewSpec,
    /// `[variants.NAME]`: other versions of the prompt and route, for experiments.
    pub variants: Vec<VariantSpec>,
    /// The variant this is, when made by [`Workflow::variant`].
    pub variant: Option<String>,
}

/// `[variants.NAME]`: the workflow with some of its prompt and route replaced. A variant has
/// a version of its own, is evaluated with `shopfloor eval --variant NAME`, and may take
/// production traffic in an experiment once an eval of that version passed the gates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantSpec {
    pub name: Located<String>,
    /// What the variant tries, in a line.
    pub description: Option<String>,
    pub prompt: PromptFields,
    pub route: RouteFields,
}

/// The fields of a `[prompt]` table as written: a workflow's must have `user`; a variant's
/// replace the workflow's that they name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PromptFields {
    pub system: Option<Located<String>>,
    pub user: Option<Located<String>>,
    pub assistant_prefix: Option<String>,
    pub examples: Option<ExamplesSpec>,
}

/// The fields of a `[route]` table as written (see [`PromptFields`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteFields {
    pub models: Option<Vec<Located<String>>>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
}

/// A name no variant may take: an experiment's arms are the workflow (`control`) and a variant.
pub const CONTROL: &str = "control";

impl Workflow {
    /// The workflow as variant `name` makes it, or `None` when it has no such variant.
    pub fn variant(&self, name: &str) -> Option<Workflow> {
        let variant = self.variants.iter().find(|v| v.name.value == name)?;
        let mut out = self.clone();
        out.variants = Vec::new();
        out.variant = Some(name.to_string());
        let p = &variant.prompt;
        if let Some(system) = &p.system {
            out.prompt.system = Some(system.clone());
        }
        if let Some(user) = &p.user {
            out.prompt.user = user.clone();
        }
        if let Some(prefix) = &p.assistant_prefix {
            out.prompt.assistant_prefix = Some(prefix.clone());
        }
        if let Some(examples) = &p.examples {
            out.prompt.examples = Some(examples.clone());
        }
        let r = &variant.route;
        let route = &mut out.route;
        if let Some(models) = &r.models {
            route.models = models.clone();
        }
        route.timeout_ms = r.timeout_ms.unwrap_or(route.timeout_ms);
        route.retries = r.retries.unwrap_or(route.retries);
        route.temperature = r.temperature.unwrap_or(route.temperature);
        route.max_tokens = r.max_tokens.or(route.max_tokens);
        route.top_p = r.top_p.or(route.top_p);
        route.seed = r.seed.or(route.seed);
        Some(out)
    }
}

/// Parse one workflow file. `name` is the file stem. Returns the workflow when it could be read
/// at all, and every problem found.
pub fn parse_workflow(name: &str, file: &str, text: &str) -> (Option<Workflow>, Vec<Diagnostic>) {
    let source = Source::new(file, text);
    let workflow = parse(&source, text).and_then(|doc| {
        let root = TableReader::root(&source, &doc);
        let workflow = read_workflow(name, file, &root);
        root.finish();
        workflow
    });
    (workflow, source.into_diagnostics())
}

fn read_workflow(name: &str, file: &str, root: &TableReader<'_, '_>) -> Option<Workflow> {
    let name = match WorkflowName::parse(name) {
        Ok(n) => Some(n),
        Err(message) => {
            root.source().report(None, "", message);
            None
        }
    };
    let description = root
        .string("description")
        .map(|d| d.value)
        .unwrap_or_default();
    let owner = root.string("owner");
    let stage = root.choice("stage", Stage::CHOICES).unwrap_or(Stage::Draft);
    let risk = root
        .choice("risk", RiskTier::CHOICES)
        .unwrap_or(RiskTier::Low);
    let data_class = root
        .choice("data_class", DataClass::CHOICES)
        .unwrap_or(DataClass::Internal);
    let outcome = optional_table(root, "outcome", read_outcome).flatten();
    check_accountable(
        root,
        stage,
        owner.as_ref().map(|o| o.value.as_str()),
        outcome.is_some(),
    );
    let input_schema = required_table(root, "input", "an [input] table with a schema", read_input);
    let prompt = required_table(
        root,
        "prompt",
        "a [prompt] table with a user template",
        read_prompt,
    );
    let output = required_table(
        root,
        "output",
        "an [output] table with labels, json_schema or text",
        read_output,
    );
    let route = required_table(
        root,
        "route",
        "a [route] table with models = [\"…\"]",
        read_route,
    );
    let eval = optional_table(root, "eval", read_eval);
    let review = optional_table(root, "review", read_review);
    let variants = optional_table(root, "variants", read_variants).unwrap_or_default();
    if let (Some(review), Some(OutputContract::Labels(labels))) =
        (&review, output.as_ref().map(|o| &o.contract))
    {
        for held in review.hold_labels.iter().filter(|h| !labels.contains(h)) {
            root.source().report(
                None,
                "review.hold_labels",
                format!(
                    "\"{held}\" is not one of the output labels: {}",
                    labels.join(", ")
                ),
            );
        }
    }
    Some(Workflow {
        name: name?,
        file: file.to_string(),
        description,
        owner: owner.map(|o| o.value),
        stage,
        risk,
        data_class,
        outcome,
        input_schema: input_schema?,
        prompt: prompt?,
        output: output?,
        route: route?,
        eval,
        review: review.unwrap_or_default(),
        variants,
        variant: None,
    })
}

/// `[variants.NAME]` tables: each replaces some of `prompt` and `route`.
fn read_variants(t: &TableReader<'_, '_>) -> Vec<VariantSpec> {
    let mut out = Vec::new();
    for (name, table) in t.entries() {
        let Some(v) = table else { continue };
        let valid = !name.value.is_empty()
            && name.value.len() <= 40
            && name
                .value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            v.report_here(format!(
                "\"{}\" is not a variant name: use 1 to 40 lowercase letters, digits, - or _",
                name.value
            ));
        } else if name.value == CONTROL {
            v.report_here(format!(
                "\"{CONTROL}\" is the workflow itself in an experiment; name the variant otherwise"
            ));
        }
        let description = v.string("description").map(|d| d.value);
        let prompt = optional_table(&v, "prompt", |p| read_prompt_fields(p, false));
        let route = optional_table(&v, "route", read_route_fields);
        if prompt.is_none() && route.is_none() {
            v.report_here(
                "a variant changes something: give it a prompt or route table, e.g. [variants.NAME.prompt] system = \"…\"".into(),
            );
        }
        v.finish();
        out.push(VariantSpec {
            name,
            description,
            prompt: prompt.unwrap_or_default(),
            route: route.unwrap_or_default(),
        });
    }
    out
}

/// The sub-table `key`, read by `read`; reported missing (`expected`) when absent.
fn required_table<T>(
    root: &TableReader<'_, '_>,
    key: &'static str,
    expected: &str,
    read: impl FnOnce(&TableReader<'_, '_>) -> Option<T>,
) -> Option<T> {
    let Some(table) = root.table(key) else {
        root.missing(key, expected);
        return None;
    };
    let value = read(&table);
    table.finish();
    value
}

/// The sub-table `key`, read by `read`, if the file has one.
fn optional_table<T>(
    root: &TableReader<'_, '_>,
    key: &'static str,
    read: impl FnOnce(&TableReader<'_, '_>) -> T,
) -> Option<T> {
    root.table(key).map(|table| {
        let value = read(&table);
        table.finish();
        value
    })
}

/// Past draft, a workflow needs someone accountable and an outcome to be accountable for.
fn check_accountable(
    root: &TableReader<'_, '_>,
    stage: Stage,
    owner: Option<&str>,
    has_outcome: bool,
) {
    if stage == Stage::Draft {
        return;
    }
    if owner.is_none_or(|o| o.trim().is_empty()) {
        root.source().report(
            None,
            "owner",
            format!("a {} workflow needs an owner: the person accountable for its outcome, e.g. owner = \"dana@example.com\"", stage.as_str()),
        );
    }
    if !has_outcome {
        root.source().report(
            None,
            "outcome",
            format!("a {} workflow needs an [outcome] with a kpi, baseline, target and minutes_saved_per_accepted", stage.as_str()),
        );
    }
}

fn read_input(t: &TableReader<'_, '_>) -> Option<Json> {
    let schema = t.json("schema");
    if schema.is_none() && t.line_of("schema").is_none() {
        t.missing(
            "schema",
            "a JSON Schema for the input, e.g. { type = \"object\", properties = { … } }",
        );
    }
    schema
}

fn read_outcome(t: &TableReader<'_, '_>) -> Option<Outcome> {
    let kpi = t.required_string(
        "kpi",
        "what the business measures, e.g. \"minutes to first response\"",
    );
    let baseline = t.number("baseline");
    let target = t.number("target");
    let minutes = t.number("minutes_saved_per_accepted");
    if minutes.is_none() && t.line_of("minutes_saved_per_accepted").is_none() {
        t.missing(
            "minutes_saved_per_accepted",
            "the minutes a person saves per accepted output",
        );
    }
    if minutes.is_some_and(|m| m < 0.0) {
        t.invalid("minutes_saved_per_accepted", "cannot be negative".into());
    }
    let reviewer_cost = t.number("reviewer_cost_per_hour");
    if reviewer_cost.is_some_and(|c| c < 0.0) {
        t.invalid("reviewer_cost_per_hour", "cannot be negative".into());
    }
    let predicted = t.number("predicted_minutes_saved_per_week");
    if predicted.is_some_and(|p| p < 0.0) {
        t.invalid(
            "predicted_minutes_saved_per_week",
            "cannot be negative".into(),
        );
    }
    Some(Outcome {
        kpi: kpi?.value,
        baseline,
        target,
        minutes_saved_per_accepted: minutes?,
        reviewer_cost_per_hour: reviewer_cost.unwrap_or(0.0),
        predicted_minutes_saved_per_week: predicted,
    })
}

fn read_prompt(t: &TableReader<'_, '_>) -> Option<PromptSpec> {
    let fields = read_prompt_fields(t, true);
    Some(PromptSpec {
        system: fields.system,
        user: fields.user?,
        assistant_prefix: fields.assistant_prefix,
        examples: fields.examples,
    })
}

/// The fields of a prompt table; `user` reported missing only where it is `required`.
fn read_prompt_fields(t: &TableReader<'_, '_>, required: bool) -> PromptFields {
    let system = t.string("system");
    let user = if required {
        t.required_string(
            "user",
            "the user message template, e.g. \"Subject: {{ subject }}\"",
        )
    } else {
        t.string("user")
    };
    let assistant_prefix = t.string("assistant_prefix").map(|p| p.value);
    let examples = t.table("examples").and_then(|e| {
        let from = e.required_string(
            "from",
            "a dataset file of solved cases, e.g. \"datasets/ticket-triage.jsonl\"",
        );
        let k = e
            .unsigned_at_most("k", MAX_EXAMPLES)
            .unwrap_or(DEFAULT_EXAMPLES);
        if k == 0 {
            e.invalid(
                "k",
                "expected at least 1 (leave examples out for none)".into(),
            );
        }
        let select = e
            .choice(
                "select",
                &[
                    ("similar", ExampleSelect::Similar),
                    ("fixed", ExampleSelect::Fixed),
                    ("balanced", ExampleSelect::Balanced),
                ],
            )
            .unwrap_or(ExampleSelect::Similar);
        e.finish();
        Some(ExamplesSpec {
            from: from?,
            k: k.max(1) as usize,
            select,
        })
    });
    PromptFields {
        system,
        user,
        assistant_prefix,
        examples,
    }
}

fn read_output(t: &TableReader<'_, '_>) -> Option<OutputSpec> {
    let labels = t.strings("labels");
    let json_schema = t.json("json_schema");
    let text = t.table("text").map(|text| {
        let max = text.unsigned("max_chars").map(|n| n as usize);
        text.finish();
        max
    });
    let retry_on_invalid = t.boolean("retry_on_invalid").unwrap_or(true);
    let constrained = t.boolean("constrained").unwrap_or(true);
    let given = [labels.is_some(), json_schema.is_some(), text.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given != 1 {
        t.report_here(format!(
            "expected exactly one of labels = [...], json_schema = {{...}} or text = {{ max_chars = N }}; found {given}"
        ));
        return None;
    }
    let contract = if let Some(labels) = labels {
        check_labels(t, &labels);
        OutputContract::Labels(labels.into_iter().map(|l| l.value).collect())
    } else if let Some(schema) = json_schema {
        if let Err(e) = jsonschema::meta::validate(&schema) {
            t.invalid("json_schema", format!("not a valid JSON Schema: {e}"));
        }
        OutputContract::Json(schema)
    } else {
        OutputContract::Text {
            max_chars: text.flatten(),
        }
    };
    Some(OutputSpec {
        contract,
        retry_on_invalid,
        constrained,
    })
}

/// The longest label, in characters. Drift counts outputs by label from a rollup that keeps
/// string outputs of up to 200 characters of JSON: 64 characters fit with room for escapes.
pub const MAX_LABEL_CHARS: usize = 64;

fn check_labels(t: &TableReader<'_, '_>, labels: &[Located<String>]) {
    if labels.is_empty() {
        t.invalid("labels", "is empty; expected at least two labels".into());
    }
    let mut seen: Vec<String> = Vec::new();
    for label in labels {
        let normal = crate::output::normalize_label(&label.value);
        if normal.is_empty() {
            t.invalid(
                "labels",
                format!("line {}: empty label", label.line.unwrap_or(0)),
            );
        } else if label.value.chars().count() > MAX_LABEL_CHARS {
            t.invalid(
                "labels",
                format!(
                    "\"{}…\" is {} characters long; a label is a name of at most \
                     {MAX_LABEL_CHARS} characters (drift counts outputs by label)",
                    label.value.chars().take(20).collect::<String>(),
                    label.value.chars().count()
                ),
            );
        } else if label.value.chars().any(char::is_control) {
            t.invalid(
                "labels",
                format!(
                    "{:?} contains a control character (a line break or tab); a label is one line",
                    label.value
                ),
            );
        } else if seen.contains(&normal) {
            t.invalid(
                "labels",
                format!(
                    "\"{}\" is listed twice (labels are matched ignoring case and punctuation)",
                    label.value
                ),
            );
        } else {
            seen.push(normal);
        }
    }
}

fn read_route(t: &TableReader<'_, '_>) -> Option<RouteSpec> {
    let fields = read_route_fields(t);
    if fields.models.is_none() && t.line_of("models").is_none() {
        t.invalid(
            "models",
            "expected at least one model name from shopfloor.toml, in fallback order".into(),
        );
    }
    Some(RouteSpec {
        models: fields.models?,
        timeout_ms: fields.timeout_ms.unwrap_or(30_000),
        retries: fields.retries.unwrap_or(2),
        temperature: fields.temperature.unwrap_or(0.0),
        max_tokens: fields.max_tokens,
        top_p: fields.top_p,
        seed: fields.seed,
    })
}

/// The fields of a route table that are set, each checked.
fn read_route_fields(t: &TableReader<'_, '_>) -> RouteFields {
    let models = t.strings("models");
    if models.as_ref().is_some_and(|m| m.is_empty()) {
        t.invalid(
            "models",
            "expected at least one model name from shopfloor.toml, in fallback order".into(),
        );
    }
    let timeout_ms = t.unsigned_at_most("timeout_ms", super::MAX_TIMEOUT_MS);
    if timeout_ms == Some(0) {
        t.invalid("timeout_ms", "must be more than 0".into());
    }
    let retries = t.unsigned("retries");
    if let Some(retries) = retries.filter(|r| *r > 10) {
        t.invalid(
            "retries",
            format!("{retries} is too many; expected 0 to 10"),
        );
    }
    let temperature = t.number("temperature");
    if let Some(temperature) = temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        t.invalid(
            "temperature",
            format!("{temperature} is out of range; expected 0 to 2"),
        );
    }
    let max_tokens = t
        .unsigned_at_most("max_tokens", u64::from(u32::MAX))
        .map(|n| n as u32);
    let top_p = t.number("top_p");
    if top_p.is_some_and(|p| !(0.0..=1.0).contains(&p) || p == 0.0) {
        t.invalid("top_p", "expected a number above 0 and at most 1".into());
    }
    let seed = t.unsigned("seed");
    RouteFields {
        models: models.filter(|m| !m.is_empty()),
        timeout_ms,
        retries: retries.map(|r| r.min(10) as u32),
        temperature: temperature.map(|t| t as f32),
        max_tokens,
        top_p: top_p.map(|p| p as f32),
        seed,
    }
}

fn read_eval(t: &TableReader<'_, '_>) -> EvalSpec {
    let dataset = t.string("dataset");
    let scorers: Vec<String> = t
        .strings("scorers")
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.value)
        .collect();
    for scorer in &scorers {
        if !known_scorers().any(|known| known == scorer) {
            t.invalid("scorers", unknown_scorer(scorer));
        }
    }
    let read_gates = |key: &'static str| -> Vec<(String, f64)> {
        let gates = t.numbers(key).unwrap_or_default();
        for (name, _) in &gates {
            if !scorers.contains(&name.value) {
                t.source().report(
                    None,
                    &format!("{}.{}", t.field(key), name.value),
                    format!(
                        "line {}: gates a scorer that is not in scorers = [{}]",
                        name.line.unwrap_or(0),
                        scorers.join(", ")
                    ),
                );
            }
        }
        gates.into_iter().map(|(n, v)| (n.value, v)).collect()
    };
    let gate = read_gates("gate");
    let max_regression = read_gates("max_regression");
    let judge = t.table("judge").and_then(|j| {
        let judge = read_judge(&j);
        j.finish();
        judge
    });
    if judge.is_none()
        && scorers.iter().any(|s| s == crate::scorers::JUDGE_SCORER)
        && t.line_of("judge").is_none()
    {
        t.missing(
            "judge",
            "a judge for llm_judge: judge = { model = \"NAME\", rubric = \"what a good answer is\" }",
        );
    }
    let min_cases = t.unsigned("min_cases");
    EvalSpec {
        dataset,
        scorers,
        gate,
        max_regression,
        judge,
        min_cases,
    }
}

fn read_judge(t: &TableReader<'_, '_>) -> Option<JudgeSpec> {
    let model = t.required_string("model", "a model name from shopfloor.toml");
    let rubric = t.required_string(
        "rubric",
        "what a good answer is, for the judge to grade against",
    );
    let scale = t
        .choice(
            "scale",
            &[
                ("unit", crate::scorers::JudgeScale::Unit),
                ("five", crate::scorers::JudgeScale::FivePoint),
            ],
        )
        .unwrap_or(crate::scorers::JudgeScale::Unit);
    Some(JudgeSpec {
        model: model?,
        rubric: rubric?.value,
        scale,
    })
}
