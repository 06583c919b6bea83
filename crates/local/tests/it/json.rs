//! JSON-constrained decoding with the real SmolLM2 weights: every answer parses and matches its
//! schema, whatever the model would rather have written.

use crate::common;
#[path = "../../benches/extraction/mod.rs"]
mod extraction;

use futures::StreamExt;
use serde_json::{json, Value};
use shopfloor_providers::{
    ChatExtras, ChatRequest, FinishReason, Provider, ResponseFormat, StreamEvent,
};

use common::{ask, provider};

fn with_format(mut request: ChatRequest, format: ResponseFormat) -> ChatRequest {
    request.extras = Some(Box::new(ChatExtras {
        response_format: Some(format),
        ..ChatExtras::default()
    }));
    request
}

fn schema_format(schema: Value) -> ResponseFormat {
    ResponseFormat::JsonSchema {
        name: "answer".to_owned(),
        description: None,
        schema: Some(schema),
        strict: Some(true),
    }
}

fn assert_valid(schema: &Value, text: &str) -> Value {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let validator = jsonschema::validator_for(schema).unwrap();
    assert!(validator.is_valid(&value), "{text} does not match {schema}");
    value
}

#[tokio::test]
async fn extraction_answers_parse_and_validate() {
    let provider = provider();
    assert!(provider.capabilities().constrained_json);
    let schema = extraction::schema();
    // A third of the dataset keeps the test short on one thread; the bench runs all 30.
    for case in extraction::cases().iter().step_by(3) {
        let request = extraction::request(case, true, 160);
        assert!(provider.unsupported(&request).is_none());
        let response = provider.complete(&request).await.expect("an answer");
        let value = assert_valid(&schema, &response.text);
        assert_eq!(
            response.finish_reason,
            FinishReason::Stop,
            "{}",
            response.text
        );
        // Compact: the mask allows at most one space after `:` and `,`.
        assert!(!response.text.contains("  ") && !response.text.contains('\n'));
        // Required keys come in `required`'s order.
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6, "{}", response.text);
        assert!(response.text.starts_with("{\"name\""), "{}", response.text);
    }
}

#[tokio::test]
async fn a_tight_token_budget_still_ends_in_valid_json() {
    let provider = provider();
    let schema = json!({
        "type": "object",
        "properties": {
            "summary": { "type": "string" },
            "tags": { "type": "array", "items": { "type": "string" } }
        },
        "required": ["summary", "tags"],
        "additionalProperties": false
    });
    // The model would write a long summary; 32 tokens force it to close early.
    let request = with_format(
        ask("Summarise the history of the Roman Empire in detail.", 32),
        schema_format(schema.clone()),
    );
    let response = provider.complete(&request).await.expect("an answer");
    assert_valid(&schema, &response.text);
    assert!(response.usage.unwrap().completion_tokens <= 32);
}

#[tokio::test]
async fn nested_objects_enums_nulls_and_any_of() {
    let provider = provider();
    let schema = json!({
        "type": "object",
        "properties": {
            "city": { "type": "string", "maxLength": 30 },
            "country": { "enum": ["France", "Germany", "Spain"] },
            "population": { "type": "integer", "minimum": 0 },
            "landmarks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "maxLength": 40 },
                        "year": { "anyOf": [{ "type": "integer" }, { "type": "null" }] }
                    },
                    "required": ["name", "year"],
                    "additionalProperties": false
                },
                "maxItems": 3
            }
        },
        "required": ["city", "country", "population", "landmarks"],
        "additionalProperties": false
    });
    let request = with_format(
        ask(
            "Describe Paris as JSON: city, country, population and famous landmarks.",
            200,
        ),
        schema_format(schema.clone()),
    );
    let value = assert_valid(
        &schema,
        &provider.complete(&request).await.expect("an answer").text,
    );
    assert_eq!(value["country"], "France", "{value}");
}

#[tokio::test]
async fn json_object_streams_an_object() {
    let provider = provider();
    let request = with_format(
        ask("Give the capital of France and of Spain as JSON.", 60),
        ResponseFormat::JsonObject,
    );
    let mut stream = provider.stream(&request).await.expect("a stream");
    let mut text = String::new();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event.expect("no error") {
            StreamEvent::Delta(piece) => text.push_str(&piece),
            StreamEvent::Done { finish_reason, .. } => done = Some(finish_reason),
            StreamEvent::ToolCall(_) => panic!("no tool was offered"),
        }
    }
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert!(value.is_object(), "{text}");
    assert!(done.is_some());
}

#[tokio::test]
async fn schemas_it_cannot_enforce_are_refused_by_name() {
    let provider = provider();
    let request = with_format(
        ask("Hi", 20),
        schema_format(json!({"type": "string", "pattern": "^[a-z]+$"})),
    );
    let unsupported = provider.unsupported(&request).expect("refused");
    assert_eq!(unsupported.param, "response_format");
    assert!(
        unsupported.reason.contains("`pattern`"),
        "{}",
        unsupported.reason
    );
    let error = provider.complete(&request).await.expect_err("refused");
    assert!(error.to_string().contains("`pattern`"), "{error}");

    // Too few tokens for even the shortest answer.
    let schema = extraction::schema();
    let request = with_format(ask("Hi", 5), schema_format(schema));
    let error = provider.complete(&request).await.expect_err("too short");
    assert!(error.to_string().contains("raise max_tokens"), "{error}");
}

#[tokio::test]
async fn images_are_refused_by_name() {
    use shopfloor_providers::{Image, Message, Part, Role};
    let provider = provider();
    let mut request = ask("Hi", 5);
    request.messages = vec![Message::with_parts(
        Role::User,
        vec![
            Part::Text("What is this?".into()),
            Part::Image(Image {
                url: "https://example.com/cat.jpg".into(),
                detail: None,
            }),
        ],
    )];
    let unsupported = provider.unsupported(&request).expect("refused");
    assert_eq!(unsupported.param, "messages");
    assert!(
        unsupported
            .reason
            .contains("the embedded models cannot see images"),
        "{}",
        unsupported.reason
    );
}
