//! `GET /v1/models` and `GET /v1/models/{id}` through the real server: what a key may call,
//! and only models that can be called.

use crate::common;

use common::*;
use shopfloor_testkit::FakeServer;

#[tokio::test]
async fn models_lists_what_the_key_may_use() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    let server = TestServer::start(dir.path(), test_config()).await;
    let (status, body) = get(
        &client(),
        &server.url("/v1/models"),
        Some(&server.keys.operator),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    // `secret-only` may not see internal data, the gateway's class: not listed.
    assert_eq!(
        ids,
        vec![
            "backup",
            "fast",
            "workflow:approve",
            "workflow:ticket",
            "workflow:triage"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_model_is_listed_and_found_only_if_it_can_be_called() {
    let upstream = FakeServer::start(answer).await;
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &upstream.base_url(), &upstream.base_url());
    // An OpenAI model whose key variable is not set on the server.
    shopfloor_testkit::append(
        &dir.path().join("shopfloor.toml"),
        "\n[models.gpt-keyless]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n\
         api_key_env = \"SHOPFLOOR_TEST_KEY_NEVER_SET\"\ndata_classes = [\"internal\"]\n",
    );
    let server = TestServer::start(dir.path(), test_config()).await;
    let (c, key) = (client(), server.keys.operator.clone());
    let (_, list) = get(&c, &server.url("/v1/models"), Some(&key)).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"fast") && !ids.contains(&"gpt-keyless"),
        "{ids:?}"
    );
    let (status, fast) = get(&c, &server.url("/v1/models/fast"), Some(&key)).await;
    assert_eq!((status, fast["id"].as_str()), (200, Some("fast")), "{fast}");
    assert_eq!(fast["object"], "model");
    let (status, keyless) = get(&c, &server.url("/v1/models/gpt-keyless"), Some(&key)).await;
    assert_eq!(status, 404);
    assert_openai_error(&keyless, "not_found_error");
    assert_eq!(keyless["error"]["code"], "model_not_found");
    assert!(
        keyless["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SHOPFLOOR_TEST_KEY_NEVER_SET, which is not set"),
        "{keyless}"
    );
    let (status, _) = get(&c, &server.url("/v1/models/nope"), Some(&key)).await;
    assert_eq!(status, 404);
    let (status, workflow) = get(&c, &server.url("/v1/models/workflow:triage"), Some(&key)).await;
    assert_eq!(
        (status, workflow["owned_by"].as_str()),
        (200, Some("shopfloor"))
    );
    server.stop().await;
}
