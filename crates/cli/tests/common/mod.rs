//! Shared by the CLI's end-to-end tests: run the real binary, and scaffold the example project
//! routed to a fake OpenAI-compatible server instead of the embedded model.

use std::path::Path;
use std::process::{Command, Output};

use shopfloor_testkit::{openai_completion, ReceivedRequest, Reply};

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
    let config = std::fs::read_to_string(dir.join("shopfloor.toml")).unwrap();
    std::fs::write(
        dir.join("shopfloor.toml"),
        format!(
            "{config}\n[models.fake]\nprovider = \"openai-compatible\"\nmodel = \"fake-1\"\nbase_url = \"{base_url}\"\nprice = {{ input_per_mtok = 0.5, output_per_mtok = 1.5 }}\ndata_classes = [\"public\", \"internal\"]\n"
        ),
    )
    .unwrap();
    let workflow = dir.join("workflows/ticket-triage.toml");
    let text = std::fs::read_to_string(&workflow)
        .unwrap()
        .replace("models = [\"local\"]", "models = [\"fake\"]");
    std::fs::write(workflow, text).unwrap();
}

/// A router that answers from the ticket text when the prompt asks for "queue", and says
/// "other" to everything when it does not (the changed prompt in the test).
#[allow(dead_code)] // Not every test binary routes by keyword.
pub fn keyword_router(request: &ReceivedRequest) -> Reply {
    let prompt = request.body["messages"].to_string().to_lowercase();
    let label = if !prompt.contains("queue") {
        "other"
    } else if prompt.contains("invoice")
        || prompt.contains("charge")
        || prompt.contains("refund")
        || prompt.contains("vat")
    {
        "billing"
    } else if prompt.contains("error") || prompt.contains("crash") || prompt.contains("broken") {
        "bug"
    } else if prompt.contains("password")
        || prompt.contains("login")
        || prompt.contains("sso")
        || prompt.contains("2fa")
    {
        "account"
    } else {
        "other"
    };
    Reply::Json(200, openai_completion(label, 100, 1))
}
