//! `GET /openapi.json`: an OpenAPI 3.1 document of the API, generated from the one route table
//! ([`ROUTES`]), so it lists exactly what the router serves, with each route's permission.
//! Bodies are described as JSON objects; their fields are the wire formats the README names
//! (OpenAI's, Anthropic's, the workflow API's).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::auth::Access;
use crate::json_response;
use crate::routes::{Route, ROUTES};

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES.iter() {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation(route);
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

fn operation(route: &Route) -> Value {
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
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
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
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {"type": "object"}}},
        });
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

/// `GET /openapi.json`.
pub(crate) async fn serve() -> Response {
    json_response(StatusCode::OK, &document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_parameters_and_access() {
        let doc = document();
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
            if route.method == axum::http::Method::POST {
                assert_eq!(op["requestBody"]["required"], true, "{route:?}");
            }
        }
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "operation ids are unique: {ids:?}");
    }
}
