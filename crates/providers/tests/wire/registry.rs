use shopfloor_providers::{build, known_kinds, ChatRequest, OpenAi, ProviderConfig, ProviderError};
use shopfloor_testkit::{assert_contains, openai_completion, FakeServer, Reply};

use crate::triage_request;

fn config(kind: &str) -> ProviderConfig {
    ProviderConfig {
        kind: kind.into(),
        name: "gpt-mini".into(),
        ..ProviderConfig::default()
    }
}

fn config_error(config: &ProviderConfig) -> String {
    match build(config) {
        Err(ProviderError::Config(message)) => message,
        Err(other) => panic!("expected a config error, got {other:?}"),
        Ok(provider) => panic!("expected a config error, built {}", provider.kind()),
    }
}

#[test]
fn an_unset_key_variable_says_which_variable_to_set_for_which_model() {
    let config = ProviderConfig {
        api_key_env: Some("SHOPFLOOR_TEST_KEY_THAT_IS_NEVER_SET".into()),
        ..config("openai")
    };
    let message = config_error(&config);
    assert_contains(
        &message,
        &[
            "model 'gpt-mini'",
            "set SHOPFLOOR_TEST_KEY_THAT_IS_NEVER_SET",
            "is not set",
        ],
    );
}

#[tokio::test]
async fn the_key_is_read_from_the_named_variable_at_build_time_and_never_shown() {
    // Each test runs in its own process under nextest, so setting a variable here is safe.
    std::env::set_var("SHOPFLOOR_TEST_EMPTY_KEY", " ");
    let empty = ProviderConfig {
        api_key_env: Some("SHOPFLOOR_TEST_EMPTY_KEY".into()),
        ..config("anthropic")
    };
    assert!(config_error(&empty).contains("SHOPFLOOR_TEST_EMPTY_KEY, which is set but empty"));

    std::env::set_var("SHOPFLOOR_TEST_KEY", "sk-secret-4711\n");
    let server = FakeServer::start(|_| Reply::Json(200, openai_completion("ok", 1, 1))).await;
    let config = ProviderConfig {
        base_url: Some(server.base_url()),
        api_key_env: Some("SHOPFLOOR_TEST_KEY".into()),
        ..config("openai-compatible")
    };
    let provider = build(&config).expect("provider");
    std::env::remove_var("SHOPFLOOR_TEST_KEY");
    assert_eq!(provider.kind(), "openai-compatible");
    provider
        .complete(&triage_request())
        .await
        .expect("a completion");
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer sk-secret-4711")
    );

    let debug = format!(
        "{:?}",
        OpenAi::new("m", None, Some("sk-secret-4711".into()))
    );
    assert!(!debug.contains("sk-secret"), "{debug}");
    let error = OpenAi::new("m", None, Some("sk-secret\u{7f}4711".into())).expect_err("bad key");
    assert!(!error.to_string().contains("sk-secret"), "{error}");
}

#[test]
fn an_unknown_kind_lists_the_known_ones() {
    let message = config_error(&config("opnai"));
    assert!(message.contains("unknown provider \"opnai\""), "{message}");
    for kind in ["openai", "openai-compatible", "anthropic", "replay"] {
        assert!(message.contains(kind), "{message}");
    }
    assert_eq!(known_kinds().count(), 4);
}

#[test]
fn missing_required_settings_are_named() {
    assert!(config_error(&config("openai-compatible")).contains("needs a base_url"));
    assert!(config_error(&config("replay")).contains("file = "));
    assert!(config_error(&config("openai")).contains("api_key_env = \"OPENAI_API_KEY\""));
    assert!(config_error(&config("anthropic")).contains("api_key_env = \"ANTHROPIC_API_KEY\""));
    let bad_url = ProviderConfig {
        base_url: Some("localhost:8000".into()),
        ..config("openai-compatible")
    };
    assert!(config_error(&bad_url).contains("not an http(s) URL"));
}

#[tokio::test]
async fn each_kind_builds_the_provider_it_names() {
    let server = FakeServer::start(|_| Reply::Json(200, openai_completion("ok", 1, 1))).await;
    let anthropic = ProviderConfig {
        base_url: Some(server.base_url()),
        ..config("anthropic")
    };
    let anthropic = build(&anthropic).expect("anthropic");
    assert_eq!(anthropic.kind(), "anthropic");
    assert!(anthropic.capabilities().assistant_prefix);

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("empty.jsonl");
    std::fs::write(&file, "").expect("write");
    let replay = build(&ProviderConfig {
        file: Some(file),
        ..config("replay")
    })
    .expect("replay");
    assert_eq!(replay.kind(), "replay");
    let error = replay
        .complete(&ChatRequest::default())
        .await
        .expect_err("empty recording");
    assert!(matches!(error, ProviderError::NotRecorded { .. }));
}
