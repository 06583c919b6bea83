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
    pub line: Option<usize>,
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
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            body_timeout_secs: 30,
            body_budget_mb: 256,
        }
    }
}

/// `[monitoring]`: drift checks (`shopfloor drift`, and `serve` on a schedule).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MonitoringSpec {
    /// `every`: seconds between the drift checks `serve` runs (`"1h"`, `"30m"`); `None`: never.
    pub every_secs: Option<u64>,
    /// `min_runs` and the rest of how drift is judged.
    pub drift: crate::drift::checks::DriftSettings,
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
    let provider = provider?;
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
    PiiPolicy {
        detect,
        on_external,
        on_store,
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
    ServerSpec {
        body_timeout_secs: body_timeout_secs.max(1),
        body_budget_mb: body_budget_mb.max(1),
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
mod tests {
    use super::*;

    #[test]
    fn reads_models_with_defaults() {
        let (config, diags) = parse_config(
            "shopfloor.toml",
            r#"
[models.local]
provider = "local"
model = "smollm2"
data_classes = ["public", "internal"]

[models.gpt-mini]
provider = "openai"
model = "gpt-4o-mini"
price = { input_per_mtok = 0.15, output_per_mtok = 0.60 }
"#,
        );
        assert!(diags.is_empty(), "{diags:?}");
        let local = &config.models["local"];
        assert!(local.on_premises);
        assert_eq!(
            local.data_classes,
            vec![DataClass::Public, DataClass::Internal]
        );
        let gpt = &config.models["gpt-mini"];
        assert_eq!(gpt.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert!(!gpt.on_premises);
        assert_eq!(gpt.data_classes, vec![DataClass::Public]);
        assert!((gpt.price.cost(1_000_000, 1_000_000) - 0.75).abs() < 1e-9);
    }

    #[test]
    fn reports_every_problem_with_lines() {
        let (_, diags) = parse_config(
            "shopfloor.toml",
            "[models.a]\nprovider = \"openai\"\nmodle = \"x\"\n\n[models.b]\nprovider = \"nope\"\nmodel = \"y\"\n",
        );
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("shopfloor.toml:3: models.a.modle: unknown key")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("models.a.model: missing")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t
                    .starts_with("shopfloor.toml:6: models.b.provider: \"nope\" is not one of")),
            "{text:?}"
        );
    }

    #[test]
    fn reads_the_pii_policy() {
        let (config, diags) = parse_config(
            "shopfloor.toml",
            "[policy.pii]\ndetect = [\"email\", \"credit_card\"]\non_external = \"block\"\n[models.a]\nprovider = \"local\"\nmodel = \"smollm2\"\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let pii = config.pii.unwrap();
        assert_eq!(
            pii.detect,
            vec![crate::pii::PiiKind::Email, crate::pii::PiiKind::Card]
        );
        assert_eq!(pii.on_external, ExternalAction::Block);
        assert_eq!(pii.on_store, StoreAction::Redact);
        let (_, diags) = parse_config(
            "shopfloor.toml",
            "[policy.pii]\ndetect = [\"emails\"]\non_store = \"keep\"\n[models.a]\nprovider = \"local\"\nmodel = \"m\"\n",
        );
        assert!(
            diags
                .iter()
                .any(|d| d.field == "policy.pii.detect" && d.message.contains("emails")),
            "{diags:?}"
        );
        assert!(
            diags.iter().any(|d| d.field == "policy.pii.on_store"),
            "{diags:?}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let (_, diags) = parse_config("shopfloor.toml", "[models.a]\nprovider = \n");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].line, Some(2), "{diags:?}");
    }

    #[test]
    fn replay_needs_a_file_and_compatible_needs_a_url() {
        let (_, diags) = parse_config(
            "shopfloor.toml",
            "[models.r]\nprovider = \"replay\"\nmodel = \"m\"\n[models.c]\nprovider = \"openai-compatible\"\nmodel = \"m\"\n",
        );
        assert!(
            diags.iter().any(|d| d.field == "models.r.file"),
            "{diags:?}"
        );
        assert!(
            diags.iter().any(|d| d.field == "models.c.base_url"),
            "{diags:?}"
        );
    }

    #[test]
    fn reads_the_gateway_table_and_checks_fallback_models() {
        let models = "[models.a]\nprovider = \"local\"\nmodel = \"smollm2\"\n\n[models.b]\nprovider = \"local\"\nmodel = \"smollm2\"\n";
        let (config, diags) = parse_config("shopfloor.toml", models);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(config.gateway, GatewaySpec::default());
        assert_eq!(config.gateway.data_class, DataClass::Internal);

        let text = format!(
            "{models}\n[gateway]\ndata_class = \"confidential\"\ntimeout_ms = 5000\nretries = 1\nfallbacks = {{ a = [\"b\"] }}\n"
        );
        let (config, diags) = parse_config("shopfloor.toml", &text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(config.gateway.data_class, DataClass::Confidential);
        assert_eq!(config.gateway.timeout_ms, 5000);
        assert_eq!(config.gateway.retries, 1);
        assert_eq!(config.gateway.fallbacks["a"], vec!["b".to_string()]);

        let text = format!("{models}\n[gateway]\nfallbacks = {{ a = [\"nope\"] }}\nretry = 1\n");
        let (_, diags) = parse_config("shopfloor.toml", &text);
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("gateway.fallbacks") && t.contains("unknown model \"nope\"")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("gateway.retry: unknown key")),
            "{text:?}"
        );
    }

    #[test]
    fn reads_the_server_table_and_refuses_out_of_range_limits() {
        let models = "[models.a]\nprovider = \"local\"\nmodel = \"smollm2\"\n";
        let (config, _) = parse_config("shopfloor.toml", models);
        assert_eq!(config.server, ServerSpec::default());
        assert_eq!(config.server.body_timeout_secs, 30);

        let text = format!("{models}\n[server]\nbody_timeout = 5\nbody_budget_mb = 64\n");
        let (config, diags) = parse_config("shopfloor.toml", &text);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(config.server.body_timeout_secs, 5);
        assert_eq!(config.server.body_budget_mb, 64);

        let text = format!(
            "{models}\n[server]\nbody_timeout = 0\n\n[gateway]\ntimeout_ms = 99999999999\n"
        );
        let (_, diags) = parse_config("shopfloor.toml", &text);
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("server.body_timeout") && t.contains("at least 1")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("gateway.timeout_ms")
                && t.contains("99999999999 is too large; expected at most 3600000")),
            "{text:?}"
        );
    }

    #[test]
    fn monitoring_reads_an_interval_and_min_runs_and_names_bad_values() {
        let models = "[models.a]\nprovider = \"local\"\nmodel = \"smollm2\"\n";
        let (config, diags) = parse_config(
            "shopfloor.toml",
            &format!("{models}[monitoring]\nevery = \"1h\"\nmin_runs = 50\n"),
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(config.monitoring.every_secs, Some(3600));
        assert_eq!(config.monitoring.drift.min_runs, 50);
        let (config, _) = parse_config("shopfloor.toml", models);
        assert_eq!(config.monitoring, MonitoringSpec::default());
        assert_eq!(config.monitoring.drift.min_runs, 200);
        let (_, diags) = parse_config(
            "shopfloor.toml",
            &format!("{models}[monitoring]\nevery = \"10s\"\nmin_runs = 0\n"),
        );
        let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("monitoring.min_runs: must be at least 1"),
            "{text:?}"
        );
        assert!(
            text[1].contains("monitoring.every: \"10s\" is not an interval"),
            "{text:?}"
        );
        assert_eq!(parse_interval("30m"), Some(1800));
        assert_eq!(parse_interval("1d"), Some(86_400));
        assert_eq!(parse_interval("h"), None);
        assert_eq!(parse_interval("5x"), None);
    }
}
