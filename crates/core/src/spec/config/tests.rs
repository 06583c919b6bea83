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
            .any(|t| t.starts_with("shopfloor.toml:6: models.b.provider: \"nope\" is not one of")),
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

    let text =
        format!("{models}\n[server]\nbody_timeout = 0\n\n[gateway]\ntimeout_ms = 99999999999\n");
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
fn the_public_url_says_whether_people_reach_the_server_over_https() {
    let models = "[models.a]\nprovider = \"local\"\nmodel = \"smollm2\"\n";
    assert!(!ServerSpec::default().https());
    let text = format!("{models}\n[server]\npublic_url = \"https://shopfloor.example/\"\n");
    let (config, diags) = parse_config("shopfloor.toml", &text);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        config.server.public_url.as_deref(),
        Some("https://shopfloor.example")
    );
    assert!(config.server.https());
    let text = format!("{models}\n[server]\npublic_url = \"http://10.0.0.5:8080\"\n");
    let (config, _) = parse_config("shopfloor.toml", &text);
    assert!(!config.server.https());
    let text = format!("{models}\n[server]\npublic_url = \"shopfloor.example\"\n");
    let (_, diags) = parse_config("shopfloor.toml", &text);
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("server.public_url") && t.contains("expected https://HOST")),
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

#[test]
fn monitoring_names_where_drift_alerts_and_the_weekly_review_go() {
    let models = "[models.a]\nprovider = \"local\"\nmodel = \"smollm2\"\n";
    let (config, diags) = parse_config(
        "shopfloor.toml",
        &format!(
            "{models}[monitoring]\nwebhook = {{ url = \"https://ops.example/drift\", secret_env = \"DRIFT_SECRET\" }}\n\
             weekly_webhook = {{ url = \"https://ops.example/weekly\", secret_env = \"WEEKLY_SECRET\" }}\n"
        ),
    );
    assert!(diags.is_empty(), "{diags:?}");
    let drift = config.monitoring.webhook.unwrap();
    assert_eq!(
        (drift.url.as_str(), drift.secret_env.as_str()),
        ("https://ops.example/drift", "DRIFT_SECRET")
    );
    let weekly = config.monitoring.weekly_webhook.unwrap();
    assert_eq!(weekly.url, "https://ops.example/weekly");
    let (_, diags) = parse_config(
        "shopfloor.toml",
        &format!(
            "{models}[monitoring]\nweekly_webhook = {{ url = \"https://ops.example/weekly\" }}\n"
        ),
    );
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("monitoring.weekly_webhook.secret_env")),
        "{text:?}"
    );
}

#[test]
fn retention_reads_its_periods_and_names_bad_ones() {
    let models = "[models.a]\nprovider = \"local\"\nmodel = \"smollm2\"\n";
    let (config, diags) = parse_config(
        "shopfloor.toml",
        &format!("{models}[retention]\nruns_days = 400\nkeep_text_days = 30\n"),
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.retention.runs_days, Some(400));
    assert_eq!(config.retention.keep_text_days, Some(30));
    let (config, _) = parse_config("shopfloor.toml", models);
    assert!(config.retention.is_unset());
    let (_, diags) = parse_config(
        "shopfloor.toml",
        &format!("{models}[retention]\nruns_days = 30\nkeep_text_days = 30\nkeep = 1\n"),
    );
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("retention.keep_text_days: 30 is not less than runs_days (30)")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("retention.keep")),
        "{text:?}"
    );
    let (_, diags) = parse_config(
        "shopfloor.toml",
        &format!("{models}[retention]\nruns_days = 0\n"),
    );
    assert!(
        diags.iter().any(|d| d
            .to_string()
            .contains("retention.runs_days: must be at least 1")),
        "{diags:?}"
    );
}
