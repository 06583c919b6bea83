use super::*;

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
