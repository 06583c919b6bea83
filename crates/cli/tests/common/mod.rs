//! Shared by the CLI's end-to-end tests: run the real binary, and scaffold the example project
//! routed to a fake OpenAI-compatible server instead of the embedded model.

#![allow(dead_code)] // Each test binary compiles this module; not all of them use every item.

use std::path::Path;
use std::process::{Command, Output};

use shopfloor_testkit::{append, openai_completion, OpenAiModel, ReceivedRequest, Reply};

/// Run `shopfloor -C dir ARGS…` to completion, never recording into a developer's PostgreSQL.
pub fn shopfloor(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .output()
        .expect("run shopfloor")
}

/// The project's SQLite store, opened beside the binary's.
pub async fn open_store(dir: &Path) -> std::sync::Arc<dyn shopfloor_store::Store> {
    let path = dir.join(".shopfloor/shopfloor.db");
    shopfloor_store::open(path.to_str().unwrap()).await.unwrap()
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `shopfloor init` into `dir`, with a model `fake` at `base_url` as the workflow's only route.
pub fn scaffold(dir: &Path, base_url: &str) {
    let out = shopfloor(dir, &["init"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let fake = OpenAiModel::new("fake", base_url)
        .id("fake-1")
        .price(0.5, 1.5);
    append(&dir.join("shopfloor.toml"), &fake.to_string());
    let workflow = dir.join("workflows/ticket-triage.toml");
    let text = std::fs::read_to_string(&workflow)
        .unwrap()
        .replace("models = [\"local\"]", "models = [\"fake\"]");
    std::fs::write(workflow, text).unwrap();
}

/// The label of the first `(label, keywords)` entry with a keyword in `prompt`, else `other`.
pub fn label_by_keywords<'a>(prompt: &str, table: &[(&'a str, &[&str])]) -> &'a str {
    table
        .iter()
        .find(|(_, keywords)| keywords.iter().any(|k| prompt.contains(k)))
        .map_or("other", |(label, _)| label)
}

/// A router that answers from the ticket text when the prompt asks for "queue", and says
/// "other" to everything when it does not (the changed prompt in the test).
pub fn keyword_router(request: &ReceivedRequest) -> Reply {
    let prompt = request.body["messages"].to_string().to_lowercase();
    let label = if prompt.contains("queue") {
        label_by_keywords(
            &prompt,
            &[
                ("billing", &["invoice", "charge", "refund", "vat"]),
                ("bug", &["error", "crash", "broken"]),
                ("account", &["password", "login", "sso", "2fa"]),
            ],
        )
    } else {
        "other"
    };
    Reply::Json(200, openai_completion(label, 100, 1))
}
