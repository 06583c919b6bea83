//! Shared by the store's test binaries: a store on a fresh database of either backend, and
//! records to put in it.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use shopfloor_core::scorers::Score;
use shopfloor_store::testing::TestPostgres;
use shopfloor_store::{
    open, AttemptOutcome, AttemptRecord, BatchRecord, BatchStatus, Caller, EvalCaseRecord,
    EvalRecord, EvalStatus, RunRecord, RunStatus, Store,
};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// Runs every named `async fn case(db: &Db)` of the invoking file once per backend, each on a
/// fresh database of its own.
#[allow(unused_macros)] // Not every test binary runs per-backend cases.
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case(&super::Db::sqlite().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                super::$case(&super::Db::postgres().await).await;
            })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_backends;

/// A store on a fresh database, and what it takes to look at its tables directly.
pub struct Db {
    pub store: Arc<dyn Store>,
    pub location: String,
    pub backend: Backend,
}

pub enum Backend {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres(TestPostgres),
}

/// `$body` with `$conn` a direct connection to `$db`'s database (not the store's), closed after.
macro_rules! direct {
    ($db:expr, $conn:ident => $body:expr) => {
        match &$db.backend {
            Backend::Sqlite { path, .. } => {
                let mut $conn = SqliteConnectOptions::new()
                    .filename(path)
                    .connect()
                    .await
                    .unwrap();
                let value = $body;
                $conn.close().await.unwrap();
                value
            }
            Backend::Postgres(db) => {
                let mut $conn = PgConnection::connect(db.url()).await.unwrap();
                let value = $body;
                $conn.close().await.unwrap();
                value
            }
        }
    };
}

impl Db {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        // A folder that does not exist yet: opening creates it.
        let path = dir.path().join("project/.shopfloor/shopfloor.db");
        let location = format!("sqlite://{}", path.display());
        let store = open(&location).await.expect("the SQLite store opens");
        Self {
            store,
            location,
            backend: Backend::Sqlite { path, _dir: dir },
        }
    }

    pub async fn postgres() -> Self {
        let db = TestPostgres::create().await;
        let location = db.url().to_owned();
        let store = open(&location).await.expect("the PostgreSQL store opens");
        Self {
            store,
            location,
            backend: Backend::Postgres(db),
        }
    }

    /// Another fresh database of the same backend, first set up by `setup` (raw SQL, e.g. the
    /// schema an older build left), then opened as a store.
    pub async fn sibling_set_up_by(&self, setup: &str) -> Db {
        match &self.backend {
            Backend::Sqlite { .. } => {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let path = dir.path().join("older.db");
                let mut conn = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .connect()
                    .await
                    .unwrap();
                sqlx::raw_sql(setup).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                let location = format!("sqlite://{}", path.display());
                let store = open(&location).await.expect("the SQLite store opens");
                Db {
                    store,
                    location,
                    backend: Backend::Sqlite { path, _dir: dir },
                }
            }
            Backend::Postgres(_) => {
                let db = TestPostgres::create().await;
                let mut conn = PgConnection::connect(db.url()).await.unwrap();
                sqlx::raw_sql(setup).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                let location = db.url().to_owned();
                let store = open(&location).await.expect("the PostgreSQL store opens");
                Db {
                    store,
                    location,
                    backend: Backend::Postgres(db),
                }
            }
        }
    }

    /// Text values from a query run directly against the database.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        direct!(self, conn => sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap())
    }

    /// Run a statement directly against the database (as an intruder or an operator would).
    #[allow(dead_code)] // Not every test binary tampers with tables.
    pub async fn execute(&self, sql: &str) {
        direct!(self, conn => {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        })
    }

    /// One integer from a query run directly against the database.
    pub async fn int(&self, sql: &str) -> i64 {
        direct!(self, conn => sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap())
    }
}

pub fn attempt(n: u32, outcome: AttemptOutcome) -> AttemptRecord {
    AttemptRecord {
        n,
        model: format!("model-{n}"),
        provider: "openai".into(),
        started_at_ms: 1_700_000_000_000 + i64::from(n),
        latency_ms: 800 + u64::from(n),
        prompt_tokens: 120,
        completion_tokens: 7,
        cost_usd: 0.000_123_4,
        outcome,
        error: (outcome != AttemptOutcome::Ok).then(|| format!("attempt {n}: HTTP 503")),
        error_kind: (outcome == AttemptOutcome::Error)
            .then_some(shopfloor_store::ErrorKind::Upstream),
        raw_output: (outcome != AttemptOutcome::Error).then(|| "billing".into()),
    }
}

/// A run with every field set; `batch` places it in a batch case.
pub fn run(id: &str, workflow: &str, created_at_ms: i64, batch: Option<(&str, u64)>) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: workflow.into(),
        version: "v-3f2a".into(),
        batch_id: batch.map(|(b, _)| b.into()),
        case_index: batch.map(|(_, c)| c),
        status: RunStatus::Ok,
        input: json!({"subject": "Refund ✓", "body": "Charged twice\n\"quoted\"", "n": [1, 2.5, null]}),
        prompt: json!([{"role": "system", "content": "You route."}, {"role": "user", "content": "…"}]),
        raw_output: Some("billing".into()),
        output: Some(json!({"label": "billing", "confidence": 0.93})),
        error: Some("first attempt timed out".into()),
        model: Some("gpt-mini".into()),
        prompt_tokens: 240,
        completion_tokens: 14,
        cost_usd: 0.000_246_8,
        latency_ms: 1_650,
        created_at_ms,
        attempts: vec![
            attempt(1, AttemptOutcome::Error),
            attempt(2, AttemptOutcome::Ok),
        ],
        caller: Some(Caller {
            key_id: "key-1".into(),
            user: Some("dana@acme.example".into()),
            team: Some("support".into()),
        }),
        sampled_for_review: true,
        confidence: Some(0.875),
        review: None,
        origin: Default::default(),
        experiment: None,
    }
}

pub fn batch(id: &str, status: BatchStatus) -> BatchRecord {
    BatchRecord {
        id: id.into(),
        workflow: "ticket-triage".into(),
        version: "v-3f2a".into(),
        source: "inputs/tickets.jsonl".into(),
        total_cases: 1_000,
        model_override: Some("local".into()),
        status,
        created_at_ms: 1_700_000_000_000,
        finished_at_ms: None,
        caller: Some(Caller {
            key_id: "key-2".into(),
            user: None,
            team: Some("ops".into()),
        }),
    }
}

/// A running eval with every field set; `created_at_ms` orders evals.
pub fn eval(id: &str, workflow: &str, created_at_ms: i64) -> EvalRecord {
    EvalRecord {
        id: id.into(),
        workflow: workflow.into(),
        version: "v-3f2a".into(),
        dataset: "datasets/ticket-triage.jsonl".into(),
        dataset_hash: "9b1c".repeat(16),
        model_override: Some("local".into()),
        status: EvalStatus::Running,
        total_cases: 10_000,
        summary: None,
        passed: None,
        created_at_ms,
        finished_at_ms: None,
        case_limit: None,
    }
}

/// A case result with every field set, on `line` of the dataset.
pub fn eval_case(eval_id: &str, case_id: &str, line: u64) -> EvalCaseRecord {
    EvalCaseRecord {
        eval_id: eval_id.into(),
        case_id: case_id.into(),
        line,
        run_id: format!("run-{eval_id}-{case_id}"),
        input_hash: format!("hash-{case_id}"),
        status: RunStatus::Ok,
        output: Some(serde_json::json!({"label": "billing", "why": "«charged twice»"})),
        raw_output: Some("billing\n".into()),
        expected: serde_json::json!("billing"),
        scores: [
            ("label_accuracy", Score::binary(true, None)),
            (
                "similarity",
                Score::rate(0.875, false, Some("below 0.9".into())),
            ),
        ]
        .map(|(name, score)| (name.to_string(), score))
        .into(),
        tags: vec!["refund".into(), "edge case ✓".into()],
        latency_ms: 640 + line,
        cost_usd: 0.000_022_5,
        prompt_tokens: 142,
        completion_tokens: 2,
        cached: false,
    }
}
