//! The policy every text bound for a model passes first: the model must be allowed the data's
//! class, and personal data bound for a model outside the building is redacted (or the call
//! refused) as `[policy.pii] on_external` says. Workflow runs, the judge and the gateway all
//! call [`Guard::check`].

use shopfloor_core::pii::{detect, redact, summarize, Redactions};
use shopfloor_core::spec::{DataClass, ExternalAction, ModelSpec, PiiPolicy, ProjectConfig};
use shopfloor_providers::Message;
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
        match policy.on_external {
            ExternalAction::Allow => Ok(false),
            ExternalAction::Block => {
                let texts = messages
                    .iter()
                    .flat_map(|m| {
                        std::iter::once(m.content.as_str())
                            .chain(m.tool_calls.iter().map(|c| c.arguments.as_str()))
                    })
                    .chain(prefix.as_deref());
                let found: Vec<_> = texts
                    .flat_map(|text| detect(text, &policy.detect))
                    .collect();
                if found.is_empty() {
                    return Ok(false);
                }
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
            ExternalAction::Redact => {
                for m in messages.iter_mut() {
                    m.content = redact(&m.content, &policy.detect, redactions);
                    for call in &mut m.tool_calls {
                        call.arguments = redact(&call.arguments, &policy.detect, redactions);
                    }
                }
                if let Some(p) = prefix.as_mut() {
                    *p = redact(p, &policy.detect, redactions);
                }
                Ok(true)
            }
        }
    }

    /// A field that names someone rather than says something (OpenAI's `user`), bound for
    /// `spec`: redacted whenever personal data may not leave as it is (`redact` or `block`),
    /// since refusing a call for its caller's id would refuse every call of that caller.
    pub fn redact_field(
        &self,
        spec: &ModelSpec,
        text: &str,
        redactions: &mut Redactions,
    ) -> String {
        match self.external_pii(spec) {
            Some(policy) if policy.on_external != ExternalAction::Allow => {
                redact(text, &policy.detect, redactions)
            }
            _ => text.to_string(),
        }
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
