//! Governance end to end through the real binary: lifecycle gates, API keys, the audit log and
//! its tamper check on the real SQLite file.

use std::path::Path;
use std::process::Output;

use crate::common;
use common::{keyword_router, scaffold, shopfloor};

use serde_json::Value;
use shopfloor_testkit::FakeServer;
use sqlx::{Connection, SqliteConnection};

fn text(out: &Output) -> String {
    let (stdout, stderr) = common::text(out);
    format!("{stdout}{stderr}")
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = shopfloor(dir, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn audit(dir: &Path) -> Vec<Value> {
    run_ok(dir, &["audit", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn tamper(dir: &Path, sql: &str) {
    let url = format!("sqlite://{}", dir.join(".shopfloor/shopfloor.db").display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotion_is_gated_and_every_change_is_audited() {
    let server = FakeServer::start(keyword_router).await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    scaffold(dir, &server.base_url());
    let workflow_file = dir.join("workflows/ticket-triage.toml");

    // The example is a pilot with no eval yet: production is refused, saying why.
    let out = shopfloor(dir, &["promote", "ticket-triage", "--to", "production"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no eval has run on the current version"),
        "{}",
        text(&out)
    );
    assert!(std::fs::read_to_string(&workflow_file)
        .unwrap()
        .contains("stage = \"pilot\""));
    let out = shopfloor(dir, &["promote", "ticket-triage", "--to", "staging"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("[possible values: pilot, production, retired]"));

    // A passing eval on the current version opens the gate.
    let out = shopfloor(dir, &["eval", "ticket-triage", "--gate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .arg("-C")
        .arg(dir)
        .args(["promote", "ticket-triage", "--to", "production"])
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .env("SHOPFLOOR_ACTOR", "dana@acme.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("moved from pilot to production"));
    let edited = std::fs::read_to_string(&workflow_file).unwrap();
    assert!(edited.contains("stage = \"production\""), "{edited}");
    assert!(
        edited.contains("# A workflow: one business process step"),
        "comments kept"
    );
    run_ok(dir, &["check"]);

    // Keys: the secret is printed once; listings and the audit log never hold it.
    let secret = run_ok(
        dir,
        &[
            "keys", "create", "--name", "ci-bot", "--role", "operator", "--team", "support",
        ],
    );
    let secret = secret.trim();
    assert!(secret.starts_with("sf_") && secret.len() == 67, "{secret}");
    let out = shopfloor(dir, &["keys", "create", "--name", "x", "--role", "root"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let listing = run_ok(dir, &["keys", "list"]);
    assert!(listing.contains("ci-bot") && listing.contains("operator") && listing.contains("live"));
    assert!(!listing.contains(&secret[12..]), "{listing}");
    assert!(
        listing.contains("limits: none; spent today $0.00"),
        "{listing}"
    );
    // Limits: set exactly as given, refused when they cannot be met, shown in the listing.
    let out = shopfloor(dir, &["keys", "limit", "ci-bot", "--rpm", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("rpm: must be at least 1"),
        "{}",
        text(&out)
    );
    let out = shopfloor(dir, &["keys", "limit", "ci-bot", "--budget-usd", "5"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--budget-usd needs its period: {}",
        text(&out)
    );
    let set = run_ok(
        dir,
        &[
            "keys",
            "limit",
            "ci-bot",
            "--rpm",
            "60",
            "--budget-usd",
            "5",
            "--budget-period",
            "month",
        ],
    );
    assert!(set.contains("limits 60 requests/min, $5.00/month"), "{set}");
    let json = run_ok(dir, &["keys", "list", "--json"]);
    let key: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(key["limits"]["rpm"], 60);
    assert_eq!(
        key["limits"]["budget"],
        serde_json::json!({"usd": 5.0, "period": "month"})
    );
    assert_eq!(key["usage"]["month_cost_usd"], 0.0);
    run_ok(dir, &["keys", "revoke", "ci-bot"]);
    assert!(run_ok(dir, &["keys", "list"]).contains("revoked"));

    let entries = audit(dir);
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "config.version",
            "workflow.version",
            "workflow.promote",
            "key.create",
            "key.limits",
            "key.revoke"
        ],
        "{entries:#?}"
    );
    let promotion = &entries[2];
    assert_eq!(promotion["actor"], "dana@acme.example");
    assert_eq!(promotion["detail"]["from"], "pilot");
    assert_eq!(promotion["detail"]["to"], "production");
    assert!(!serde_json::to_string(&entries)
        .unwrap()
        .contains(&secret[3..]));

    // A new version is audited once, when first loaded.
    let changed = edited.replace("max_tokens = 8", "max_tokens = 9");
    std::fs::write(&workflow_file, changed).unwrap();
    run_ok(dir, &["runs", "list"]);
    let out = run_ok(dir, &["audit", "verify"]);
    assert!(out.contains("intact: 7 entries"), "{out}");
    let last = audit(dir).pop().unwrap();
    assert_eq!(last["action"], "workflow.version");
    assert_eq!(last["detail"]["previous"], entries[1]["detail"]["version"]);

    // One edited row is caught and named.
    tamper(
        dir,
        "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3",
    )
    .await;
    let out = shopfloor(dir, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("audit entry 3: its content does not match its hash"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anchor_catches_entries_removed_from_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    scaffold(dir, "http://127.0.0.1:9/v1");
    for name in ["a", "b", "c"] {
        run_ok(dir, &["keys", "create", "--name", name, "--role", "viewer"]);
    }
    let out = run_ok(dir, &["audit", "verify"]);
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap_or_else(|| panic!("no head in {out}"))
        .to_string();
    let count = audit(dir).len();
    assert!(head.starts_with(&format!("{count}:")), "{out}");
    assert_eq!(head.len(), format!("{count}:").len() + 64, "{head}");

    // A prefix of the hash will do; the chain reaches the anchor.
    let short = &head[..format!("{count}:").len() + 12];
    let out = run_ok(dir, &["audit", "verify", "--anchor", short]);
    assert!(out.contains(&format!("anchor {count} reached")), "{out}");
    // An anchor the entry does not match: rewritten.
    let out = shopfloor(dir, &["audit", "verify", "--anchor", "2:000000000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("audit entry 2: it does not match the anchor"),
        "{}",
        text(&out)
    );

    // Removing the last entry leaves a chain that is intact on its own...
    tamper(dir, &format!("DELETE FROM audit_log WHERE seq = {count}")).await;
    let out = run_ok(dir, &["audit", "verify"]);
    assert!(
        out.contains(&format!("intact: {} entries", count - 1)),
        "{out}"
    );
    // ...and the anchor catches it.
    let out = shopfloor(dir, &["audit", "verify", "--anchor", &head]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "audit entry {count}: the anchored entry is gone (the log now ends at entry {})",
            count - 1
        )),
        "{}",
        text(&out)
    );

    // An anchor that is not one is a usage error naming the form.
    let out = shopfloor(dir, &["audit", "verify", "--anchor", "12"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("SEQ:HASH"), "{}", text(&out));
}

/// Every kind the detectors know, planted in one ticket.
const PLANTED: [&str; 7] = shopfloor_testkit::PLANTED_PII;

/// A model that echoes the first placeholder it was sent, as a drafted reply would.
fn echoing_model(request: &shopfloor_testkit::ReceivedRequest) -> shopfloor_testkit::Reply {
    let prompt = request.body["messages"].to_string();
    let echoed = if prompt.contains("[EMAIL_1]") {
        "[EMAIL_1]"
    } else {
        "nobody"
    };
    shopfloor_testkit::Reply::Json(
        200,
        shopfloor_testkit::openai_completion(&format!("We will write to {echoed} today."), 30, 9),
    )
}

/// Every byte under `.shopfloor/` (database, WAL) as lossy text.
fn state_bytes(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir.join(".shopfloor")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        all.push_str(&String::from_utf8_lossy(&bytes));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_pii_never_reaches_an_external_model_the_database_or_the_logs() {
    let server = FakeServer::start(echoing_model).await;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("shopfloor.toml"),
        format!(
            "[policy.pii]\n\
             detect = [\"email\", \"phone\", \"credit_card\", \"iban\", \"ssn\", \"ip\", \"secret\"]\n\
             on_external = \"redact\"\non_store = \"redact\"\n\n\
             [models.gpt]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\nbase_url = \"{}\"\n\
             api_key_env = \"SHOPFLOOR_TEST_OPENAI_KEY\"\ndata_classes = [\"internal\"]\n",
            server.base_url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("workflows/reply.toml"),
        "data_class = \"internal\"\n\
         [input]\nschema = { type = \"object\", required = [\"message\"], properties = { message = { type = \"string\" } } }\n\
         [prompt]\nuser = \"Draft a reply to: {{ message }}\"\n\
         [output]\ntext = { max_chars = 500 }\n\
         [route]\nmodels = [\"gpt\"]\n",
    )
    .unwrap();
    let message = format!(
        "Write to {} or call {}. Card {} and IBAN {} were charged; SSN {}; from {}; my key is {}.",
        PLANTED[0], PLANTED[1], PLANTED[2], PLANTED[3], PLANTED[4], PLANTED[5], PLANTED[6]
    );
    let input = serde_json::json!({ "message": message }).to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopfloor"))
        .arg("-C")
        .arg(dir)
        .args(["run", "reply", "--json", &input])
        .env_remove("SHOPFLOOR_DATABASE_URL")
        .env("SHOPFLOOR_TEST_OPENAI_KEY", "test-key")
        .env("SHOPFLOOR_LOG", "debug")
        .output()
        .unwrap();
    let (stdout, logs) = common::text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{logs}");

    // The caller gets the echoed value back.
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        result["output"],
        format!("We will write to {} today.", PLANTED[0])
    );

    let sent: String = server
        .requests()
        .iter()
        .map(|r| r.body.to_string())
        .collect();
    let stored = state_bytes(dir);
    for value in PLANTED {
        assert!(!sent.contains(value), "{value} reached the model: {sent}");
        assert!(!stored.contains(value), "{value} is in the database files");
        assert!(!logs.contains(value), "{value} is in the logs: {logs}");
        assert!(!stdout.contains(value) || value == PLANTED[0], "{stdout}");
    }
    for placeholder in [
        "[EMAIL_1]",
        "[PHONE_1]",
        "[CARD_1]",
        "[IBAN_1]",
        "[SSN_1]",
        "[IP_1]",
        "[SECRET_1]",
    ] {
        assert!(sent.contains(placeholder), "{placeholder} missing: {sent}");
    }
}
