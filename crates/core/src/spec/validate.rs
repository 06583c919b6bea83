//! Checks across files: routes against models, data classes, templates against the input
//! schema, eval datasets against the file system.

use serde_json::Value as Json;

use super::config::{ModelUse, ProjectConfig};
use super::provider::ProviderKind;
use super::reader::Located;
use super::workflow::{ExampleSelect, OutputContract, Workflow};
use crate::template::{PromptTemplates, EXAMPLES_VARIABLE};
use crate::Diagnostic;

/// What the cross-file checks need; the caller does the I/O.
pub struct ProjectFiles<'a> {
    pub config: &'a ProjectConfig,
    pub workflows: &'a [Workflow],
    /// Whether a path relative to the project folder is an existing file.
    pub file_exists: &'a dyn Fn(&str) -> bool,
    /// The project's prompt patterns, which templates may import.
    pub patterns: &'a crate::template::Patterns,
}

/// Every cross-file problem of a project.
pub fn validate_project(project: &ProjectFiles<'_>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for workflow in project.workflows {
        let before = out.len();
        check_route(project.config, workflow, &mut out);
        check_confidence(project.config, workflow, &mut out);
        check_input_and_templates(project, workflow, &mut out);
        check_eval(project, workflow, &mut out);
        check_examples(project, workflow, &mut out);
        let own: Vec<Diagnostic> = out[before..].to_vec();
        // A variant is checked as the workflow it makes; what it shares with the workflow is
        // reported once, for the workflow.
        for variant in &workflow.variants {
            let Some(made) = workflow.variant(&variant.name.value) else {
                continue;
            };
            let mut found = Vec::new();
            check_route(project.config, &made, &mut found);
            check_confidence(project.config, &made, &mut found);
            check_input_and_templates(project, &made, &mut found);
            check_examples(project, &made, &mut found);
            for mut d in found {
                if own.contains(&d) {
                    continue;
                }
                d.field = format!("variants.{}.{}", variant.name.value, d.field);
                out.push(d);
            }
        }
    }
    out
}

fn check_route(config: &ProjectConfig, workflow: &Workflow, out: &mut Vec<Diagnostic>) {
    for name in &workflow.route.models {
        match config.models.get(&name.value) {
            None => {
                let known: Vec<&str> = config.models.keys().map(String::as_str).collect();
                out.push(Diagnostic::new(
                    &workflow.file,
                    name.line,
                    "route.models",
                    format!(
                        "unknown model \"{}\"; models defined in shopfloor.toml: {}",
                        name.value,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            Some(model) if model.kind != ModelUse::Chat => {
                out.push(Diagnostic::new(
                    &workflow.file,
                    name.line,
                    "route.models",
                    format!(
                        "model \"{}\" is an embedding model (kind = \"embedding\"); a workflow's route needs chat models",
                        name.value
                    ),
                ));
            }
            Some(model) if !model.data_classes.contains(&workflow.data_class) => {
                out.push(Diagnostic::new(
                    &workflow.file,
                    name.line,
                    "route.models",
                    format!(
                        "model \"{}\" may not see {} data (its data_classes are [{}]); route this workflow to a model allowed {} data, or change the model's data_classes in shopfloor.toml",
                        name.value,
                        workflow.data_class,
                        model.data_classes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
                        workflow.data_class,
                    ),
                ));
            }
            Some(_) => {}
        }
    }
}

/// `[review] hold_below_confidence` needs a model that reports a confidence: today only the
/// embedded model choosing among labels does. Without one nothing would ever be held for it.
fn check_confidence(config: &ProjectConfig, workflow: &Workflow, out: &mut Vec<Diagnostic>) {
    if workflow.review.hold_below_confidence.is_none() {
        return;
    }
    let choice = workflow.output.constrained
        && matches!(workflow.output.contract, OutputContract::Labels(_));
    let local = workflow.route.models.iter().any(|name| {
        config
            .models
            .get(&name.value)
            .is_some_and(|m| m.provider == ProviderKind::Local)
    });
    if !(choice && local) {
        out.push(Diagnostic::new(
            &workflow.file,
            None,
            "review.hold_below_confidence",
            "no model of this route gives a confidence, so nothing would be held by it: a confidence comes from the embedded model (provider = \"local\") choosing among [output] labels (constrained, the default); route the workflow to such a model or remove hold_below_confidence",
        ));
    }
}

fn check_input_and_templates(
    project: &ProjectFiles<'_>,
    workflow: &Workflow,
    out: &mut Vec<Diagnostic>,
) {
    let schema = &workflow.input_schema;
    let schema_ok = match jsonschema::meta::validate(schema) {
        Ok(()) => true,
        Err(e) => {
            out.push(Diagnostic::new(
                &workflow.file,
                None,
                "input.schema",
                format!("not a valid JSON Schema: {e}"),
            ));
            false
        }
    };
    if schema_ok && schema.get("type").and_then(Json::as_str) != Some("object") {
        out.push(Diagnostic::new(
            &workflow.file,
            None,
            "input.schema",
            "expected type = \"object\": a workflow's input is an object whose properties the templates use",
        ));
    }
    let declared: Vec<&str> = schema
        .get("properties")
        .and_then(Json::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    match PromptTemplates::compile_with(&workflow.prompt, project.patterns) {
        Err(errors) => {
            for e in errors {
                let line = template_line(workflow, e.field);
                out.push(Diagnostic::new(
                    &workflow.file,
                    line,
                    e.field,
                    format!("template error: {}", e.message),
                ));
            }
        }
        Ok(templates) => {
            for (field, variables) in templates.variables() {
                for variable in variables {
                    // `[prompt] examples` puts its examples in `examples` when a template asks.
                    let examples =
                        variable == EXAMPLES_VARIABLE && workflow.prompt.examples.is_some();
                    if !examples && !declared.contains(&variable.as_str()) {
                        out.push(Diagnostic::new(
                            &workflow.file,
                            template_line(workflow, field),
                            field,
                            format!(
                                "uses variable \"{variable}\" which the input schema does not define; declared properties: {}",
                                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
                            ),
                        ));
                    }
                }
            }
        }
    }
}

fn template_line(workflow: &Workflow, field: &str) -> Option<usize> {
    match field {
        "prompt.system" => workflow.prompt.system.as_ref().and_then(|s| s.line),
        _ => workflow.prompt.user.line,
    }
}

/// The examples file must exist; `balanced` needs labels to balance.
fn check_examples(project: &ProjectFiles<'_>, workflow: &Workflow, out: &mut Vec<Diagnostic>) {
    let Some(examples) = &workflow.prompt.examples else {
        return;
    };
    let from = &examples.from;
    check_file(project, workflow, from, "prompt.examples.from", out);
    if examples.select == ExampleSelect::Balanced
        && !matches!(workflow.output.contract, OutputContract::Labels(_))
    {
        out.push(Diagnostic::new(
            &workflow.file,
            from.line,
            "prompt.examples.select",
            "\"balanced\" takes k examples per label, and this workflow's output has no labels; use \"similar\" or \"fixed\"",
        ));
    }
}

fn check_eval(project: &ProjectFiles<'_>, workflow: &Workflow, out: &mut Vec<Diagnostic>) {
    check_judge(project.config, workflow, out);
    let Some(dataset) = workflow.eval.as_ref().and_then(|e| e.dataset.as_ref()) else {
        return;
    };
    check_file(project, workflow, dataset, "eval.dataset", out);
}

/// A file the workflow names at `field` must exist in the project folder.
fn check_file(
    project: &ProjectFiles<'_>,
    workflow: &Workflow,
    path: &Located<String>,
    field: &str,
    out: &mut Vec<Diagnostic>,
) {
    if !(project.file_exists)(&path.value) {
        out.push(Diagnostic::new(
            &workflow.file,
            path.line,
            field,
            format!(
                "file \"{}\" does not exist (paths are relative to the project folder)",
                path.value
            ),
        ));
    }
}

/// The judge model must exist and may see the workflow's data: it reads inputs and outputs.
fn check_judge(config: &ProjectConfig, workflow: &Workflow, out: &mut Vec<Diagnostic>) {
    let Some(judge) = workflow.eval.as_ref().and_then(|e| e.judge.as_ref()) else {
        return;
    };
    match config.models.get(&judge.model.value) {
        None => out.push(Diagnostic::new(
            &workflow.file,
            judge.model.line,
            "eval.judge.model",
            format!("unknown model \"{}\"", judge.model.value),
        )),
        Some(model) if model.kind != ModelUse::Chat => out.push(Diagnostic::new(
            &workflow.file,
            judge.model.line,
            "eval.judge.model",
            format!(
                "model \"{}\" is an embedding model; a judge must be a chat model",
                judge.model.value
            ),
        )),
        Some(model) if !model.data_classes.contains(&workflow.data_class) => {
            out.push(Diagnostic::new(
                &workflow.file,
                judge.model.line,
                "eval.judge.model",
                format!(
                "judge model \"{}\" may not see {} data; the judge reads the inputs and outputs",
                judge.model.value, workflow.data_class
            ),
            ))
        }
        Some(_) => {}
    }
}
