//! The policy every text bound for a model passes first: the model must be allowed the data's
//! class, and personal data bound for a model outside the building is redacted (or the call
//! refused) as `[policy.pii] on_external` says. Workflow runs, the judge and the gateway all
//! call [`Guard::check`].
//!
//! The messages are not all a request carries: a gateway client's stop sequences, tool and
//! parameter descriptions, the `response_format` schema and fields passed through unknown all
//! reach the model too. The policy walks every string of them, not a list of fields, so that
//! a field added later is covered without anyone remembering to.

use serde_json::Value;
use shopfloor_core::pii::{detect, redact, summarize, Redactions};
use shopfloor_core::spec::{DataClass, ExternalAction, ModelSpec, PiiPolicy, ProjectConfig};
use shopfloor_providers::{ChatExtras, Message};
use shopfloor_store::ErrorKind;

use crate::attempt::CallFailure;

/// The outbound policy of one project.
pub(crate) struct Guard<'a> {
    pub config: &'a ProjectConfig,
}

impl Guard<'_> {
    /// Apply the policy to text bound for `spec`: the model must be allowed `data_class`
    /// (defence in depth: `check` rejects such routes, but an override or an edited config must
    /// never reach it), and personal data bound for a model outside the building is redacted in
    /// place, or the call refused. `Ok(true)` when text was redacted and answers need restoring;
    /// a refusal names kinds of data, never the data.
    pub fn check(
        &self,
        spec: &ModelSpec,
        data_class: DataClass,
        messages: &mut [Message],
        prefix: &mut Option<String>,
        extras: &mut Option<Box<ChatExtras>>,
        redactions: &mut Redactions,
    ) -> Result<bool, CallFailure> {
        if !spec.data_classes.contains(&data_class) {
            return Err(CallFailure::new(
                ErrorKind::Refused,
                format!(
                    "refused by policy: model \"{}\" may not see {data_class} data",
                    spec.name
                ),
            ));
        }
        let Some(policy) = self.external_pii(spec) else {
            return Ok(false);
        };
        if policy.on_external == ExternalAction::Allow {
            return Ok(false);
        }
        // A field that names someone rather than says something (OpenAI's `user`) is redacted
        // whether the policy redacts or blocks: refusing a call for its caller's id would
        // refuse every call of that caller.
        let user = extras
            .as_mut()
            .and_then(|e| e.user.take())
            .map(|user| redact(&user, &policy.detect, redactions));
        if !policy.images_external && messages.iter().any(|m| m.images().next().is_some()) {
            return Err(CallFailure::new(
                ErrorKind::Refused,
                format!(
                    "refused by policy: the input holds images, which no detector of [policy.pii] can read, and model \"{}\" is not on premises (images = \"allow\" lets them go)",
                    spec.name
                ),
            ));
        }
        let mut rest = extras.as_ref().map(|e| to_value(e));
        let outcome = match policy.on_external {
            ExternalAction::Allow => Ok(false),
            ExternalAction::Block => {
                let mut texts: Vec<&str> = messages
                    .iter()
                    .flat_map(|m| {
                        std::iter::once(m.content.as_str())
                            .chain(m.tool_calls.iter().map(|c| c.arguments.as_str()))
                    })
                    .chain(prefix.as_deref())
                    .collect();
                if let Some(rest) = &rest {
                    strings(rest, &mut texts);
                }
                let found: Vec<_> = texts
                    .iter()
                    .flat_map(|text| detect(text, &policy.detect))
                    .collect();
                if found.is_empty() {
                    Ok(false)
                } else {
                    let kinds: Vec<String> = summarize(&found)
                        .into_iter()
                        .map(|(kind, n)| format!("{n} {}", kind.as_str()))
                        .collect();
                    Err(CallFailure::new(
                        ErrorKind::Refused,
                        format!(
                            "blocked by policy: the input contains {} and model \"{}\" is not on premises",
                            kinds.join(", "),
                            spec.name
                        ),
                    ))
                }
            }
            ExternalAction::Redact => {
                for m in messages.iter_mut() {
                    m.map_text(|text| redact(text, &policy.detect, redactions));
                    for call in &mut m.tool_calls {
                        call.arguments = redact(&call.arguments, &policy.detect, redactions);
                    }
                }
                if let Some(p) = prefix.as_mut() {
                    *p = redact(p, &policy.detect, redactions);
                }
                if let Some(rest) = rest.as_mut() {
                    strings_mut(rest, &mut |text| {
                        *text = redact(text, &policy.detect, redactions);
                    });
                }
                Ok(true)
            }
        };
        if let Some(extras) = extras.as_mut() {
            if let Some(rest) = rest {
                // What was serialised reads back: only strings changed.
                if let Ok(redacted) = serde_json::from_value::<ChatExtras>(rest) {
                    **extras = redacted;
                }
            }
            extras.user = user;
        }
        outcome
    }

    /// Redact more text of a run already being redacted (same mapping, same placeholders).
    pub fn redact_more(&self, text: &str, redactions: &mut Redactions) -> String {
        match self.config.pii.as_ref() {
            Some(policy) => redact(text, &policy.detect, redactions),
            None => text.to_string(),
        }
    }

    /// The PII policy that applies to text bound for `spec`, if any.
    fn external_pii(&self, spec: &ModelSpec) -> Option<&PiiPolicy> {
        self.config
            .pii
            .as_ref()
            .filter(|p| !spec.on_premises && !p.detect.is_empty())
    }
}

/// `extras` as JSON, to walk.
fn to_value(extras: &ChatExtras) -> Value {
    serde_json::to_value(extras).unwrap_or(Value::Null)
}

/// Every string in `value` (object keys aside: they are field and property names).
fn strings<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Apply `f` to every string in `value` (object keys aside).
fn strings_mut(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(text) => f(text),
        Value::Array(items) => items.iter_mut().for_each(|v| strings_mut(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| strings_mut(v, f)),
        _ => {}
    }
}
