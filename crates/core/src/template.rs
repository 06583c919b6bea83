//! Prompt templates: minijinja over the input object.

use std::collections::BTreeSet;

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
}

/// A workflow's templates, compiled once.
pub struct PromptTemplates {
    env: Environment<'static>,
    has_system: bool,
    assistant_prefix: Option<String>,
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
        let mut env = Environment::new();
        // Optional input fields that are absent render as empty instead of failing the run;
        // `check` has already verified every variable is declared in the input schema.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        let mut errors = Vec::new();
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
        Ok(Self {
            env,
            has_system: prompt.system.is_some(),
            assistant_prefix: prompt.assistant_prefix.clone(),
        })
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

    /// Render for one input object.
    pub fn render(&self, input: &Json) -> Result<RenderedPrompt, TemplateError> {
        let render = |name: &str, field: &'static str| -> Result<String, TemplateError> {
            let template = self.env.get_template(name).map_err(|e| TemplateError {
                field,
                message: describe(&e),
            })?;
            template.render(input).map_err(|e| TemplateError {
                field,
                message: describe(&e),
            })
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

    fn prompt(system: Option<&str>, user: &str) -> PromptSpec {
        PromptSpec {
            system: system.map(|s| Located::new(s.to_string(), None)),
            user: Located::new(user.to_string(), None),
            assistant_prefix: None,
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
