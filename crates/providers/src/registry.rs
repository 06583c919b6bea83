//! From a model's entry in `shopfloor.toml` to a ready [`Provider`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::{anthropic, openai, replay, Provider, ProviderError};

/// A provider's part of a model's config entry, as the engine hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The provider kind (`openai`, `openai-compatible`, `anthropic`, `replay`).
    pub kind: String,
    /// The model's name in config, used in errors.
    pub name: String,
    /// Where the API lives, for kinds that speak HTTP.
    pub base_url: Option<String>,
    /// The environment variable that holds the API key (the key itself is never in config).
    pub api_key_env: Option<String>,
    /// The recording, for `replay`.
    pub file: Option<PathBuf>,
}

type Constructor = fn(&ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError>;

/// Every kind this crate builds. A new provider is a module plus one line here.
const KINDS: &[(&str, Constructor)] = &[
    ("openai", openai::from_config),
    ("openai-compatible", openai::compatible_from_config),
    ("anthropic", anthropic::from_config),
    ("replay", replay::from_config),
];

/// The kinds [`build`] accepts, in registration order.
pub fn known_kinds() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|(kind, _)| *kind)
}

/// Build the provider a model's config describes; reads its API key from the environment now.
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    match KINDS.iter().find(|(kind, _)| *kind == config.kind) {
        Some((_, constructor)) => constructor(config),
        None => Err(ProviderError::Config(format!(
            "model '{}' has unknown provider \"{}\"; known providers: {} (and \"local\" where \
             the embedded model is built in)",
            config.name,
            config.kind,
            known_kinds().collect::<Vec<_>>().join(", ")
        ))),
    }
}

impl ProviderConfig {
    /// The API key from the variable named by `api_key_env`, if one is named.
    /// Surrounding whitespace (a pasted newline) is dropped; the key never appears in errors.
    pub fn api_key(&self) -> Result<Option<String>, ProviderError> {
        let Some(variable) = self.api_key_env.as_deref() else {
            return Ok(None);
        };
        let problem = match std::env::var(variable) {
            Ok(value) if !value.trim().is_empty() => return Ok(Some(value.trim().to_owned())),
            Ok(_) => "is set but empty",
            Err(std::env::VarError::NotPresent) => "is not set",
            Err(std::env::VarError::NotUnicode(_)) => "is not valid UTF-8",
        };
        Err(ProviderError::Config(format!(
            "model '{}' needs an API key in the environment variable {variable}, which {problem}: \
             set {variable} before starting shopfloor, or change api_key_env for this model in \
             shopfloor.toml",
            self.name
        )))
    }

    /// The API key for a vendor's official endpoint. Without a `base_url` the official API is
    /// meant, and it always wants a key: fail at start-up, not on the first request. With a
    /// `base_url` (a proxy, a fake server) a missing key is allowed.
    pub fn vendor_api_key(
        &self,
        vendor: &str,
        default_env: &str,
    ) -> Result<Option<String>, ProviderError> {
        if self.base_url.is_none() && self.api_key_env.is_none() {
            return Err(ProviderError::Config(format!(
                "model '{}' uses the {vendor} API, which needs an API key: add \
                 api_key_env = \"{default_env}\" to its entry in shopfloor.toml and set that variable",
                self.name
            )));
        }
        self.api_key()
    }

    /// The configured base URL, or an error showing how to write one (`example`).
    pub fn require_base_url(&self, example: &str) -> Result<&str, ProviderError> {
        self.base_url.as_deref().ok_or_else(|| {
            ProviderError::Config(format!(
                "model '{}' uses provider \"{}\", which needs a base_url: add \
                 base_url = \"{example}\" to its entry in shopfloor.toml",
                self.name, self.kind
            ))
        })
    }
}
