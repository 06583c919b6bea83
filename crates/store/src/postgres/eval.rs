//! Eval runs, their cases and baselines in PostgreSQL. The `Store` impl in the parent delegates here.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::Postgres;

use super::PostgresStore;
use crate::codec::to_bigint;
use crate::eval_codec::{
    self, EvalKey, BASELINE, CACHED_CASE_WITHOUT_OVERRIDE, CACHED_CASE_WITH_OVERRIDE,
    EVAL_CASES_PAGE, EVAL_CASE_INSERT_COLUMNS, EVAL_COLUMNS, EVAL_EXISTS, EVAL_KEY, FINISH_EVAL,
    INSERT_EVAL, SET_BASELINE,
};
use crate::{EvalCaseRecord, EvalRecord, EvalStatus, Result};

/// Insert every case of the arrays in one statement, the same whatever their number, so that
/// it is prepared once per connection. Only a repeated case is skipped; a second case on a
/// recorded line is an error.
static INSERT_CASES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO eval_cases ({EVAL_CASE_INSERT_COLUMNS}) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
         $12::bigint[], $13::float8[], $14::bigint[], $15::bigint[], $16::boolean[], \
         $17::text[], $18::text[], $19::text[]) \
         ON CONFLICT (eval_id, case_id) DO NOTHING"
    )
});

pub(super) async fn create(store: &PostgresStore, eval: &EvalRecord) -> Result<()> {
    sqlx::query::<Postgres>(INSERT_EVAL)
        .bind(&eval.id)
        .bind(&eval.workflow)
        .bind(&eval.version)
        .bind(&eval.dataset)
        .bind(&eval.dataset_hash)
        .bind(&eval.model_override)
        .bind(eval.status.as_str())
        .bind(to_bigint("evals.total_cases", eval.total_cases)?)
        .bind(eval.summary.as_ref().map(crate::codec::json_text))
        .bind(eval.passed)
        .bind(eval.created_at_ms)
        .bind(eval.finished_at_ms)
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(super) async fn finish(
    store: &PostgresStore,
    id: &str,
    status: EvalStatus,
    summary: &serde_json::Value,
    passed: Option<bool>,
    at_ms: i64,
) -> Result<()> {
    let done = sqlx::query::<Postgres>(FINISH_EVAL)
        .bind(status.as_str())
        .bind(crate::codec::json_text(summary))
        .bind(passed)
        .bind(eval_codec::finished_at(status, at_ms))
        .bind(id)
        .execute(&store.pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(eval_codec::unknown_eval(id));
    }
    Ok(())
}

pub(super) async fn get(store: &PostgresStore, id: &str) -> Result<Option<EvalRecord>> {
    let sql = format!("SELECT {EVAL_COLUMNS} FROM evals WHERE id = $1");
    sqlx::query::<Postgres>(&sql)
        .bind(id)
        .fetch_optional(&store.pool)
        .await?
        .map(|row| eval_codec::eval_from_row(&row))
        .transpose()
}

pub(super) async fn list(
    store: &PostgresStore,
    workflow: Option<&str>,
    limit: u32,
) -> Result<Vec<EvalRecord>> {
    eval_codec::list_evals_query::<Postgres>(workflow, limit)
        .build()
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(eval_codec::eval_from_row)
        .collect()
}

pub(super) async fn insert_cases(store: &PostgresStore, cases: &[EvalCaseRecord]) -> Result<()> {
    if cases.is_empty() {
        return Ok(());
    }
    // An eval's key never changes once created, so it is read before the insert.
    let mut keys: HashMap<&str, EvalKey> = HashMap::new();
    for id in eval_codec::eval_ids(cases) {
        let row = sqlx::query::<Postgres>(EVAL_KEY)
            .bind(id)
            .fetch_optional(&store.pool)
            .await?
            .ok_or_else(|| eval_codec::unknown_eval(id))?;
        keys.insert(id, eval_codec::eval_key_from_row(&row)?);
    }
    let rows = eval_codec::case_rows(cases, &keys)?;
    // One array per column, in the order of the statement's `UNNEST`.
    macro_rules! column {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    // One statement, so one transaction: a flush is recorded whole or not at all.
    sqlx::query::<Postgres>(&INSERT_CASES)
        .bind(column!(|c| c.eval_id))
        .bind(column!(|c| c.case_id))
        .bind(column!(|c| c.line))
        .bind(column!(|c| c.run_id))
        .bind(column!(|c| c.input_hash))
        .bind(column!(|c| c.status))
        .bind(column!(|c| c.output.as_deref()))
        .bind(column!(|c| c.raw_output))
        .bind(column!(|c| c.expected.as_str()))
        .bind(column!(|c| c.scores.as_str()))
        .bind(column!(|c| c.tags.as_str()))
        .bind(column!(|c| c.latency_ms))
        .bind(column!(|c| c.cost_usd))
        .bind(column!(|c| c.prompt_tokens))
        .bind(column!(|c| c.completion_tokens))
        .bind(column!(|c| c.cached))
        .bind(column!(|c| c.workflow))
        .bind(column!(|c| c.version))
        .bind(column!(|c| c.model_override))
        .execute(&store.pool)
        .await?;
    Ok(())
}

pub(super) async fn cases(
    store: &PostgresStore,
    eval_id: &str,
    after_line: u64,
    limit: u32,
) -> Result<Vec<EvalCaseRecord>> {
    let Some(after_line) = eval_codec::after_line_bind(after_line) else {
        return Ok(Vec::new());
    };
    sqlx::query::<Postgres>(&EVAL_CASES_PAGE)
        .bind(eval_id)
        .bind(after_line)
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(eval_codec::eval_case_from_row)
        .collect()
}

pub(super) async fn cached_case(
    store: &PostgresStore,
    workflow: &str,
    version: &str,
    model_override: Option<&str>,
    input_hash: &str,
) -> Result<Option<EvalCaseRecord>> {
    let query = match model_override {
        Some(model) => sqlx::query::<Postgres>(&CACHED_CASE_WITH_OVERRIDE)
            .bind(workflow)
            .bind(version)
            .bind(model),
        None => sqlx::query::<Postgres>(&CACHED_CASE_WITHOUT_OVERRIDE)
            .bind(workflow)
            .bind(version),
    };
    query
        .bind(input_hash)
        .fetch_optional(&store.pool)
        .await?
        .map(|row| eval_codec::eval_case_from_row(&row))
        .transpose()
}

pub(super) async fn set_baseline(
    store: &PostgresStore,
    workflow: &str,
    eval_id: &str,
    at_ms: i64,
) -> Result<()> {
    let done = sqlx::query::<Postgres>(SET_BASELINE)
        .bind(workflow)
        .bind(eval_id)
        .bind(at_ms)
        .execute(&store.pool)
        .await?;
    if done.rows_affected() > 0 {
        return Ok(());
    }
    let exists = sqlx::query::<Postgres>(EVAL_EXISTS)
        .bind(eval_id)
        .fetch_optional(&store.pool)
        .await?
        .is_some();
    Err(eval_codec::baseline_refused(eval_id, exists))
}

pub(super) async fn baseline(store: &PostgresStore, workflow: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar::<Postgres, String>(BASELINE)
        .bind(workflow)
        .fetch_optional(&store.pool)
        .await?)
}
