//! A workflow called through the chat APIs (`model = "workflow:NAME"`): the last user
//! message is its input, as a JSON object or as the one text field its input schema has.

use serde_json::{json, Value};
use shopfloor_providers::{Message, Role};

/// The text of the last user message: what a `workflow:NAME` call takes as its input.
pub fn last_user_text(messages: &[Message]) -> Option<&str> {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
}

/// A workflow's input from a chat message: a JSON object as is, or plain text as the one
/// string property the input schema declares.
pub fn workflow_input(schema: &Value, text: &str) -> Result<Value, String> {
    if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(text.trim()) {
        return Ok(value);
    }
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, s)| s.get("type").and_then(Value::as_str) == Some("string"))
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let target = match (properties.as_slice(), required.as_slice()) {
        ([only], _) => Some(only.clone()),
        (_, [only]) if properties.iter().any(|p| p == only) => Some((*only).to_string()),
        _ => None,
    };
    match target {
        Some(name) => Ok(json!({ name: text })),
        None => Err(
            "the last user message must be the workflow's input as a JSON object (its input schema has more than one field)"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_text_fills_the_one_string_field() {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}}});
        assert_eq!(
            workflow_input(&schema, "hello").unwrap(),
            json!({"text": "hello"})
        );
        assert_eq!(
            workflow_input(&schema, "{\"text\": \"hi\"}").unwrap(),
            json!({"text": "hi"})
        );
        let two = json!({"type": "object", "required": ["subject", "body"],
            "properties": {"subject": {"type": "string"}, "body": {"type": "string"}}});
        assert!(workflow_input(&two, "hello").is_err());
        assert_eq!(
            workflow_input(&two, "{\"subject\": \"a\", \"body\": \"b\"}").unwrap(),
            json!({"subject": "a", "body": "b"})
        );
    }
}
