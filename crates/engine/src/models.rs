//! Building providers for the models in `shopfloor.toml`, once each, on first use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use shopfloor_core::spec::{ModelSpec, ProviderKind};
use shopfloor_providers::{ExchangeRecorder, Provider, ProviderConfig, ProviderError};

/// The providers of a project's models, built lazily so that a model whose key is missing only
/// fails the runs that reach it (and its fallbacks still answer).
pub struct ModelPool {
    root: PathBuf,
    record_to: Option<PathBuf>,
    built: Mutex<HashMap<String, Arc<dyn Provider>>>,
}

impl ModelPool {
    /// `root` resolves relative replay files; `record_to` appends every exchange to a file.
    pub fn new(root: PathBuf, record_to: Option<PathBuf>) -> Self {
        Self {
            root,
            record_to,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The provider for `spec`, built on first use.
    pub fn provider(&self, spec: &ModelSpec) -> Result<Arc<dyn Provider>, ProviderError> {
        if let Some(p) = self.built.lock().map_err(|_| poisoned())?.get(&spec.name) {
            return Ok(p.clone());
        }
        let mut provider = build(spec, &self.root)?;
        if let Some(path) = &self.record_to {
            provider = Arc::new(ExchangeRecorder::new(provider, path)?);
        }
        let mut built = self.built.lock().map_err(|_| poisoned())?;
        Ok(built.entry(spec.name.clone()).or_insert(provider).clone())
    }

    /// Whether `spec` can be called now: its provider builds, by the same rules a call uses
    /// (its key variable set, or none needed). The embedded model needs no key and is not
    /// loaded for this.
    pub fn callable(&self, spec: &ModelSpec) -> Result<(), ProviderError> {
        if spec.provider == ProviderKind::Local {
            return Ok(());
        }
        self.provider(spec).map(|_| ())
    }
}

fn poisoned() -> ProviderError {
    ProviderError::Config("internal error: the model pool lock was poisoned".into())
}

/// A provider kind from the config to its implementation: `local` here, every other kind in
/// the providers' registry (a test below checks that each kind has one).
fn build(spec: &ModelSpec, root: &std::path::Path) -> Result<Arc<dyn Provider>, ProviderError> {
    match spec.provider {
        ProviderKind::Local => build_local(spec),
        kind => shopfloor_providers::build(&ProviderConfig {
            kind: kind.as_str().to_string(),
            name: spec.name.clone(),
            base_url: spec.base_url.clone(),
            api_key_env: spec.api_key_env.clone(),
            file: spec.file.as_ref().map(|f| root.join(f)),
        }),
    }
}

#[cfg(feature = "local")]
fn build_local(spec: &ModelSpec) -> Result<Arc<dyn Provider>, ProviderError> {
    let refused = |e: shopfloor_local::LocalError| {
        ProviderError::Config(format!("model \"{}\": {e}", spec.name))
    };
    Ok(match spec.kind {
        shopfloor_core::spec::ModelUse::Chat => {
            shopfloor_local::LocalProvider::shared(&spec.model).map_err(refused)?
        }
        shopfloor_core::spec::ModelUse::Embedding => {
            shopfloor_local::LocalEmbedder::shared(&spec.model).map_err(refused)?
        }
    })
}

#[cfg(not(feature = "local"))]
fn build_local(spec: &ModelSpec) -> Result<Arc<dyn Provider>, ProviderError> {
    Err(ProviderError::Config(format!(
        "model \"{}\" uses the embedded local provider, but this build of shopfloor was made without it (cargo feature `local`)",
        spec.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_kind_of_the_config_can_be_built() {
        let registered: Vec<&str> = shopfloor_providers::known_kinds().collect();
        for kind in ProviderKind::ALL {
            assert!(
                *kind == ProviderKind::Local || registered.contains(&kind.as_str()),
                "provider kind {kind} is in the config but not in the providers' registry"
            );
        }
    }
}
