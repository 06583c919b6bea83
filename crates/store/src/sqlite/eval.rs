//! Eval runs, their cases and baselines in SQLite. The `Store` impl in the parent delegates here.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, MAX_BINDS};
use crate::codec::to_bigint;
use crate::eval_codec::{
    self, EvalKey, BASELINE, CACHED_CASE_WITHOUT_OVERRIDE, CACHED_CASE_WITH_OVERRIDE,
    EVAL_CASES_PAGE, EVAL_CASE_INSERT_COLUMNS, EVAL_CASE_INSERT_COLUMN_COUNT, EVAL_COLUMNS,
    EVAL_EXISTS, EVAL_KEY, FINISH_EVAL, INSERT_EVAL, SET_BASELINE,
};
use crate::{EvalCaseRecord, EvalRecord, EvalStatus, Result};

/// Cases per multi-row INSERT: one engine flush. Full-size statements are prepared once and
/// cached; a shorter remainder is prepared per use, as for runs.
const CASES_PER_INSERT: usize = 256;
const _: () = assert!(CASES_PER_INSERT * EVAL_CASE_INSERT_COLUMN_COUNT <= MAX_BINDS);

pub(super) async fn create(store: &SqliteStore, eval: &EvalRecord) -> Result<()> {
    sqlx::query::<Sqlite>(INSERT_EVAL)
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
        .execute(&store.writer)
        .await?;
    Ok(())
}

pub(super) async fn finish(
    store: &SqliteStore,
    id: &str,
    status: EvalStatus,
    summary: &serde_json::Value,
    passed: Option<bool>,
    at_ms: i64,
) -> Result<()> {
    let done = sqlx::query::<Sqlite>(FINISH_EVAL)
        .bind(status.as_str())
        .bind(crate::codec::json_text(summary))
        .bind(passed)
        .bind(eval_codec::finished_at(status, at_ms))
        .bind(id)
        .execute(&store.writer)
        .await?;
    if done.rows_affected() == 0 {
        return Err(eval_codec::unknown_eval(id));
    }
    Ok(())
}

pub(super) async fn get(store: &SqliteStore, id: &str) -> Result<Option<EvalRecord>> {
    let sql = format!("SELECT {EVAL_COLUMNS} FROM evals WHERE id = $1");
    sqlx::query::<Sqlite>(&sql)
        .bind(id)
        .fetch_optional(&store.readers)
        .await?
        .map(|row| eval_codec::eval_from_row(&row))
        .transpose()
}

pub(super) async fn list(
    store: &SqliteStore,
    workflow: Option<&str>,
    limit: u32,
) -> Result<Vec<EvalRecord>> {
    eval_codec::list_evals_query::<Sqlite>(workflow, limit)
        .build()
        .fetch_all(&store.readers)
        .await?
        .iter()
        .map(eval_codec::eval_from_row)
        .collect()
}

pub(super) async fn insert_cases(store: &SqliteStore, cases: &[EvalCaseRecord]) -> Result<()> {
    if cases.is_empty() {
        return Ok(());
    }
    // An eval's key never changes once created, so it is read before taking the write lock.
    let mut keys: HashMap<&str, EvalKey> = HashMap::new();
    for id in eval_codec::eval_ids(cases) {
        let row = sqlx::query::<Sqlite>(EVAL_KEY)
            .bind(id)
            .fetch_optional(&store.readers)
            .await?
            .ok_or_else(|| eval_codec::unknown_eval(id))?;
        keys.insert(id, eval_codec::eval_key_from_row(&row)?);
    }
    let rows = eval_codec::case_rows(cases, &keys)?;
    let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in rows.chunks(CASES_PER_INSERT) {
        let mut query = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO eval_cases ({EVAL_CASE_INSERT_COLUMNS}) "
        ));
        query.push_values(chunk, |mut row, c| {
            row.push_bind(c.eval_id)
                .push_bind(c.case_id)
                .push_bind(c.line)
                .push_bind(c.run_id)
                .push_bind(c.input_hash)
                .push_bind(c.status)
                .push_bind(c.output.as_deref())
                .push_bind(c.raw_output)
                .push_bind(c.expected.as_str())
                .push_bind(c.scores.as_str())
                .push_bind(c.tags.as_str())
                .push_bind(c.latency_ms)
                .push_bind(c.cost_usd)
                .push_bind(c.prompt_tokens)
                .push_bind(c.completion_tokens)
                .push_bind(c.cached)
                .push_bind(c.workflow)
                .push_bind(c.version)
                .push_bind(c.model_override);
        });
        // Only a repeated case is skipped; a second case on a recorded line is an error.
        query.push(" ON CONFLICT (eval_id, case_id) DO NOTHING");
        query
            .build()
            .persistent(chunk.len() == CASES_PER_INSERT)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn cases(
    store: &SqliteStore,
    eval_id: &str,
    after_line: u64,
    limit: u32,
) -> Result<Vec<EvalCaseRecord>> {
    let Some(after_line) = eval_codec::after_line_bind(after_line) else {
        return Ok(Vec::new());
    };
    sqlx::query::<Sqlite>(&EVAL_CASES_PAGE)
        .bind(eval_id)
        .bind(after_line)
        .bind(i64::from(limit))
        .fetch_all(&store.readers)
        .await?
        .iter()
        .map(eval_codec::eval_case_from_row)
        .collect()
}

pub(super) async fn cached_case(
    store: &SqliteStore,
    workflow: &str,
    version: &str,
    model_override: Option<&str>,
    input_hash: &str,
) -> Result<Option<EvalCaseRecord>> {
    let query = match model_override {
        Some(model) => sqlx::query::<Sqlite>(&CACHED_CASE_WITH_OVERRIDE)
            .bind(workflow)
            .bind(version)
            .bind(model),
        None => sqlx::query::<Sqlite>(&CACHED_CASE_WITHOUT_OVERRIDE)
            .bind(workflow)
            .bind(version),
    };
    query
        .bind(input_hash)
        .fetch_optional(&store.readers)
        .await?
        .map(|row| eval_codec::eval_case_from_row(&row))
        .transpose()
}

pub(super) async fn set_baseline(
    store: &SqliteStore,
    workflow: &str,
    eval_id: &str,
    at_ms: i64,
) -> Result<()> {
    let done = sqlx::query::<Sqlite>(SET_BASELINE)
        .bind(workflow)
        .bind(eval_id)
        .bind(at_ms)
        .execute(&store.writer)
        .await?;
    if done.rows_affected() > 0 {
        return Ok(());
    }
    let exists = sqlx::query::<Sqlite>(EVAL_EXISTS)
        .bind(eval_id)
        .fetch_optional(&store.writer)
        .await?
        .is_some();
    Err(eval_codec::baseline_refused(eval_id, exists))
}

pub(super) async fn baseline(store: &SqliteStore, workflow: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar::<Sqlite, String>(BASELINE)
        .bind(workflow)
        .fetch_optional(&store.readers)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache lookup must probe its partial index, not scan every case: SQLite uses a
    /// partial index only when the query repeats the index's `WHERE`.
    #[tokio::test]
    async fn cache_lookup_uses_its_index() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        for sql in [&*CACHED_CASE_WITH_OVERRIDE, &*CACHED_CASE_WITHOUT_OVERRIDE] {
            let plan = sqlx::query::<Sqlite>(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&store.readers)
                .await
                .unwrap_or_else(|e| panic!("{e}: {sql}"))
                .iter()
                .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                plan.contains("USING INDEX eval_cases_cache"),
                "{plan}\n{sql}"
            );
        }
    }
}
