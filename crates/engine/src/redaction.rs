//! What the database keeps of personal data (`[policy.pii] on_store`): runs and eval case
//! results are redacted before they are queued for writing. The caller still gets the
//! unredacted run; only the stored copy changes.

use serde_json::Value;
use shopfloor_core::pii::{is_credential_name, redact, redact_whole, PiiKind, Redactions};
use shopfloor_core::spec::{ProjectConfig, StoreAction};
use shopfloor_store::{Caller, EvalCaseRecord, RunRecord};

/// Redacts records for storage; absent when the policy lets the store keep raw text.
#[derive(Debug, Clone)]
pub(crate) struct StoreRedactor {
    kinds: Vec<PiiKind>,
}

impl StoreRedactor {
    pub(crate) fn from_config(config: &ProjectConfig) -> Option<Self> {
        let policy = config.pii.as_ref()?;
        (policy.on_store == StoreAction::Redact && !policy.detect.is_empty()).then(|| Self {
            kinds: policy.detect.clone(),
        })
    }

    /// A run as the store may keep it: every text field redacted with one mapping, so a
    /// value keeps the same placeholder across input, prompt, attempts and output.
    pub(crate) fn run(&self, mut run: RunRecord) -> RunRecord {
        let mut mapping = Redactions::new();
        let kinds = &self.kinds;
        redact_json(&mut run.input, kinds, &mut mapping);
        redact_json(&mut run.prompt, kinds, &mut mapping);
        if let Some(output) = run.output.as_mut() {
            redact_json(output, kinds, &mut mapping);
        }
        for text in [&mut run.raw_output, &mut run.error].into_iter().flatten() {
            *text = redact(text, kinds, &mut mapping);
        }
        if let Some(caller) = run.caller.as_mut() {
            self.caller_with(caller, &mut mapping);
        }
        for attempt in &mut run.attempts {
            for text in [&mut attempt.raw_output, &mut attempt.error]
                .into_iter()
                .flatten()
            {
                *text = redact(text, kinds, &mut mapping);
            }
        }
        run
    }

    /// An eval case result as the store may keep it (scores were computed on the originals).
    pub(crate) fn eval_case(&self, case: &mut EvalCaseRecord) {
        let mut mapping = Redactions::new();
        if let Some(output) = case.output.as_mut() {
            redact_json(output, &self.kinds, &mut mapping);
        }
        if let Some(raw) = case.raw_output.as_mut() {
            *raw = redact(raw, &self.kinds, &mut mapping);
        }
        // A score's detail may quote the output; its other fields are figures.
        for detail in case.scores.values_mut().filter_map(|s| s.detail.as_mut()) {
            *detail = redact(detail, &self.kinds, &mut mapping);
        }
    }
}

impl StoreRedactor {
    /// A caller as the store may keep it: the end user a client names (OpenAI's `user`) is
    /// free text and often an email. The key id is the store's own and stays.
    pub(crate) fn caller(&self, mut caller: Caller) -> Caller {
        self.caller_with(&mut caller, &mut Redactions::new());
        caller
    }

    fn caller_with(&self, caller: &mut Caller, mapping: &mut Redactions) {
        for text in [&mut caller.user, &mut caller.team].into_iter().flatten() {
            *text = redact(text, &self.kinds, mapping);
        }
    }

    /// A free text the store keeps (a reviewer's note, a KPI value's note).
    pub(crate) fn text(&self, text: &str) -> String {
        redact(text, &self.kinds, &mut Redactions::new())
    }

    /// Any JSON document the store keeps (e.g. an eval summary).
    pub(crate) fn json(&self, value: &mut Value) {
        redact_json(value, &self.kinds, &mut Redactions::new());
    }
}

/// Redact every string of `value`; with secrets detected, a value under a key that names a
/// credential (`"password": "hunter2"`, `"apiKey": 123456`) is a secret whatever it looks
/// like, and is replaced whole.
fn redact_json(value: &mut Value, kinds: &[PiiKind], mapping: &mut Redactions) {
    match value {
        Value::String(text) => *text = redact(text, kinds, mapping),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| redact_json(v, kinds, mapping)),
        Value::Object(map) => {
            let secrets = kinds.contains(&PiiKind::Secret);
            for (key, v) in map.iter_mut() {
                if secrets && is_credential_name(key) {
                    secret(v, mapping);
                } else {
                    redact_json(v, kinds, mapping);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replace every string and number in `value` with a secret's placeholder.
fn secret(value: &mut Value, mapping: &mut Redactions) {
    match value {
        Value::String(text) => *text = redact_whole(text, PiiKind::Secret, mapping),
        Value::Number(n) => {
            *value = Value::String(redact_whole(&n.to_string(), PiiKind::Secret, mapping))
        }
        Value::Array(items) => items.iter_mut().for_each(|v| secret(v, mapping)),
        Value::Object(map) => map.values_mut().for_each(|v| secret(v, mapping)),
        Value::Null | Value::Bool(_) => {}
    }
}
