//! The one conversion between eval records and their rows, and the eval SQL both backends share.
//!
//! A case row also carries its eval's workflow, version and model override (copied when it is
//! recorded): the eval cache looks cases up by those, and an index on one table answers that.

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::codec::{enumeration, json, json_text, opt_json, to_bigint, unsigned, Columns};
use crate::{EvalCaseRecord, EvalRecord, EvalStatus, Result, RunStatus, StoreError};

/// Columns of `evals`, in the order [`INSERT_EVAL`] binds them.
pub(crate) const EVAL_COLUMNS: &str = "id, workflow, version, dataset, dataset_hash, \
     model_override, status, total_cases, summary, passed, created_at_ms, finished_at_ms, \
     case_limit";

/// Columns of `eval_cases` that make up an [`EvalCaseRecord`], in [`EvalCaseRow`] order.
macro_rules! case_columns {
    () => {
        "eval_id, case_id, line, run_id, input_hash, status, output, raw_output, expected, \
         scores, tags, latency_ms, cost_usd, prompt_tokens, completion_tokens, cached"
    };
}
/// Columns of `eval_cases` that are read back.
pub(crate) const EVAL_CASE_COLUMNS: &str = case_columns!();
/// Columns of `eval_cases` that are written: the record's, then those copied from its eval.
pub(crate) const EVAL_CASE_INSERT_COLUMNS: &str =
    concat!(case_columns!(), ", workflow, version, model_override");
/// Number of columns in [`EVAL_CASE_INSERT_COLUMNS`].
pub(crate) const EVAL_CASE_INSERT_COLUMN_COUNT: usize = 19;

/// Insert one eval.
pub(crate) const INSERT_EVAL: &str = "INSERT INTO evals (id, workflow, version, dataset, \
     dataset_hash, model_override, status, total_cases, summary, passed, created_at_ms, \
     finished_at_ms, case_limit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
     $13)";

/// End an eval: status, summary, verdict, finish time; bound in that order, then the id.
pub(crate) const FINISH_EVAL: &str = "UPDATE evals SET status = $1, summary = $2, passed = $3, \
     finished_at_ms = $4 WHERE id = $5";

/// The copied columns of the evals whose cases are being recorded.
pub(crate) const EVAL_KEY: &str =
    "SELECT workflow, version, model_override FROM evals WHERE id = $1";

/// Make an eval the baseline of its workflow. Writes nothing when the eval does not exist or
/// belongs to another workflow, so that a baseline always names an eval of its own workflow.
/// (`WHERE` also settles SQLite's parse of `INSERT … SELECT … ON CONFLICT`.)
pub(crate) const SET_BASELINE: &str = "INSERT INTO baselines (workflow, eval_id, set_at_ms) \
     SELECT workflow, id, $3 FROM evals WHERE id = $2 AND workflow = $1 \
     ON CONFLICT (workflow) DO UPDATE SET eval_id = excluded.eval_id, \
     set_at_ms = excluded.set_at_ms";

/// Whether an eval exists, to say why a baseline was refused.
pub(crate) const EVAL_EXISTS: &str = "SELECT id FROM evals WHERE id = $1";

/// The baseline eval of a workflow.
pub(crate) const BASELINE: &str = "SELECT eval_id FROM baselines WHERE workflow = $1";

/// One page of an eval's cases in line order.
pub(crate) static EVAL_CASES_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVAL_CASE_COLUMNS} FROM eval_cases WHERE eval_id = $1 AND line > $2 \
         ORDER BY line LIMIT $3"
    )
});

/// The cache lookup: binds workflow, version, model override, input hash.
pub(crate) static CACHED_CASE_WITH_OVERRIDE: LazyLock<String> =
    LazyLock::new(|| cached_case_sql("c.model_override = $3 AND c.input_hash = $4"));
/// The cache lookup for evals without a model override: binds workflow, version, input hash.
/// `IS NULL` rather than a null-safe comparison with a bind, which PostgreSQL's index cannot serve.
pub(crate) static CACHED_CASE_WITHOUT_OVERRIDE: LazyLock<String> =
    LazyLock::new(|| cached_case_sql("c.model_override IS NULL AND c.input_hash = $3"));

/// `NOT c.cached` is written as in the partial index's `WHERE`, which SQLite must find in the
/// query to use that index. Failed cases are never served: a provider outage during one eval
/// must not replay as failures in the next.
fn cached_case_sql(override_and_hash: &str) -> String {
    let columns = EVAL_CASE_COLUMNS
        .split(", ")
        .map(|column| format!("c.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {columns} FROM eval_cases c JOIN evals e ON e.id = c.eval_id \
         WHERE c.workflow = $1 AND c.version = $2 AND {override_and_hash} AND NOT c.cached \
         AND c.status <> '{failed}' AND e.status IN ('{done}', '{running}') \
         ORDER BY e.created_at_ms DESC, e.id DESC, c.line LIMIT 1",
        done = EvalStatus::Done.as_str(),
        running = EvalStatus::Running.as_str(),
        failed = crate::RunStatus::Failed.as_str(),
    )
}

/// What a case row copies from its eval.
#[derive(Debug, Clone)]
pub(crate) struct EvalKey {
    pub workflow: String,
    pub version: String,
    pub model_override: Option<String>,
}

/// An eval's key from a row of [`EVAL_KEY`].
pub(crate) fn eval_key_from_row(row: &impl Columns) -> Result<EvalKey> {
    Ok(EvalKey {
        workflow: row.text("workflow")?,
        version: row.text("version")?,
        model_override: row.opt_text("model_override")?,
    })
}

/// The distinct eval ids of `cases`, in first-seen order.
pub(crate) fn eval_ids(cases: &[EvalCaseRecord]) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    for case in cases {
        if !ids.contains(&case.eval_id.as_str()) {
            ids.push(&case.eval_id);
        }
    }
    ids
}

/// The error for cases of an eval that was never created.
pub(crate) fn unknown_eval(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "eval",
        id: id.to_owned(),
    }
}

/// A case as its `eval_cases` row, in [`EVAL_CASE_INSERT_COLUMNS`] order.
pub(crate) struct EvalCaseRow<'a> {
    pub eval_id: &'a str,
    pub case_id: &'a str,
    pub line: i64,
    pub run_id: &'a str,
    pub input_hash: &'a str,
    pub status: &'static str,
    pub output: Option<String>,
    pub raw_output: Option<&'a str>,
    pub expected: String,
    pub scores: String,
    pub tags: String,
    pub latency_ms: i64,
    pub cost_usd: f64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached: bool,
    pub workflow: &'a str,
    pub version: &'a str,
    pub model_override: Option<&'a str>,
}

/// The rows for `cases`, each with the key of its eval from `keys` (which must hold them all).
pub(crate) fn case_rows<'a>(
    cases: &'a [EvalCaseRecord],
    keys: &'a HashMap<&'a str, EvalKey>,
) -> Result<Vec<EvalCaseRow<'a>>> {
    cases
        .iter()
        .map(|case| {
            let key = keys
                .get(case.eval_id.as_str())
                .ok_or_else(|| unknown_eval(&case.eval_id))?;
            Ok(EvalCaseRow {
                eval_id: &case.eval_id,
                case_id: &case.case_id,
                line: to_bigint("eval_cases.line", case.line)?,
                run_id: &case.run_id,
                input_hash: &case.input_hash,
                status: case.status.as_str(),
                output: case.output.as_ref().map(json_text),
                raw_output: case.raw_output.as_deref(),
                expected: json_text(&case.expected),
                scores: typed_json_text(&case.scores),
                tags: typed_json_text(&case.tags),
                latency_ms: to_bigint("eval_cases.latency_ms", case.latency_ms)?,
                cost_usd: case.cost_usd,
                prompt_tokens: to_bigint("eval_cases.prompt_tokens", case.prompt_tokens)?,
                completion_tokens: to_bigint(
                    "eval_cases.completion_tokens",
                    case.completion_tokens,
                )?,
                cached: case.cached,
                workflow: &key.workflow,
                version: &key.version,
                model_override: key.model_override.as_deref(),
            })
        })
        .collect()
}

/// A typed value as the JSON text its column keeps.
fn typed_json_text(value: &impl serde::Serialize) -> String {
    // Lists of strings and maps of scores keyed by name always serialise (serde_json writes a
    // non-finite figure as null), so the fallback is never taken.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// `after_line` as a bind, or `None` when it is past every line the database can hold.
pub(crate) fn after_line_bind(after_line: u64) -> Option<i64> {
    i64::try_from(after_line).ok()
}

/// The finish time stored for `status`: none while it still runs (a resumed eval).
pub(crate) fn finished_at(status: EvalStatus, at_ms: i64) -> Option<i64> {
    (status != EvalStatus::Running).then_some(at_ms)
}

/// An eval from a row of [`EVAL_COLUMNS`].
pub(crate) fn eval_from_row(row: &impl Columns) -> Result<EvalRecord> {
    const T: &str = "evals";
    Ok(EvalRecord {
        id: row.text("id")?,
        workflow: row.text("workflow")?,
        version: row.text("version")?,
        dataset: row.text("dataset")?,
        dataset_hash: row.text("dataset_hash")?,
        model_override: row.opt_text("model_override")?,
        status: enumeration(row, T, "status", EvalStatus::parse)?,
        total_cases: unsigned(row, T, "total_cases")?,
        summary: opt_json(row, T, "summary")?,
        passed: row.opt_boolean("passed")?,
        created_at_ms: row.int("created_at_ms")?,
        finished_at_ms: row.opt_int("finished_at_ms")?,
        case_limit: row
            .opt_int("case_limit")?
            .map(|n| {
                u64::try_from(n).map_err(|_| StoreError::Corrupt {
                    table: T,
                    column: "case_limit",
                    message: format!("negative: {n}"),
                })
            })
            .transpose()?,
    })
}

/// A case from a row of [`EVAL_CASE_COLUMNS`].
pub(crate) fn eval_case_from_row(row: &impl Columns) -> Result<EvalCaseRecord> {
    const T: &str = "eval_cases";
    Ok(EvalCaseRecord {
        eval_id: row.text("eval_id")?,
        case_id: row.text("case_id")?,
        line: unsigned(row, T, "line")?,
        run_id: row.text("run_id")?,
        input_hash: row.text("input_hash")?,
        status: enumeration(row, T, "status", RunStatus::parse)?,
        output: opt_json(row, T, "output")?,
        raw_output: row.opt_text("raw_output")?,
        expected: json(row, T, "expected")?,
        scores: json(row, T, "scores")?,
        tags: json(row, T, "tags")?,
        latency_ms: unsigned(row, T, "latency_ms")?,
        cost_usd: row.float("cost_usd")?,
        prompt_tokens: unsigned(row, T, "prompt_tokens")?,
        completion_tokens: unsigned(row, T, "completion_tokens")?,
        cached: row.boolean("cached")?,
    })
}

/// Why `eval_id` cannot be the baseline of a workflow: it does not exist, or (`exists`) it
/// belongs to another workflow. Both are `NotFound`; the kind tells them apart.
pub(crate) fn baseline_refused(eval_id: &str, exists: bool) -> StoreError {
    StoreError::NotFound {
        kind: if exists {
            "eval of this workflow"
        } else {
            "eval"
        },
        id: eval_id.to_owned(),
    }
}

/// The listing query for evals, newest first, of one workflow or all.
pub(crate) fn list_evals_query<'a, DB>(
    workflow: Option<&'a str>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("SELECT {EVAL_COLUMNS} FROM evals"));
    if let Some(workflow) = workflow {
        query.push(" WHERE workflow = ").push_bind(workflow);
    }
    query
        .push(" ORDER BY created_at_ms DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit));
    query
}
