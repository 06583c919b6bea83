//! The schema keywords the compiler reads: JSON types, and the checks of a keyword's value.

use serde_json::{Map, Value as Json};

use super::schema::MAX_COUNT;
use super::SchemaError;

/// Keywords that only annotate and constrain nothing.
pub(super) const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords this compiler enforces (with the limits given where they are read).
pub(super) const ENFORCED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "anyOf",
    "allOf",
    "$ref",
];

/// The JSON types a schema names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    pub(super) fn parse(name: &str, path: &str) -> Result<Self, SchemaError> {
        Ok(match name {
            "null" => Self::Null,
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "string" => Self::String,
            "array" => Self::Array,
            "object" => Self::Object,
            other => return Err(SchemaError::at(path, format!("unknown type `{other}`"))),
        })
    }

    pub(super) fn matches(self, value: &Json) -> bool {
        match (self, value) {
            (Self::Null, Json::Null)
            | (Self::Boolean, Json::Bool(_))
            | (Self::Number, Json::Number(_))
            | (Self::String, Json::String(_))
            | (Self::Array, Json::Array(_))
            | (Self::Object, Json::Object(_)) => true,
            (Self::Integer, Json::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        }
    }
}

/// `type` as a list, or `None` when the schema names none.
pub(super) fn types(
    object: &Map<String, Json>,
    path: &str,
) -> Result<Option<Vec<JsonType>>, SchemaError> {
    match object.get("type") {
        None => Ok(None),
        Some(Json::String(name)) => Ok(Some(vec![JsonType::parse(name, path)?])),
        Some(Json::Array(names)) if !names.is_empty() => names
            .iter()
            .map(|n| {
                n.as_str()
                    .ok_or_else(|| SchemaError::at(path, "`type` must list type names"))
                    .and_then(|n| JsonType::parse(n, path))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|mut t| {
                // `integer` is within `number`: the two together generate as `number`.
                if t.contains(&JsonType::Number) {
                    t.retain(|&t| t != JsonType::Integer);
                }
                t.dedup();
                Some(t)
            }),
        Some(_) => Err(SchemaError::at(
            path,
            "`type` must be a name or a non-empty list of names",
        )),
    }
}

/// The types a schema without `type` allows, judged by the keywords it uses.
pub(super) fn implied_types(object: &Map<String, Json>) -> Vec<JsonType> {
    let has = |k: &str| object.contains_key(k);
    if has("properties") || has("required") || has("additionalProperties") {
        vec![JsonType::Object]
    } else if has("items") || has("minItems") || has("maxItems") {
        vec![JsonType::Array]
    } else if has("minLength") || has("maxLength") {
        vec![JsonType::String]
    } else if has("minimum") {
        vec![JsonType::Number]
    } else {
        vec![
            JsonType::Null,
            JsonType::Boolean,
            JsonType::Number,
            JsonType::String,
            JsonType::Array,
            JsonType::Object,
        ]
    }
}

/// A count keyword (`minLength`, `maxItems`, …) as a bounded number.
pub(super) fn count(
    object: &Map<String, Json>,
    key: &str,
    path: &str,
) -> Result<Option<u64>, SchemaError> {
    match object.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_COUNT => Ok(Some(n)),
            Some(_) => Err(SchemaError::at(
                path,
                format!("`{key}` above {MAX_COUNT} cannot be enforced"),
            )),
            None => Err(SchemaError::at(
                path,
                format!("`{key}` must be a non-negative integer"),
            )),
        },
    }
}

/// `keyword` must not share its schema with keywords that constrain.
pub(super) fn only_beside(
    object: &Map<String, Json>,
    keyword: &str,
    path: &str,
) -> Result<(), SchemaError> {
    match object
        .keys()
        .find(|k| k.as_str() != keyword && !ANNOTATIONS.contains(&k.as_str()))
    {
        Some(other) => Err(SchemaError::at(
            path,
            format!("`{keyword}` is enforced only on its own, not beside `{other}`"),
        )),
        None => Ok(()),
    }
}
