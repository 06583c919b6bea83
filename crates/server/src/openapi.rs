//! `GET /openapi.json`: an OpenAPI 3.1 document of the API, generated from the one route table
//! ([`ROUTES`]), so it lists exactly what the router serves, with each route's permission.
//! Request bodies are described field by field (the fields clients send most; the wire
//! formats take more, which is why they stay open to other properties), with this server's
//! model and workflow names as the values they take (for a caller whose key may call models;
//! the public document names nothing), so that a generated client or a fuzzer such as
//! schemathesis reaches past the first check.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use shopfloor_core::experiment::Metric;
use shopfloor_core::spec::ModelUse;

use crate::auth::Access;
use crate::json_response;
use crate::routes::{Route, ROUTES};

/// Names of this server's project, given as the values fields take; only in the document a
/// caller with a key that may call models gets (the public one names nothing).
#[derive(Debug, Default, Clone, Copy)]
pub struct Names<'a> {
    /// Chat models.
    pub models: &'a [String],
    pub embedding_models: &'a [String],
    pub workflows: &'a [String],
}

/// The document.
pub fn document(names: Names<'_>) -> Value {
    let mut paths = Map::new();
    for route in ROUTES.iter() {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation(route, names);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "shopfloor",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The gateway (OpenAI Chat Completions, Responses and embeddings; Anthropic Messages) and the workflow, review and outcome APIs of `shopfloor serve`. Every route but the health checks and this document needs an API key (`shopfloor keys create`).",
        },
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
            "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "The key as Anthropic's SDKs send it"},
        }},
        "paths": paths,
    })
}

fn operation(route: &Route, names: Names<'_>) -> Value {
    let method = route.method.as_str().to_ascii_lowercase();
    let id = format!(
        "{method}_{}",
        route
            .path
            .trim_start_matches('/')
            .replace(['/', '{', '}', '.'], "_")
            .replace("__", "_")
            .trim_end_matches('_')
    );
    let parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let mut schema = json!({"type": "string"});
            if name == "name" && !names.workflows.is_empty() {
                schema["enum"] = json!(names.workflows);
            }
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    let errors = if route.path.starts_with("/v1/messages") {
        "An error in Anthropic's form: {\"type\": \"error\", \"error\": {\"type\", \"message\"}}"
    } else {
        "An error in OpenAI's form: {\"error\": {\"message\", \"type\", \"param\", \"code\"}}"
    };
    let mut op = json!({
        "operationId": id,
        "summary": route.summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": "The answer", "content": {"application/json": {"schema": {"type": "object"}}}},
            "4XX": {"description": errors},
            "5XX": {"description": errors},
        },
    });
    if route.method == axum::http::Method::POST {
        if let Some((required, schema)) = body_schema(route.path, names) {
            op["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema}},
            });
        }
    }
    match route.access {
        Access::Public => op["security"] = json!([]),
        Access::Needs(permission) | Access::NeedsOrOwn(permission) => {
            op["security"] = json!([{"bearer": []}, {"x-api-key": []}]);
            op["x-shopfloor-permission"] = json!(permission.describe());
            if matches!(route.access, Access::NeedsOrOwn(_)) {
                op["x-shopfloor-own-only"] = json!(
                    "a key without the permission that calls models or runs workflows reads what it made itself"
                );
            }
        }
    }
    op
}

/// The body of a POST route: whether it is required, and its schema; `None` for a route that
/// takes none.
fn body_schema(path: &str, names: Names<'_>) -> Option<(bool, Value)> {
    // This server's names are the only ones it serves: any other is 400 or 404.
    let model = named(names.models, "A model of shopfloor.toml");
    let text = json!({"type": "string"});
    let parts = json!({"type": "array", "items": {"type": "object", "required": ["type"],
        "properties": {"type": {"type": "string"}}}});
    let content = json!({"anyOf": [text, parts]});
    let object = |required: &[&str], properties: Value| json!({"type": "object", "required": required, "properties": properties});
    let tools = json!({"type": "array", "items": {"type": "object"}});
    let schema = match path {
        "/v1/chat/completions" => object(
            &["model", "messages"],
            json!({
                "model": with_workflows(&model, names),
                "messages": {"type": "array", "minItems": 1, "items": object(&["role"], json!({
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
                    "content": {"anyOf": [text, parts, {"type": "null"}]},
                    "tool_call_id": text,
                    "tool_calls": tools,
                }))},
                "stream": {"type": "boolean"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "seed": {"type": "integer"},
                "stop": {"anyOf": [text, {"type": "array", "items": text, "maxItems": 4}]},
                "user": text,
                "tools": tools,
                "tool_choice": {"anyOf": [text, {"type": "object"}]},
                "response_format": object(&["type"], json!({"type": {"type": "string", "enum": ["text", "json_object", "json_schema"]}})),
            }),
        ),
        "/v1/responses" => object(
            &["model", "input"],
            json!({
                "model": model,
                "input": {"anyOf": [text, {"type": "array", "items": {"type": "object"}}]},
                "instructions": text,
                "stream": {"type": "boolean"},
                "store": {"type": "boolean"},
                "max_output_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "previous_response_id": text,
                "tools": tools,
                "text": {"type": "object"},
                "metadata": {"type": "object", "additionalProperties": text},
            }),
        ),
        "/v1/messages" | "/v1/messages/count_tokens" => {
            let mut schema = object(
                &["model", "messages"],
                json!({
                    "model": model,
                    "messages": {"type": "array", "minItems": 1, "items": object(&["role", "content"], json!({
                        "role": {"type": "string", "enum": ["user", "assistant"]},
                        "content": content,
                    }))},
                    "system": content,
                    "tools": tools,
                    "tool_choice": {"type": "object"},
                }),
            );
            if path == "/v1/messages" {
                schema["required"] = json!(["model", "messages", "max_tokens"]);
                let properties = &mut schema["properties"];
                properties["max_tokens"] = json!({"type": "integer", "minimum": 1});
                properties["stream"] = json!({"type": "boolean"});
                properties["temperature"] = json!({"type": "number", "minimum": 0, "maximum": 1});
                properties["stop_sequences"] = json!({"type": "array", "items": text});
                properties["metadata"] = json!({"type": "object", "properties": {"user_id": text}});
            }
            schema
        }
        "/v1/embeddings" => object(
            &["model", "input"],
            json!({
                "model": named(names.embedding_models, "An embedding model of shopfloor.toml"),
                "input": {"anyOf": [text, {"type": "array", "items": text, "minItems": 1}]},
                "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                "dimensions": {"type": "integer", "minimum": 1},
                "user": text,
            }),
        ),
        "/v1/workflows/{name}/runs" => closed(object(
            &["input"],
            json!({
                "input": {"type": "object", "description": "The workflow's input, as its input schema says"},
                "model": text,
                "user": text,
            }),
        )),
        "/v1/workflows/{name}/batches" => closed(object(
            &["inputs"],
            json!({
                "inputs": {"type": "array", "items": {"type": "object"}},
                "model": text,
                "user": text,
            }),
        )),
        "/v1/reviews/{run_id}/approve" => {
            return Some((false, closed(object(&[], json!({"note": text})))))
        }
        "/v1/reviews/{run_id}/edit" => closed(object(
            &["output"],
            json!({"output": {"description": "The corrected output"}, "note": text}),
        )),
        "/v1/reviews/{run_id}/reject" => {
            closed(object(&["reason"], json!({"reason": text, "note": text})))
        }
        "/v1/workflows/{name}/experiments" => {
            let metrics: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
            closed(object(
                &["variant", "hypothesis", "metric"],
                json!({
                    "variant": text,
                    "hypothesis": {"type": "string", "minLength": 1},
                    "metric": {"type": "string", "enum": metrics},
                    "guardrails": {"type": "array", "items": {"type": "string",
                        "description": "METRIC:LIMIT, e.g. cost_per_accepted:1.5x"}},
                    "share": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    "min_runs": {"type": "integer", "minimum": 1},
                    "mde": {"type": "number", "exclusiveMinimum": 0},
                    "subject_field": text,
                }),
            ))
        }
        "/v1/workflows/{name}/experiments/stop" => closed(object(
            &["decision"],
            json!({"decision": {"type": "string", "enum": ["keep", "cut"]}, "note": text}),
        )),
        "/v1/workflows/{name}/outcomes" => closed(object(
            &["value"],
            json!({
                "value": {"type": "number"},
                "at": {"type": "string", "description": "YYYY-MM-DD"},
                "note": text,
            }),
        )),
        _ => return None,
    };
    Some((true, schema))
}

/// A string field that takes one of `names` (any string when none are given).
fn named(names: &[String], description: &str) -> Value {
    let mut schema = json!({"type": "string", "description": description});
    if !names.is_empty() {
        schema["enum"] = json!(names);
    }
    schema
}

/// Chat Completions' `model`: a model, or `workflow:NAME`.
fn with_workflows(model: &Value, names: Names<'_>) -> Value {
    let mut model = model.clone();
    if let Some(models) = model.get_mut("enum").and_then(Value::as_array_mut) {
        models.extend(
            names
                .workflows
                .iter()
                .map(|w| json!(format!("{}{w}", crate::gateway::WORKFLOW_PREFIX))),
        );
    }
    model["description"] = json!("A model of shopfloor.toml, or workflow:NAME");
    model
}

/// A schema that takes no other properties (the body is read with unknown fields refused).
fn closed(mut schema: Value) -> Value {
    schema["additionalProperties"] = json!(false);
    schema
}

/// `GET /openapi.json`: public; a caller whose key may call models also gets the project's
/// model and workflow names as the values the fields take (what `/v1/models` would tell it).
pub(crate) async fn serve(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !state.may_call_models(&headers).await {
        return json_response(StatusCode::OK, &document(Names::default()));
    }
    let project = &state.engine.project;
    let of_kind = |kind: ModelUse| -> Vec<String> {
        project
            .config
            .models
            .iter()
            .filter(|(_, m)| m.kind == kind)
            .map(|(name, _)| name.clone())
            .collect()
    };
    let (models, embedding_models) = (of_kind(ModelUse::Chat), of_kind(ModelUse::Embedding));
    let workflows: Vec<String> = project.workflows.keys().cloned().collect();
    let names = Names {
        models: &models,
        embedding_models: &embedding_models,
        workflows: &workflows,
    };
    json_response(StatusCode::OK, &document(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_parameters_and_access() {
        let doc = document(Names::default());
        for route in ROUTES.iter() {
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert_eq!(op["summary"], route.summary, "{route:?}");
            let braces = route.path.matches('{').count();
            assert_eq!(
                op["parameters"].as_array().unwrap().len(),
                braces,
                "{route:?}"
            );
            let public = route.access == Access::Public;
            assert_eq!(
                op["security"].as_array().unwrap().is_empty(),
                public,
                "{route:?}"
            );
            match route.access {
                Access::Public => assert!(op.get("x-shopfloor-permission").is_none()),
                Access::Needs(p) | Access::NeedsOrOwn(p) => {
                    assert_eq!(op["x-shopfloor-permission"], p.describe(), "{route:?}");
                    let own = matches!(route.access, Access::NeedsOrOwn(_));
                    assert_eq!(op.get("x-shopfloor-own-only").is_some(), own, "{route:?}");
                }
            }
            let takes_body = !route.path.ends_with("/claim") && !route.path.ends_with("/next");
            if route.method == axum::http::Method::POST && takes_body {
                let body = &op["requestBody"];
                let schema = &body["content"]["application/json"]["schema"];
                assert_eq!(schema["type"], "object", "{route:?}");
                assert!(schema["properties"].is_object(), "{route:?}");
                assert_eq!(
                    body["required"],
                    !route.path.ends_with("/approve"),
                    "{route:?}"
                );
            } else {
                assert!(op.get("requestBody").is_none(), "{route:?}");
            }
        }
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let names = Names {
            models: &["fast".to_string()],
            embedding_models: &["embed".to_string()],
            workflows: &["triage".to_string()],
        };
        let doc = document(names);
        let chat = &doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["properties"]["model"];
        assert_eq!(chat["enum"], json!(["fast", "workflow:triage"]));
        let runs = &doc["paths"]["/v1/workflows/{name}/runs"]["post"]["parameters"][0];
        assert_eq!(runs["schema"]["enum"], json!(["triage"]));
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "operation ids are unique: {ids:?}");
    }
}
