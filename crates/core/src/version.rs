//! A workflow's version: a content hash of everything that changes its behaviour.

use std::collections::BTreeMap;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::spec::{ModelSpec, Workflow};

/// Hex characters of the hash shown and stored; 48 bits make collisions within one
/// workflow's history vanishingly unlikely while staying readable.
const VERSION_LEN: usize = 12;

/// The version of `workflow` given the project's models: templates, output contract, route and
/// parameters, the routed models' provider and model ids, and its examples (how many, how
/// chosen, and `examples_set`: the hash of the example file's content), and the prompt
/// patterns its templates import (`patterns`: path → hash of the text, from
/// [`crate::template::Patterns::used_by`]). Owner, description, stage, comments and
/// formatting do not change it.
pub fn workflow_version(
    workflow: &Workflow,
    models: &BTreeMap<String, ModelSpec>,
    examples_set: Option<&str>,
    patterns: &BTreeMap<String, String>,
) -> String {
    let route_models: Vec<_> = workflow
        .route
        .models
        .iter()
        .map(|name| match models.get(&name.value) {
            Some(m) => json!({"provider": m.provider.as_str(), "model": m.model}),
            None => json!({"unknown": name.value}),
        })
        .collect();
    let mut behaviour = json!({
        "prompt": {
            "system": workflow.prompt.system.as_ref().map(|s| &s.value),
            "user": workflow.prompt.user.value,
            "assistant_prefix": workflow.prompt.assistant_prefix,
        },
        "output": {
            "contract": workflow.output.contract,
            "retry_on_invalid": workflow.output.retry_on_invalid,
            "constrained": workflow.output.constrained,
        },
        "route": {
            "models": route_models,
            "timeout_ms": workflow.route.timeout_ms,
            "retries": workflow.route.retries,
            "temperature": workflow.route.temperature,
            "max_tokens": workflow.route.max_tokens,
            "top_p": workflow.route.top_p,
            "seed": workflow.route.seed,
        },
    });
    // Only a workflow with examples gets the field: versions of the others stay as they were.
    if let Some(examples) = &workflow.prompt.examples {
        behaviour["prompt"]["examples"] = json!({
            "k": examples.k,
            "select": examples.select,
            "set": examples_set,
        });
    }
    // Likewise only a workflow that imports patterns.
    if !patterns.is_empty() {
        behaviour["prompt"]["patterns"] = json!(patterns);
    }
    let digest = Sha256::digest(crate::canonical_json(&behaviour).as_bytes());
    hex::encode(digest)[..VERSION_LEN].to_string()
}
