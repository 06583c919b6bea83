//! Shared by the CLI's end-to-end tests: run the real binary, and scaffold the example project
//! routed to a fake OpenAI-compatible server instead of the embedded model.

#![allow(dead_code)] // Each test binary compiles this module; not all of them use every item.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    // Tests that are not about review keep every output released, as they were written for.
    let text = text
        .lines()
        .filter(|l| !l.starts_with("hold_labels"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
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

/// A running `shopfloor serve` and the base URL it printed.
pub struct Replica {
    pub child: Child,
    pub base: String,
}

impl Replica {
    pub fn start(dir: &Path, database_url: Option<&str>, extra: &[&str], log: &str) -> Replica {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shopfloor"));
        command.arg("-C").arg(dir);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SHOPFLOOR_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start shopfloor serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Replica { child, base }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "shopfloor serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `shopfloor keys create`: the new key.
pub fn create_named_key(dir: &Path, database_url: Option<&str>, name: &str, role: &str) -> String {
    let mut args = Vec::new();
    if let Some(url) = database_url {
        args.extend(["--database-url", url]);
    }
    args.extend(["keys", "create", "--name", name, "--role", role]);
    let out = shopfloor(dir, &args);
    assert!(out.status.success(), "{:?}", text(&out));
    text(&out).0.trim().to_string()
}
