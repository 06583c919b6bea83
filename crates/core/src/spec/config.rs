//! `shopfloor.toml`: the project's models.

use std::collections::BTreeMap;

use serde::Serialize;

use super::provider::{ProviderKind, RequiredField};
use super::reader::{parse, Located, Source, TableReader};
use super::types::DataClass;
use crate::Diagnostic;

/// Prices in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// The cost of one call.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_mtok
            + completion_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// A named model endpoint, `[models.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    pub name: String,
    pub provider: ProviderKind,
    /// The vendor's model id.
    pub model: String,
    pub base_url: Option<String>,
    /// The environment variable holding the API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Recorded-responses file, for `replay`.
    pub file: Option<String>,
    pub price: Price,
    /// Data classes this model may see.
    pub data_classes: Vec<DataClass>,
    /// Runs inside the organisation (local or self-hosted): may see raw text if its classes allow.
    pub on_premises: bool,
    /// `kind`: what the model does, chat (the default) or embeddings.
    pub kind: ModelUse,
    pub line: Option<usize>,
}

/// What a model is for: answering chats (workflows, the judge, Chat Completions) or turning
/// texts into vectors (`POST /v1/embeddings`). One never stands in for the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelUse {
    #[default]
    Chat,
    Embedding,
}

impl ModelUse {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelUse::Chat => "chat",
            ModelUse::Embedding => "embedding",
        }
    }
}

/// What to do with personal data found in text bound for a model outside the building.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExternalAction {
    /// Replace each finding with a typed placeholder; restore it in the answer.
    #[default]
    Redact,
    /// Refuse to send the text, naming the kinds of data found.
    Block,
    /// Send as is.
    Allow,
}

/// What the database keeps of personal data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreAction {
    #[default]
    Redact,
    Allow,
}

/// `[policy.pii]`: which detectors run and what happens to their findings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PiiPolicy {
    pub detect: Vec<crate::pii::PiiKind>,
    pub on_external: ExternalAction,
    pub on_store: StoreAction,
    /// `images = "allow"`: images may go to models outside the premises although no detector
    /// can read them. The default (`"refuse"`) refuses them there unless `on_external` is
    /// `allow`.
    pub images_external: bool,
}

/// `[gateway]`: how `shopfloor serve` routes calls to its OpenAI-compatible endpoint, where
/// the client names a model and sends its own messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewaySpec {
    /// The class of the data clients send; a model not allowed it is never called.
    pub data_class: DataClass,
    /// Each attempt's timeout.
    pub timeout_ms: u64,
    /// Retries of retryable errors, per model.
    pub retries: u32,
    /// A model name → the models tried, in order, when it gives up.
    pub fallbacks: BTreeMap<String, Vec<String>>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            data_class: DataClass::Internal,
            timeout_ms: 60_000,
            retries: 2,
            fallbacks: BTreeMap::new(),
        }
    }
}

/// `[server]`: limits of `shopfloor serve` that belong with the project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSpec {
    /// `body_timeout`: seconds a request's body has to arrive after its head.
    pub body_timeout_secs: u64,
    /// `body_budget_mb`: MiB of request bodies held at once, in all; past it, 503.
    pub body_budget_mb: u64,
    /// `public_url`: the address people reach the server at (`https://shopfloor.example`),
    /// when it is not the one it listens on — behind a proxy that ends TLS. An `https` URL
    /// makes the session cookie `Secure`; `dashboard link` prints links to it.
    pub public_url: Option<String>,
}

impl ServerSpec {
    /// Whether people reach the server over HTTPS (the session cookie is then `Secure`).
    pub fn https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            body_timeout_secs: 30,
            body_budget_mb: 256,
            public_url: None,
        }
    }
}

/// `[monitoring]`: drift checks (`shopfloor drift`, and `serve` on a schedule) and where the
/// operating signals are posted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MonitoringSpec {
    /// `every`: seconds between the drift checks `serve` runs (`"1h"`, `"30m"`); `None`: never.
    pub every_secs: Option<u64>,
    /// `min_runs` and the rest of how drift is judged.
    pub drift: crate::drift::checks::DriftSettings,
    /// `webhook`: where drift alerts are POSTed; without it, each workflow's `[review]
    /// webhook`. Left out of the serialised config when unset (no new config version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<super::WebhookSpec>,
    /// `weekly_webhook`: where `serve` POSTs the weekly review once each week has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weekly_webhook: Option<super::WebhookSpec>,
}

/// `shopfloor.toml` as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProjectConfig {
    pub name: Option<String>,
    pub models: BTreeMap<String, ModelSpec>,
    /// `None` when the config has no `[policy.pii]`: nothing is detected.
    pub pii: Option<PiiPolicy>,
    pub gateway: GatewaySpec,
    pub server: ServerSpec,
    pub monitoring: MonitoringSpec,
    /// `[intake] hourly_rate`: what an hour of the people doing a process costs, for ranking
    /// proposed processes by value; `None`: [`super::intake::DEFAULT_HOURLY_RATE`]. Left out
    /// of the serialised config when unset, so that it moves no config version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly_rate: Option<f64>,
    /// `[retention]`: how long runs keep their texts and are kept at all. Left out of the
    /// serialised config when unset.
    #[serde(skip_serializing_if = "RetentionSpec::is_unset")]
    pub retention: RetentionSpec,
}

/// `[retention]`: old production runs lose their texts after `keep_text_days`, and go after
/// `runs_days`; `serve` applies it in the background, `shopfloor retention apply` at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RetentionSpec {
    pub runs_days: Option<u32>,
    pub keep_text_days: Option<u32>,
}

impl RetentionSpec {
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// The most days a retention period may name: a hundred years.
const MAX_RETENTION_DAYS: u64 = 36_500;

fn read_retention(t: &TableReader<'_, '_>) -> RetentionSpec {
    let days = |key: &'static str| {
        let n = t.unsigned_at_most(key, MAX_RETENTION_DAYS)?;
        if n == 0 {
            t.invalid(key, "must be at least 1 (days)".into());
            return None;
        }
        u32::try_from(n).ok()
    };
    let spec = RetentionSpec {
        runs_days: days("runs_days"),
        keep_text_days: days("keep_text_days"),
    };
    if let (Some(runs), Some(text)) = (spec.runs_days, spec.keep_text_days) {
        if text >= runs {
            t.invalid(
                "keep_text_days",
                format!(
                    "{text} is not less than runs_days ({runs}); runs are deleted before their \
                     texts would be stripped"
                ),
            );
        }
    }
    spec
}

/// Parse `shopfloor.toml`. Returns the config (possibly partial) and every problem found.
pub fn parse_config(file: &str, text: &str) -> (ProjectConfig, Vec<Diagnostic>) {
    let source = Source::new(file, text);
    let mut config = ProjectConfig::default();
    if let Some(doc) = parse(&source, text) {
        let root = TableReader::root(&source, &doc);
        if let Some(project) = root.table("project") {
            config.name = project.string("name").map(|n| n.value);
            project.finish();
        }
        match root.table("models") {
            Some(models) => {
                for (name, table) in models.entries() {
                    if let Some(table) = table {
                        if let Some(spec) = read_model(&name, &table) {
                            config.models.insert(name.value.clone(), spec);
                        }
                        table.finish();
                    }
                }
            }
            None => source.report(
                None,
                "models",
                "no models defined; add at least one [models.NAME] table with a provider and a model".into(),
            ),
        }
        if let Some(gateway) = root.table("gateway") {
            config.gateway = read_gateway(&gateway, &config.models);
            gateway.finish();
        }
        if let Some(server) = root.table("server") {
            config.server = read_server(&server);
            server.finish();
        }
        if let Some(monitoring) = root.table("monitoring") {
            config.monitoring = read_monitoring(&monitoring);
            monitoring.finish();
        }
        if let Some(retention) = root.table("retention") {
            config.retention = read_retention(&retention);
            retention.finish();
        }
        if let Some(intake) = root.table("intake") {
            config.hourly_rate = intake.number("hourly_rate").filter(|&rate| {
                let ok = rate >= 0.0;
                if !ok {
                    intake.invalid("hourly_rate", format!("cannot be negative, got {rate}"));
                }
                ok
            });
            intake.finish();
        }
        if let Some(policy) = root.table("policy") {
            if let Some(pii) = policy.table("pii") {
                config.pii = Some(read_pii(&pii));
                pii.finish();
            }
            policy.finish();
        }
        root.finish();
    }
    (config, source.into_diagnostics())
}

fn read_model(name: &Located<String>, t: &TableReader<'_, '_>) -> Option<ModelSpec> {
    let provider = t.choice("provider", ProviderKind::CHOICES);
    if t.line_of("provider").is_none() {
        t.missing("provider", &format!("one of: {}", ProviderKind::expected()));
    }
    let model = t.required_string("model", "the provider's model id, e.g. \"gpt-4o-mini\"");
    let base_url = t.string("base_url").map(|u| u.value);
    let api_key_env = t.string("api_key_env").map(|e| e.value);
    let file = t.string("file").map(|f| f.value);
    let on_premises = t.boolean("on_premises");
    let price = t.table("price").map(|p| {
        let price = Price {
            input_per_mtok: p.number("input_per_mtok").unwrap_or(0.0),
            output_per_mtok: p.number("output_per_mtok").unwrap_or(0.0),
        };
        if price.input_per_mtok < 0.0 || price.output_per_mtok < 0.0 {
            t.invalid("price", "prices cannot be negative".into());
        }
        p.finish();
        price
    });
    let data_classes = read_data_classes(t);
    let kind = t
        .choice(
            "kind",
            &[("chat", ModelUse::Chat), ("embedding", ModelUse::Embedding)],
        )
        .unwrap_or_default();
    let provider = provider?;
    if kind == ModelUse::Embedding
        && matches!(provider, ProviderKind::Anthropic | ProviderKind::Replay)
    {
        t.invalid(
            "kind",
            format!(
                "{} models do not serve embeddings; use an openai, openai-compatible or local model",
                provider.as_str()
            ),
        );
    }
    match provider.facts().requires {
        Some(RequiredField::BaseUrl(example)) if base_url.is_none() => t.missing(
            "base_url",
            &format!("the server's OpenAI-compatible base URL, e.g. \"{example}\""),
        ),
        Some(RequiredField::File(example)) if file.is_none() => t.missing(
            "file",
            &format!("the recorded-responses file, e.g. \"{example}\""),
        ),
        _ => {}
    }
    if let Some(url) = &base_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            t.invalid(
                "base_url",
                format!("\"{url}\" is not an http:// or https:// URL"),
            );
        }
    }
    Some(ModelSpec {
        name: name.value.clone(),
        provider,
        model: model?.value,
        base_url,
        api_key_env: api_key_env.or_else(|| provider.default_api_key_env().map(String::from)),
        file,
        price: price.unwrap_or_default(),
        data_classes: data_classes.unwrap_or_else(|| vec![DataClass::Public]),
        on_premises: on_premises.unwrap_or(provider.facts().on_premises),
        kind,
        line: name.line,
    })
}

fn read_pii(t: &TableReader<'_, '_>) -> PiiPolicy {
    let mut detect = Vec::new();
    for name in t.strings("detect").unwrap_or_default() {
        match crate::pii::PiiKind::parse(&name.value) {
            Ok(kind) => detect.push(kind),
            Err(e) => t.invalid("detect", e.to_string()),
        }
    }
    if t.line_of("detect").is_none() {
        detect = crate::pii::PiiKind::ALL.to_vec();
    }
    let on_external = t
        .choice(
            "on_external",
            &[
                ("redact", ExternalAction::Redact),
                ("block", ExternalAction::Block),
                ("allow", ExternalAction::Allow),
            ],
        )
        .unwrap_or_default();
    let on_store = t
        .choice(
            "on_store",
            &[
                ("redact", StoreAction::Redact),
                ("allow", StoreAction::Allow),
            ],
        )
        .unwrap_or_default();
    let images_external = t
        .choice("images", &[("refuse", false), ("allow", true)])
        .unwrap_or(false);
    PiiPolicy {
        detect,
        on_external,
        on_store,
        images_external,
    }
}

fn read_server(t: &TableReader<'_, '_>) -> ServerSpec {
    let defaults = ServerSpec::default();
    let body_timeout_secs = t
        .unsigned_at_most("body_timeout", 3600)
        .unwrap_or(defaults.body_timeout_secs);
    if body_timeout_secs == 0 {
        t.invalid("body_timeout", "must be at least 1 (seconds)".into());
    }
    let body_budget_mb = t
        .unsigned_at_most("body_budget_mb", 1 << 20)
        .unwrap_or(defaults.body_budget_mb);
    if body_budget_mb == 0 {
        t.invalid("body_budget_mb", "must be at least 1 (MiB)".into());
    }
    let public_url = t.string("public_url").and_then(|url| {
        let url = url.value.trim_end_matches('/').to_string();
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match host {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Some(url),
            _ => {
                t.invalid(
                    "public_url",
                    format!(
                        "\"{url}\" is not an address; expected https://HOST or http://HOST:PORT"
                    ),
                );
                None
            }
        }
    });
    ServerSpec {
        body_timeout_secs: body_timeout_secs.max(1),
        body_budget_mb: body_budget_mb.max(1),
        public_url,
    }
}

fn read_monitoring(t: &TableReader<'_, '_>) -> MonitoringSpec {
    let mut spec = MonitoringSpec::default();
    if let Some(min_runs) = t.unsigned_at_most("min_runs", 1_000_000) {
        if min_runs == 0 {
            t.invalid("min_runs", "must be at least 1 (runs)".into());
        } else {
            spec.drift.min_runs = min_runs;
        }
    }
    spec.webhook = super::review::read_webhook(t, "webhook", "the URL drift alerts are POSTed to");
    spec.weekly_webhook = super::review::read_webhook(
        t,
        "weekly_webhook",
        "the URL the weekly review is POSTed to each Monday",
    );
    if let Some(every) = t.string("every") {
        match parse_interval(&every.value) {
            Some(secs) => spec.every_secs = Some(secs),
            None => t.invalid(
                "every",
                format!(
                    "\"{}\" is not an interval; expected a whole number of s, m, h or d of at least 1 minute, e.g. \"1h\"",
                    every.value
                ),
            ),
        }
    }
    spec
}

/// `"90s"`, `"30m"`, `"1h"`, `"1d"` in seconds; `None` for anything else or under a minute.
pub fn parse_interval(text: &str) -> Option<u64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let count: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    count.checked_mul(scale).filter(|secs| *secs >= 60)
}

fn read_gateway(t: &TableReader<'_, '_>, models: &BTreeMap<String, ModelSpec>) -> GatewaySpec {
    let defaults = GatewaySpec::default();
    let data_class = t
        .choice("data_class", DataClass::CHOICES)
        .unwrap_or(defaults.data_class);
    let timeout_ms = t
        .unsigned_at_most("timeout_ms", super::MAX_TIMEOUT_MS)
        .unwrap_or(defaults.timeout_ms);
    if timeout_ms == 0 {
        t.invalid("timeout_ms", "must be at least 1".into());
    }
    let retries = match t.unsigned("retries") {
        Some(n) if n > 10 => {
            t.invalid("retries", format!("{n} is more than 10"));
            defaults.retries
        }
        Some(n) => n as u32,
        None => defaults.retries,
    };
    let mut fallbacks = BTreeMap::new();
    let unknown = |name: &Located<String>| {
        let known: Vec<&str> = models.keys().map(String::as_str).collect();
        t.source().report(
            None,
            &t.field("fallbacks"),
            format!(
                "line {}: unknown model \"{}\"; models defined in shopfloor.toml: {}",
                name.line.unwrap_or(0),
                name.value,
                known.join(", ")
            ),
        );
    };
    for (model, then) in t.string_lists("fallbacks").unwrap_or_default() {
        if !models.contains_key(&model.value) {
            unknown(&model);
        }
        for next in then.iter().filter(|n| !models.contains_key(&n.value)) {
            unknown(next);
        }
        fallbacks.insert(model.value, then.into_iter().map(|n| n.value).collect());
    }
    GatewaySpec {
        data_class,
        timeout_ms,
        retries,
        fallbacks,
    }
}

fn read_data_classes(t: &TableReader<'_, '_>) -> Option<Vec<DataClass>> {
    let names = t.strings("data_classes")?;
    let mut classes = Vec::new();
    for name in names {
        match DataClass::parse(&name.value) {
            Some(c) => classes.push(c),
            None => t.source().report(
                None,
                &t.field("data_classes"),
                format!(
                    "line {}: \"{}\" is not a data class; expected public, internal, confidential or restricted",
                    name.line.unwrap_or(0),
                    name.value
                ),
            ),
        }
    }
    Some(classes)
}

#[cfg(test)]
mod tests;
