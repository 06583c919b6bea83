//! The 30-case extraction dataset (`benches/data/extraction.jsonl`): short emails and tickets,
//! each with the fields a person would pull out of it. Read by `json_bench` and by the
//! constrained-decoding tests.

#![allow(dead_code)] // Each user compiles this module; not all of them use all of it.

use serde_json::{json, Value};
use shopfloor_providers::{ChatExtras, ChatRequest, Message, ResponseFormat, Role};

/// The instruction every case is asked under.
pub const SYSTEM: &str = "You extract data from business emails. Reply with one JSON object with \
these fields: name (the sender's full name), company (the sender's company), amount (the money \
amount as a number), currency (EUR, USD, GBP or CHF), urgent (true only if the sender says it is \
urgent), items (the products or services mentioned, as a list of short strings).";

/// One email and the fields expected from it.
pub struct Case {
    pub text: String,
    pub expected: Value,
}

/// The dataset's JSON Schema.
pub fn schema() -> Value {
    serde_json::from_str(include_str!("../data/extraction.schema.json"))
        .expect("the schema file is JSON")
}

/// The 30 cases.
pub fn cases() -> Vec<Case> {
    include_str!("../data/extraction.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("each line is JSON");
            Case {
                text: v["text"].as_str().expect("a text").to_owned(),
                expected: v["expected"].clone(),
            }
        })
        .collect()
}

/// The request for `case`, with the schema as `response_format` when `constrained`.
pub fn request(case: &Case, constrained: bool, max_tokens: u32) -> ChatRequest {
    let extras = constrained.then(|| {
        Box::new(ChatExtras {
            response_format: Some(ResponseFormat::JsonSchema {
                name: "extraction".to_owned(),
                description: None,
                schema: Some(schema()),
                strict: Some(true),
            }),
            ..ChatExtras::default()
        })
    });
    ChatRequest {
        model: "smollm2".to_owned(),
        messages: vec![
            Message::new(Role::System, SYSTEM),
            Message::new(Role::User, case.text.clone()),
        ],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        extras,
        ..ChatRequest::default()
    }
}

/// The fields, in the order the figures list them.
pub const FIELDS: [&str; 6] = ["name", "company", "amount", "currency", "urgent", "items"];

/// Whether `got` has `field` as expected: text compared ignoring case and surrounding
/// spaces, amounts to the cent, items as a set of such texts.
pub fn field_correct(field: &str, got: &Value, expected: &Value) -> bool {
    let text = |v: &Value| v.as_str().map(|s| s.trim().to_lowercase());
    let (g, e) = (&got[field], &expected[field]);
    match field {
        "amount" => matches!((g.as_f64(), e.as_f64()), (Some(g), Some(e)) if (g - e).abs() < 0.005),
        "items" => {
            let set = |v: &Value| -> Option<Vec<String>> {
                let mut items: Vec<String> = v.as_array()?.iter().filter_map(text).collect();
                items.sort();
                items.dedup();
                Some(items)
            };
            set(g).is_some() && set(g) == set(e)
        }
        "urgent" => g.is_boolean() && g == e,
        _ => text(g).is_some() && text(g) == text(e),
    }
}

/// The answer as JSON if it is exactly one JSON value (spaces around it aside) and validates
/// against the schema.
pub fn valid(validator: &jsonschema::Validator, answer: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(answer.trim()).ok()?;
    validator.is_valid(&value).then_some(value)
}

/// The first JSON object in the answer (in a code fence or after prose, as the workflow
/// runner's parser reads free text), if it validates against the schema.
pub fn valid_within(validator: &jsonschema::Validator, answer: &str) -> Option<Value> {
    answer.match_indices('{').take(16).find_map(|(start, _)| {
        let mut values = serde_json::Deserializer::from_str(&answer[start..]).into_iter::<Value>();
        let value = values.next()?.ok()?;
        validator.is_valid(&value).then_some(value)
    })
}

/// An empty answer, for scoring answers that are not valid.
pub fn nothing() -> Value {
    json!({})
}
