//! Prompt templates: minijinja over the input object.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value as Json;

use crate::spec::PromptSpec;

/// A prompt rendered for one input, before it is shaped into a provider's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedPrompt {
    pub system: Option<String>,
    pub user: String,
    pub assistant_prefix: Option<String>,
    /// Solved cases shown before the user message (`[prompt] examples`), in order.
    pub examples: Vec<Shot>,
    /// The examples are in the templates' text (they read `examples`), not separate turns.
    pub examples_in_template: bool,
}

/// The variable a template reads `[prompt] examples` from, to place them itself: a list of
/// `{id, input, user, answer}` (`user`: the input through the template without examples).
pub const EXAMPLES_VARIABLE: &str = "examples";

/// A solved case shown to the model before the input: its user turn (the case's input
/// through the workflow's template) and the answer (its expected output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shot {
    /// The case's id in its dataset.
    pub id: String,
    /// The case's input (for a template that places examples itself: `{{ e.input.FIELD }}`).
    pub input: Json,
    pub user: String,
    pub answer: String,
}

/// The folder of a project that holds shared prompt patterns.
pub const PATTERNS_DIR: &str = "patterns";

/// A project's prompt patterns: `patterns/NAME.j2` files of minijinja macros (`classify`,
/// `extract`, `few_shot`, …) that workflows import by path, e.g.
/// `{% from "patterns/classify.j2" import classify %}`. Core reads no files: the caller passes
/// each file's path and text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patterns {
    sources: BTreeMap<String, String>,
}

impl Patterns {
    /// Patterns from `(path, text)` pairs, paths relative to the project (`patterns/x.j2`).
    pub fn new(sources: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            sources: sources.into_iter().collect(),
        }
    }

    /// Every pattern's path, in order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The macros a pattern defines, in the order written.
    pub fn macros(&self, path: &str) -> Vec<String> {
        let Some(text) = self.sources.get(path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("macro ") {
            rest = rest[at + "macro ".len()..].trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && rest[name.len()..].trim_start().starts_with('(') {
                out.push(name);
            }
        }
        out
    }

    /// The patterns `texts` import, and those they import in turn, each with the SHA-256 of
    /// its text: what a workflow's version covers.
    pub fn used_by(&self, texts: &[&str]) -> BTreeMap<String, String> {
        use sha2::{Digest, Sha256};
        let mut used = BTreeMap::new();
        let mut queue: Vec<String> = texts.iter().flat_map(|t| referenced(t)).collect();
        while let Some(path) = queue.pop() {
            if used.contains_key(&path) {
                continue;
            }
            let Some(text) = self.sources.get(&path) else {
                continue;
            };
            queue.extend(referenced(text));
            used.insert(path, hex::encode(Sha256::digest(text.as_bytes())));
        }
        used
    }
}

/// The pattern paths a template's text names (`"patterns/NAME.j2"` in quotes).
pub fn referenced(text: &str) -> Vec<String> {
    let prefix = format!("{PATTERNS_DIR}/");
    let mut out = Vec::new();
    for quote in ['"', '\''] {
        for piece in text.split(quote).skip(1).step_by(2) {
            if piece.starts_with(&prefix) && piece.ends_with(".j2") && !piece.contains(quote) {
                out.push(piece.to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A workflow's templates, compiled once.
pub struct PromptTemplates {
    env: Environment<'static>,
    has_system: bool,
    assistant_prefix: Option<String>,
    /// A template reads [`EXAMPLES_VARIABLE`]: it places the examples itself.
    reads_examples: bool,
    /// The patterns the templates import (and those they import), each with the hash of its
    /// text: what the workflow's version covers.
    patterns_used: BTreeMap<String, String>,
}

/// The longest prompt a template may render. An input can make a template repeat something
/// (`{{ "=" * width }}`, `{{ tags * n }}`): past this, rendering stops with an error instead
/// of filling the memory.
const MAX_RENDERED: usize = 4 << 20;

/// The most items of a list a template may print at once.
const MAX_PRINTED_ITEMS: usize = 100_000;

/// Template instructions one rendering may execute: loops over loops of inputs end with an
/// error instead of running for hours. A prompt of the example needs a few hundred.
const FUEL: u64 = 5_000_000;

/// A writer that takes at most [`MAX_RENDERED`] bytes, then refuses.
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    full: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED {
            self.full = true;
            return Err(std::io::Error::other("the rendered prompt is too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which template a problem is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// `prompt.system` or `prompt.user`.
    pub field: &'static str,
    pub message: String,
}

impl PromptTemplates {
    /// Compile the system and user templates; syntax errors name the template and line.
    pub fn compile(prompt: &PromptSpec) -> Result<Self, Vec<TemplateError>> {
        Self::compile_with(prompt, &Patterns::default())
    }

    /// Compile the templates with the project's patterns, which they may import.
    pub fn compile_with(
        prompt: &PromptSpec,
        patterns: &Patterns,
    ) -> Result<Self, Vec<TemplateError>> {
        let mut env = Environment::new();
        // Optional input fields that are absent render as empty instead of failing the run;
        // `check` has already verified every variable is declared in the input schema.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        // A list repeated by a number from the input (`{{ tags * n }}`) is lazy and knows its
        // length: refuse to print a huge one instead of writing it item by item.
        env.set_formatter(|out, state, value| {
            let huge = value.kind() != minijinja::value::ValueKind::String
                && value.len().is_some_and(|n| n > MAX_PRINTED_ITEMS);
            if huge {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!(
                        "a list of more than {MAX_PRINTED_ITEMS} items cannot go into a prompt"
                    ),
                ));
            }
            minijinja::escape_formatter(out, state, value)
        });
        let mut errors = Vec::new();
        let texts = prompt.texts();
        // The patterns the templates import, and those they import in turn.
        let patterns_used = patterns.used_by(&texts);
        for path in patterns_used.keys() {
            let text = patterns.sources[path].clone();
            if let Err(e) = env.add_template_owned(path.clone(), text) {
                errors.push(TemplateError {
                    field: "prompt.user",
                    message: format!("{path}: {}", describe(&e)),
                });
            }
        }
        for path in texts.iter().flat_map(|t| referenced(t)) {
            if !patterns.sources.contains_key(&path) {
                errors.push(TemplateError {
                    field: "prompt.user",
                    message: format!(
                        "imports {path}, which is not in the project; patterns: {}",
                        if patterns.sources.is_empty() {
                            "none (write them under patterns/)".to_string()
                        } else {
                            patterns.paths().collect::<Vec<_>>().join(", ")
                        }
                    ),
                });
            }
        }
        if let Some(system) = &prompt.system {
            if let Err(e) = env.add_template_owned("system", system.value.clone()) {
                errors.push(TemplateError {
                    field: "prompt.system",
                    message: describe(&e),
                });
            }
        }
        if let Err(e) = env.add_template_owned("user", prompt.user.value.clone()) {
            errors.push(TemplateError {
                field: "prompt.user",
                message: describe(&e),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut templates = Self {
            env,
            has_system: prompt.system.is_some(),
            assistant_prefix: prompt.assistant_prefix.clone(),
            reads_examples: false,
            patterns_used,
        };
        templates.reads_examples = templates
            .variables()
            .iter()
            .any(|(_, names)| names.contains(EXAMPLES_VARIABLE));
        Ok(templates)
    }

    /// The patterns the templates import, with the hash of each one's text.
    pub fn patterns_used(&self) -> &BTreeMap<String, String> {
        &self.patterns_used
    }

    /// The top-level variables each template reads, by field.
    pub fn variables(&self) -> Vec<(&'static str, BTreeSet<String>)> {
        let mut out = Vec::new();
        for (name, field) in [("system", "prompt.system"), ("user", "prompt.user")] {
            if let Ok(t) = self.env.get_template(name) {
                out.push((field, t.undeclared_variables(false).into_iter().collect()));
            }
        }
        out
    }

    /// `prompt` (rendered for `input`) with its `examples`: as turns before the user message,
    /// or, when a template reads [`EXAMPLES_VARIABLE`], rendered again with them in its hands.
    pub fn with_examples(
        &self,
        mut prompt: RenderedPrompt,
        input: &Json,
        examples: Vec<Shot>,
    ) -> Result<RenderedPrompt, TemplateError> {
        if !self.reads_examples {
            prompt.examples = examples;
            return Ok(prompt);
        }
        let mut context = match input {
            Json::Object(fields) => fields.clone(),
            _ => serde_json::Map::new(),
        };
        context.insert(
            EXAMPLES_VARIABLE.to_string(),
            serde_json::to_value(&examples).unwrap_or_default(),
        );
        let mut prompt = self.render(&Json::Object(context))?;
        prompt.examples = examples;
        prompt.examples_in_template = true;
        Ok(prompt)
    }

    /// Render for one input object.
    pub fn render(&self, input: &Json) -> Result<RenderedPrompt, TemplateError> {
        let render = |name: &str, field: &'static str| -> Result<String, TemplateError> {
            let template = self.env.get_template(name).map_err(|e| TemplateError {
                field,
                message: describe(&e),
            })?;
            let mut out = Capped::default();
            match template.render_captured_to(input, &mut out) {
                Ok(_) => Ok(String::from_utf8_lossy(&out.bytes).into_owned()),
                Err(_) if out.full => Err(TemplateError {
                    field,
                    message: format!(
                        "the rendered prompt is longer than {} MiB; check what the template repeats",
                        MAX_RENDERED >> 20
                    ),
                }),
                Err(e) => Err(TemplateError {
                    field,
                    message: describe(&e),
                }),
            }
        };
        let system = if self.has_system {
            Some(render("system", "prompt.system")?)
        } else {
            None
        };
        let user = render("user", "prompt.user")?;
        Ok(RenderedPrompt {
            system,
            user,
            assistant_prefix: self.assistant_prefix.clone(),
            examples: Vec::new(),
            examples_in_template: false,
        })
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut message = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    if let Some(line) = e.line() {
        message = format!("{message} (template line {line})");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Located;
    use serde_json::json;

    fn patterns() -> Patterns {
        Patterns::new([
            (
                "patterns/classify.j2".to_string(),
                "{% macro classify(labels, text) %}Answer with one of: {{ labels|join(\", \") }}.\n{{ text }}{% endmacro %}\n{% macro  unused_name (x) %}{% endmacro %}".to_string(),
            ),
            (
                "patterns/ticket.j2".to_string(),
                "{% from \"patterns/classify.j2\" import classify %}{% macro ticket(t) %}{{ classify([\"bug\", \"billing\"], t) }}{% endmacro %}".to_string(),
            ),
            ("patterns/other.j2".to_string(), "{% macro other() %}x{% endmacro %}".to_string()),
        ])
    }

    #[test]
    fn templates_import_patterns_and_versions_see_what_they_use() {
        let patterns = patterns();
        assert_eq!(
            patterns.macros("patterns/classify.j2"),
            ["classify", "unused_name"]
        );
        let user = "{% from 'patterns/ticket.j2' import ticket %}{{ ticket(subject) }}";
        let compiled = PromptTemplates::compile_with(&prompt(None, user), &patterns).unwrap();
        let rendered = compiled
            .render(&json!({"subject": "Charged twice"}))
            .unwrap();
        assert_eq!(
            rendered.user,
            "Answer with one of: bug, billing.\nCharged twice"
        );
        // The variables the template reads are the input's, not the macros'.
        assert_eq!(
            compiled.variables(),
            [("prompt.user", BTreeSet::from(["subject".to_string()]))]
        );
        // Used: the pattern named and the one it imports, never the others.
        let used = patterns.used_by(&[user]);
        assert_eq!(compiled.patterns_used(), &used);
        assert_eq!(
            used.keys().collect::<Vec<_>>(),
            ["patterns/classify.j2", "patterns/ticket.j2"]
        );
        let errors = PromptTemplates::compile_with(
            &prompt(None, "{% import \"patterns/nope.j2\" as p %}{{ p.x() }}"),
            &patterns,
        )
        .err()
        .unwrap();
        assert!(
            errors[0].message.contains("imports patterns/nope.j2, which is not in the project; patterns: patterns/classify.j2"),
            "{errors:?}"
        );
    }

    fn prompt(system: Option<&str>, user: &str) -> PromptSpec {
        PromptSpec {
            system: system.map(|s| Located::new(s.to_string(), None)),
            user: Located::new(user.to_string(), None),
            assistant_prefix: None,
            examples: None,
        }
    }

    #[test]
    fn renders_input_fields() {
        let t = PromptTemplates::compile(&prompt(
            Some("You route tickets."),
            "Subject: {{ subject }}\n{{ body }}",
        ))
        .unwrap();
        let r = t
            .render(&json!({"subject": "Refund", "body": "Please"}))
            .unwrap();
        assert_eq!(r.system.as_deref(), Some("You route tickets."));
        assert_eq!(r.user, "Subject: Refund\nPlease");
    }

    #[test]
    fn an_input_cannot_make_a_template_run_or_grow_without_end() {
        // Found by the template fuzz target: a list repeated by a number from the input.
        let t = PromptTemplates::compile(&prompt(None, "{{ tags * n }}")).unwrap();
        let error = t
            .render(&json!({"tags": ["a", "b"], "n": 59_900_000_000_000u64}))
            .expect_err("too long");
        assert!(
            error.message.contains("more than 100000 items"),
            "{}",
            error.message
        );
        let t = PromptTemplates::compile(&prompt(None, "{{ '=' * width }}")).unwrap();
        assert!(t.render(&json!({"width": 1_000_000_000u64})).is_err());
        assert_eq!(t.render(&json!({"width": 3})).unwrap().user, "===");
        // Loops over loops: out of fuel, an error in well under a second.
        let t = PromptTemplates::compile(&prompt(
            None,
            "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}",
        ))
        .unwrap();
        let error = t.render(&json!({"n": 100_000})).expect_err("out of fuel");
        assert_eq!(error.field, "prompt.user");
    }

    #[test]
    fn lists_variables() {
        let t = PromptTemplates::compile(&prompt(None, "{{ a }} {% if b %}{{ c.d }}{% endif %}"))
            .unwrap();
        let vars = &t.variables()[0].1;
        assert_eq!(
            vars.iter().cloned().collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn syntax_errors_name_the_template() {
        let errors = PromptTemplates::compile(&prompt(Some("{{ oops"), "{% if %}"))
            .err()
            .unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "prompt.system");
        assert_eq!(errors[1].field, "prompt.user");
    }

    #[test]
    fn absent_optional_fields_render_empty() {
        let t = PromptTemplates::compile(&prompt(None, "[{{ tier }}]")).unwrap();
        assert_eq!(t.render(&json!({})).unwrap().user, "[]");
    }
}
