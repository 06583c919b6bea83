//! A workflow's `[variants.NAME]`: each a version of its own, eligible for production traffic
//! once the last eval of that version passed the workflow's gates (the same rule promotion
//! applies to the workflow itself).

use serde::Serialize;
use shopfloor_store::{EvalRecord, Store};

use crate::{EngineError, Project};

/// A variant and whether it may take traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantStatus {
    pub name: String,
    pub description: Option<String>,
    pub version: String,
    /// The last finished eval of the variant's version: its id and whether its gates passed
    /// (`None` when the workflow has no gates).
    pub last_eval: Option<(String, Option<bool>)>,
    /// Whether that eval passed: the variant may take traffic in an experiment.
    pub eligible: bool,
}

impl VariantStatus {
    /// Why the variant may or may not take traffic, in words.
    pub fn reason(&self, workflow: &str) -> String {
        match &self.last_eval {
            Some((id, Some(true))) => format!("eval {id} passed its gates"),
            Some((id, Some(false))) => format!("eval {id} failed its gates"),
            Some((id, None)) => format!("eval {id} had no gates to pass; add [eval] gate"),
            None => format!(
                "no eval of this version yet: shopfloor eval {workflow} --variant {}",
                self.name
            ),
        }
    }
}

impl crate::Records {
    /// The last eval of `workflow` at `version` that ran its whole dataset to the end: what
    /// its gates are judged by (promotion, `patterns list`).
    pub async fn last_complete_eval(
        &self,
        workflow: &str,
        version: &str,
    ) -> Result<Option<EvalRecord>, EngineError> {
        Ok(self
            .store()
            .list_evals(Some(workflow), 1_000)
            .await?
            .into_iter()
            .filter(|e| e.version == version && e.complete())
            .max_by_key(|e| e.created_at_ms))
    }

    /// Every variant of `workflow` in `project`, by name, with its version and eligibility
    /// (what `shopfloor check` uses: it opens no engine, so it records nothing).
    pub async fn variant_statuses(
        &self,
        project: &Project,
        workflow: &str,
    ) -> Result<Vec<VariantStatus>, EngineError> {
        variant_statuses(project, self.store(), workflow).await
    }
}

/// [`Records::variant_statuses`].
async fn variant_statuses(
    project: &Project,
    store: &dyn Store,
    workflow: &str,
) -> Result<Vec<VariantStatus>, EngineError> {
    let loaded = project.workflow(workflow)?;
    if loaded.spec.variants.is_empty() {
        return Ok(Vec::new());
    }
    let evals = store.list_evals(Some(workflow), 1_000).await?;
    // Only a complete eval of the workflow's own dataset counts: a smaller one proves less.
    let dataset = loaded
        .spec
        .eval
        .as_ref()
        .and_then(|e| e.dataset.as_ref())
        .map(|d| d.value.clone());
    let mut out = Vec::with_capacity(loaded.spec.variants.len());
    for variant in &loaded.spec.variants {
        let name = variant.name.value.as_str();
        let version = project.variant(workflow, name)?.version.clone();
        let last_eval = evals
            .iter()
            .filter(|e| {
                e.version == version
                    && e.complete()
                    && e.model_override.is_none()
                    && dataset.as_deref() == Some(e.dataset.as_str())
            })
            .max_by_key(|e| e.created_at_ms)
            .map(|e| (e.id.clone(), e.passed));
        out.push(VariantStatus {
            name: name.to_string(),
            description: variant.description.clone(),
            eligible: matches!(last_eval, Some((_, Some(true)))),
            version,
            last_eval,
        });
    }
    Ok(out)
}
