//! Output contracts: turning a model's text into a validated value, or saying why not.

use serde_json::Value as Json;

use crate::spec::OutputContract;

/// The canonical form of a label for matching: case, surrounding whitespace and punctuation
/// ignored, inner whitespace collapsed.
pub fn normalize_label(text: &str) -> String {
    let trimmed = text.trim_matches(|c: char| !c.is_alphanumeric());
    trimmed
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Find a JSON value in a model's answer: the whole text, a fenced code block, or the first
/// object or array embedded in prose.
pub fn extract_json(text: &str) -> Option<Json> {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str::<Json>(trimmed) {
        return Some(value);
    }
    if let Some(block) = fenced_block(trimmed) {
        if let Ok(value) = serde_json::from_str::<Json>(block.trim()) {
            return Some(value);
        }
    }
    // Bounded: pathological inputs with thousands of braces must not go quadratic.
    for (start, _) in trimmed.match_indices(['{', '[']).take(32) {
        let mut values = serde_json::Deserializer::from_str(&trimmed[start..]).into_iter::<Json>();
        if let Some(Ok(value)) = values.next() {
            return Some(value);
        }
    }
    None
}

fn fenced_block(text: &str) -> Option<&str> {
    let open = text.find("```")?;
    let after = &text[open + 3..];
    // Skip an info string such as `json`.
    let body_start = after.find('\n').map(|i| i + 1).unwrap_or(0);
    let body = &after[body_start..];
    let close = body.find("```")?;
    Some(&body[..close])
}

/// Checks answers against one output contract; compiled once per workflow.
pub struct OutputValidator {
    contract: OutputContract,
    normalized_labels: Vec<String>,
    schema: Option<jsonschema::Validator>,
}

impl OutputValidator {
    /// Compile a contract. Fails only for a JSON Schema that does not compile.
    pub fn new(contract: &OutputContract) -> Result<Self, String> {
        let (normalized_labels, schema) = match contract {
            OutputContract::Labels(labels) => {
                (labels.iter().map(|l| normalize_label(l)).collect(), None)
            }
            OutputContract::Json(schema) => {
                let validator = jsonschema::validator_for(schema)
                    .map_err(|e| format!("invalid output JSON Schema: {e}"))?;
                (Vec::new(), Some(validator))
            }
            OutputContract::Text { .. } => (Vec::new(), None),
        };
        Ok(Self {
            contract: contract.clone(),
            normalized_labels,
            schema,
        })
    }

    /// The labels, for constrained choice; `None` for other contracts.
    pub fn labels(&self) -> Option<&[String]> {
        match &self.contract {
            OutputContract::Labels(labels) => Some(labels),
            _ => None,
        }
    }

    /// Parse and validate an answer: the output value, or what is wrong with it.
    pub fn parse(&self, answer: &str) -> Result<Json, ContractViolation> {
        match &self.contract {
            OutputContract::Labels(labels) => {
                let normal = normalize_label(answer);
                match self.normalized_labels.iter().position(|l| *l == normal) {
                    Some(i) => Ok(Json::String(labels[i].clone())),
                    None => Err(ContractViolation {
                        public: format!(
                            "the answer is not one of the allowed labels: {}",
                            labels.join(", ")
                        ),
                        for_model: format!(
                            "the answer {:?} is not one of the allowed labels: {}",
                            shorten(answer, 80),
                            labels.join(", ")
                        ),
                    }),
                }
            }
            OutputContract::Json(_) => {
                let value = extract_json(answer)
                    .ok_or_else(|| ContractViolation::plain("the answer contains no JSON value"))?;
                if let Some(schema) = &self.schema {
                    let errors = schema_problems(schema, &value);
                    if !errors.is_empty() {
                        return Err(ContractViolation {
                            public: format!(
                                "the JSON does not match the schema at {}",
                                schema_places(schema, &value).join(", ")
                            ),
                            for_model: format!(
                                "the JSON does not match the schema: {}",
                                errors.join("; ")
                            ),
                        });
                    }
                }
                Ok(value)
            }
            OutputContract::Text { max_chars } => {
                let text = answer.trim();
                if text.is_empty() {
                    return Err(ContractViolation::plain("the answer is empty"));
                }
                if let Some(max) = max_chars {
                    let count = text.chars().count();
                    if count > *max {
                        return Err(ContractViolation::plain(format!(
                            "the answer has {count} characters; at most {max} are allowed"
                        )));
                    }
                }
                Ok(Json::String(text.to_string()))
            }
        }
    }
}

/// Why an answer broke the output contract. What it displays never quotes the answer, so it
/// can be stored and shown to anyone who may see the run; [`ContractViolation::for_model`]
/// quotes it, to ask the model again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractViolation {
    public: String,
    for_model: String,
}

impl ContractViolation {
    fn plain(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            public: message.clone(),
            for_model: message,
        }
    }

    /// The problem as the model is told it when asked again: with what it answered.
    pub fn for_model(&self) -> &str {
        &self.for_model
    }
}

impl std::fmt::Display for ContractViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.public)
    }
}

impl std::error::Error for ContractViolation {}

/// Where in the schema `value` fails: schema paths and keywords (`/properties/age/type`),
/// which the workflow's author wrote, never the values or keys the answer holds.
fn schema_places(schema: &jsonschema::Validator, value: &Json) -> Vec<String> {
    let mut places: Vec<String> = schema
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let path = e.schema_path.to_string();
            if path.is_empty() {
                "the top level".to_string()
            } else {
                path
            }
        })
        .collect();
    places.dedup();
    places
}

/// What is wrong with `value` against `schema`: at most the first five problems, each with the
/// JSON path it is at.
pub fn schema_problems(schema: &jsonschema::Validator, value: &Json) -> Vec<String> {
    schema
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let path = e.instance_path.to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect()
}

/// `text` cut to at most `max` characters, with an ellipsis when cut (for messages and tables).
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn labels() -> OutputValidator {
        OutputValidator::new(&OutputContract::Labels(vec![
            "billing".into(),
            "bug".into(),
            "account".into(),
            "other".into(),
        ]))
        .unwrap()
    }

    #[test]
    fn labels_tolerate_case_space_and_punctuation() {
        let v = labels();
        for answer in [
            "billing",
            "Billing.",
            "  BILLING\n",
            "\"billing\"",
            "**Bug**",
            "account!",
        ] {
            assert!(v.parse(answer).is_ok(), "{answer}");
        }
        assert_eq!(v.parse("Billing.").unwrap(), json!("billing"));
    }

    #[test]
    fn labels_are_never_guessed() {
        let v = labels();
        for answer in [
            "",
            "billing or bug",
            "The answer is billing",
            "bill",
            "payments",
        ] {
            assert!(v.parse(answer).is_err(), "{answer}");
        }
    }

    #[test]
    fn json_from_text_and_fences() {
        let v = OutputValidator::new(&OutputContract::Json(json!({
            "type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}
        })))
        .unwrap();
        assert_eq!(v.parse("{\"amount\": 3}").unwrap(), json!({"amount": 3}));
        assert_eq!(
            v.parse("Sure:\n```json\n{\"amount\": 4}\n```\nDone")
                .unwrap(),
            json!({"amount": 4})
        );
        assert_eq!(
            v.parse("Here it is {\"amount\": 5} ok").unwrap(),
            json!({"amount": 5})
        );
        let err = v.parse("{\"amount\": \"x-canary\"}").unwrap_err();
        assert!(err.for_model().contains("/amount"), "{err:?}");
        assert!(err.for_model().contains("x-canary"), "{err:?}");
        let shown = err.to_string();
        assert!(shown.contains("/properties/amount/type"), "{shown}");
        assert!(!shown.contains("x-canary"), "{shown}");
        assert!(v.parse("no json here").is_err());
    }

    #[test]
    fn text_limits() {
        let v = OutputValidator::new(&OutputContract::Text { max_chars: Some(5) }).unwrap();
        assert_eq!(v.parse(" hello ").unwrap(), json!("hello"));
        assert!(v.parse("too long").is_err());
        assert!(v.parse("   ").is_err());
    }

    proptest! {
        #[test]
        fn any_label_survives_decoration(label in "[a-z][a-z_-]{0,12}[a-z]", pre in "[ \t\n\"'*(]{0,3}", post in "[ .!\n\"'*)]{0,3}", upper: bool) {
            let v = OutputValidator::new(&OutputContract::Labels(vec![label.clone(), "zzz-other".into()])).unwrap();
            let shown = if upper { label.to_uppercase() } else { label.clone() };
            let answer = format!("{pre}{shown}{post}");
            prop_assert_eq!(v.parse(&answer).unwrap(), json!(label));
        }

        #[test]
        fn non_labels_are_invalid(answer in "\\PC{0,40}") {
            let v = labels();
            let normal = normalize_label(&answer);
            let is_label = ["billing", "bug", "account", "other"].contains(&normal.as_str());
            prop_assert_eq!(v.parse(&answer).is_ok(), is_label);
        }

        /// What a broken answer is stored and shown as never carries the answer's text: only
        /// the model is told what it wrote.
        #[test]
        fn a_violation_never_shows_the_answer(answer in "[A-Za-z0-9]{8,40}") {
            let canary = format!("CANARY{answer}");
            let v = labels();
            let err = v.parse(&canary).unwrap_err();
            prop_assert!(!err.to_string().contains(&canary));
            prop_assert!(err.for_model().contains(&canary));
            let json = OutputValidator::new(&OutputContract::Json(json!({
                "type": "object", "properties": {"a": {"type": "integer", "enum": [1, 2]}},
                "additionalProperties": {"type": "integer"}
            }))).unwrap();
            for wrong in [json!({"a": canary}), json!({canary.clone(): canary}), json!([canary])] {
                let err = json.parse(&wrong.to_string()).unwrap_err();
                prop_assert!(!err.to_string().contains(&canary), "{}", err);
            }
        }

        #[test]
        fn embedded_json_is_found(n in any::<i64>(), s in "[a-zA-Z0-9 ]{0,20}", prose in "[a-zA-Z ,.:]{0,30}", fenced: bool) {
            let value = json!({"n": n, "s": s});
            let text = if fenced {
                format!("{prose}\n```json\n{value}\n```\n")
            } else {
                format!("{prose} {value}")
            };
            prop_assert_eq!(extract_json(&text), Some(value));
        }
    }
}
