//! The one conversion between records and table rows, shared by both backends.
//!
//! Writing: records become [`RunRow`] / [`AttemptRow`] (JSON serialised, integers checked to
//! fit `BIGINT`, enums as their `as_str` text). Reading: any row type that implements
//! [`Columns`] decodes into records, with stored enum text parsed back by `parse`.

use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Row, Type};

use crate::{
    AttemptOutcome, AttemptRecord, BatchRecord, BatchStatus, Result, RunFilter, RunRecord,
    RunStatus, RunSummary, StoreError,
};

/// Columns of `runs`, in [`RunRow`] order.
pub(crate) const RUN_COLUMNS: &str = "id, workflow, version, batch_id, case_index, status, \
     input, prompt, raw_output, output, error, model, prompt_tokens, completion_tokens, \
     cost_usd, latency_ms, created_at_ms, key_id, caller_user, team, sampled_for_review, \
     confidence, origin, experiment_id, arm";
/// Number of columns in [`RUN_COLUMNS`].
pub(crate) const RUN_COLUMN_COUNT: usize = 25;
/// Columns of `attempts`, in [`AttemptRow`] order.
pub(crate) const ATTEMPT_COLUMNS: &str = "run_id, n, model, provider, started_at_ms, \
     latency_ms, prompt_tokens, completion_tokens, cost_usd, outcome, error, raw_output, \
     error_kind";
/// Number of columns in [`ATTEMPT_COLUMNS`].
pub(crate) const ATTEMPT_COLUMN_COUNT: usize = 13;
/// Columns of `batches`.
pub(crate) const BATCH_COLUMNS: &str = "id, workflow, version, source, total_cases, \
     model_override, status, created_at_ms, finished_at_ms, key_id, caller_user, team";
/// Columns a [`RunSummary`] is read from.
const SUMMARY_COLUMNS: &str =
    "id, workflow, version, batch_id, status, model, latency_ms, cost_usd, created_at_ms";
/// Runs listed when the filter sets no limit.
const DEFAULT_LIST_LIMIT: u32 = 50;

/// A run as its `runs` row: borrowed text, serialised JSON, integers that fit `BIGINT`.
pub(crate) struct RunRow<'a> {
    pub id: &'a str,
    pub workflow: &'a str,
    pub version: &'a str,
    pub batch_id: Option<&'a str>,
    pub case_index: Option<i64>,
    pub status: &'static str,
    pub input: String,
    pub prompt: String,
    pub raw_output: Option<&'a str>,
    pub output: Option<String>,
    pub error: Option<&'a str>,
    pub model: Option<&'a str>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub created_at_ms: i64,
    pub key_id: Option<&'a str>,
    pub caller_user: Option<&'a str>,
    pub team: Option<&'a str>,
    pub sampled_for_review: bool,
    pub confidence: Option<f64>,
    pub origin: &'static str,
    pub experiment_id: Option<&'a str>,
    pub arm: Option<&'a str>,
}

impl<'a> RunRow<'a> {
    /// The row for `run` (its attempts are converted separately).
    pub fn new(run: &'a RunRecord) -> Result<Self> {
        Ok(Self {
            id: &run.id,
            workflow: &run.workflow,
            version: &run.version,
            batch_id: run.batch_id.as_deref(),
            case_index: run
                .case_index
                .map(|c| to_bigint("runs.case_index", c))
                .transpose()?,
            status: run.status.as_str(),
            input: json_text(&run.input),
            prompt: json_text(&run.prompt),
            raw_output: run.raw_output.as_deref(),
            output: run.output.as_ref().map(json_text),
            error: run.error.as_deref(),
            model: run.model.as_deref(),
            prompt_tokens: to_bigint("runs.prompt_tokens", run.prompt_tokens)?,
            completion_tokens: to_bigint("runs.completion_tokens", run.completion_tokens)?,
            cost_usd: run.cost_usd,
            latency_ms: to_bigint("runs.latency_ms", run.latency_ms)?,
            created_at_ms: run.created_at_ms,
            key_id: run.caller.as_ref().map(|c| c.key_id.as_str()),
            caller_user: run.caller.as_ref().and_then(|c| c.user.as_deref()),
            team: run.caller.as_ref().and_then(|c| c.team.as_deref()),
            sampled_for_review: run.sampled_for_review,
            confidence: run.confidence,
            origin: run.origin.as_str(),
            experiment_id: run.experiment.as_ref().map(|e| e.id.as_str()),
            arm: run.experiment.as_ref().map(|e| e.arm.as_str()),
        })
    }
}

/// An attempt as its `attempts` row.
pub(crate) struct AttemptRow<'a> {
    pub run_id: &'a str,
    pub n: i64,
    pub model: &'a str,
    pub provider: &'a str,
    pub started_at_ms: i64,
    pub latency_ms: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_usd: f64,
    pub outcome: &'static str,
    pub error: Option<&'a str>,
    pub raw_output: Option<&'a str>,
    pub error_kind: Option<&'static str>,
}

impl<'a> AttemptRow<'a> {
    /// The row for `attempt` of the run `run_id`.
    pub fn new(run_id: &'a str, attempt: &'a AttemptRecord) -> Result<Self> {
        Ok(Self {
            run_id,
            n: i64::from(attempt.n),
            model: &attempt.model,
            provider: &attempt.provider,
            started_at_ms: attempt.started_at_ms,
            latency_ms: to_bigint("attempts.latency_ms", attempt.latency_ms)?,
            prompt_tokens: to_bigint("attempts.prompt_tokens", attempt.prompt_tokens)?,
            completion_tokens: to_bigint("attempts.completion_tokens", attempt.completion_tokens)?,
            cost_usd: attempt.cost_usd,
            outcome: attempt.outcome.as_str(),
            error: attempt.error.as_deref(),
            raw_output: attempt.raw_output.as_deref(),
            error_kind: attempt.error_kind.map(crate::ErrorKind::as_str),
        })
    }
}

/// The rows for `runs` and for all their attempts.
pub(crate) fn rows(runs: &[RunRecord]) -> Result<(Vec<RunRow<'_>>, Vec<AttemptRow<'_>>)> {
    let run_rows = runs.iter().map(RunRow::new).collect::<Result<Vec<_>>>()?;
    let attempt_rows = runs
        .iter()
        .flat_map(|run| {
            run.attempts
                .iter()
                .map(move |a| AttemptRow::new(&run.id, a))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((run_rows, attempt_rows))
}

pub(crate) fn json_text(value: &Value) -> String {
    // Serialising a `Value` cannot fail: its map keys are strings and it holds no
    // non-finite numbers.
    value.to_string()
}

/// `value` as a `BIGINT`, or an error naming `field` when it does not fit.
pub(crate) fn to_bigint(field: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { field, value })
}

/// Typed column access, implemented by each backend's row type, so that decoding is written once.
pub(crate) trait Columns {
    fn text(&self, column: &'static str) -> Result<String>;
    fn opt_text(&self, column: &'static str) -> Result<Option<String>>;
    fn int(&self, column: &'static str) -> Result<i64>;
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>>;
    fn float(&self, column: &'static str) -> Result<f64>;
    fn opt_float(&self, column: &'static str) -> Result<Option<f64>>;
    fn boolean(&self, column: &'static str) -> Result<bool>;
    fn opt_boolean(&self, column: &'static str) -> Result<Option<bool>>;
}

macro_rules! impl_columns {
    ($($row:ty),*) => {$(
        impl Columns for $row {
            fn text(&self, column: &'static str) -> Result<String> {
                Ok(self.try_get(column)?)
            }
            fn opt_text(&self, column: &'static str) -> Result<Option<String>> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &'static str) -> Result<i64> {
                Ok(self.try_get(column)?)
            }
            fn opt_int(&self, column: &'static str) -> Result<Option<i64>> {
                Ok(self.try_get(column)?)
            }
            fn float(&self, column: &'static str) -> Result<f64> {
                Ok(self.try_get(column)?)
            }
            fn opt_float(&self, column: &'static str) -> Result<Option<f64>> {
                Ok(self.try_get(column)?)
            }
            fn boolean(&self, column: &'static str) -> Result<bool> {
                Ok(self.try_get(column)?)
            }
            fn opt_boolean(&self, column: &'static str) -> Result<Option<bool>> {
                Ok(self.try_get(column)?)
            }
        }
    )*};
}

impl_columns!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

/// A column that holds a non-negative count.
pub(crate) fn unsigned(
    row: &impl Columns,
    table: &'static str,
    column: &'static str,
) -> Result<u64> {
    non_negative(table, column, row.int(column)?)
}

/// `value`, read from `table.column`, as the count or index it must be.
pub(crate) fn non_negative(table: &'static str, column: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        table,
        column,
        message: format!("{value} is negative"),
    })
}

/// A JSON column read as `T` (a `Value`, or a typed record such as an eval case's scores).
pub(crate) fn json<T: serde::de::DeserializeOwned>(
    row: &impl Columns,
    table: &'static str,
    column: &'static str,
) -> Result<T> {
    parse_json(table, column, &row.text(column)?)
}

pub(crate) fn opt_json(
    row: &impl Columns,
    table: &'static str,
    column: &'static str,
) -> Result<Option<Value>> {
    row.opt_text(column)?
        .map(|text| parse_json(table, column, &text))
        .transpose()
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    column: &'static str,
    text: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        column,
        message: format!("not valid JSON of its kind: {e}"),
    })
}

/// A column that holds an enum's `as_str` text, parsed back with its `parse`.
pub(crate) fn enumeration<T>(
    row: &impl Columns,
    table: &'static str,
    column: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<T> {
    let text = row.text(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt {
        table,
        column,
        message: format!("unknown value {text:?}"),
    })
}

/// A run from a row of [`RUN_COLUMNS`], with its already decoded attempts.
pub(crate) fn run_from_row(
    row: &impl Columns,
    attempts: Vec<AttemptRecord>,
    review: Option<crate::ReviewTicket>,
) -> Result<RunRecord> {
    const T: &str = "runs";
    Ok(RunRecord {
        id: row.text("id")?,
        workflow: row.text("workflow")?,
        version: row.text("version")?,
        batch_id: row.opt_text("batch_id")?,
        case_index: row.opt_int("case_index")?.map(case_index).transpose()?,
        status: enumeration(row, T, "status", RunStatus::parse)?,
        input: json(row, T, "input")?,
        prompt: json(row, T, "prompt")?,
        raw_output: row.opt_text("raw_output")?,
        output: opt_json(row, T, "output")?,
        error: row.opt_text("error")?,
        model: row.opt_text("model")?,
        prompt_tokens: unsigned(row, T, "prompt_tokens")?,
        completion_tokens: unsigned(row, T, "completion_tokens")?,
        cost_usd: row.float("cost_usd")?,
        latency_ms: unsigned(row, T, "latency_ms")?,
        created_at_ms: row.int("created_at_ms")?,
        attempts,
        caller: caller_from_row(row)?,
        sampled_for_review: row.boolean("sampled_for_review")?,
        confidence: row.opt_float("confidence")?,
        review,
        origin: enumeration(row, T, "origin", crate::RunOrigin::parse)?,
        experiment: match (row.opt_text("experiment_id")?, row.opt_text("arm")?) {
            (Some(id), Some(arm)) => Some(crate::ExperimentArm { id, arm }),
            _ => None,
        },
    })
}

/// An attempt from a row of [`ATTEMPT_COLUMNS`].
pub(crate) fn attempt_from_row(row: &impl Columns) -> Result<AttemptRecord> {
    const T: &str = "attempts";
    let n = row.int("n")?;
    Ok(AttemptRecord {
        n: u32::try_from(n).map_err(|_| StoreError::Corrupt {
            table: T,
            column: "n",
            message: format!("{n} is not an attempt number"),
        })?,
        model: row.text("model")?,
        provider: row.text("provider")?,
        started_at_ms: row.int("started_at_ms")?,
        latency_ms: unsigned(row, T, "latency_ms")?,
        prompt_tokens: unsigned(row, T, "prompt_tokens")?,
        completion_tokens: unsigned(row, T, "completion_tokens")?,
        cost_usd: row.float("cost_usd")?,
        outcome: enumeration(row, T, "outcome", AttemptOutcome::parse)?,
        error: row.opt_text("error")?,
        error_kind: row
            .opt_text("error_kind")?
            .map(|text| {
                crate::ErrorKind::parse(&text).ok_or_else(|| StoreError::Corrupt {
                    table: T,
                    column: "error_kind",
                    message: format!("unknown value {text:?}"),
                })
            })
            .transpose()?,
        raw_output: row.opt_text("raw_output")?,
    })
}

/// A run summary from a row of the query [`list_runs_query`] builds.
pub(crate) fn summary_from_row(row: &impl Columns) -> Result<RunSummary> {
    const T: &str = "runs";
    Ok(RunSummary {
        id: row.text("id")?,
        workflow: row.text("workflow")?,
        version: row.text("version")?,
        batch_id: row.opt_text("batch_id")?,
        status: enumeration(row, T, "status", RunStatus::parse)?,
        model: row.opt_text("model")?,
        latency_ms: unsigned(row, T, "latency_ms")?,
        cost_usd: row.float("cost_usd")?,
        created_at_ms: row.int("created_at_ms")?,
    })
}

/// A batch from a row of [`BATCH_COLUMNS`].
pub(crate) fn batch_from_row(row: &impl Columns) -> Result<BatchRecord> {
    const T: &str = "batches";
    Ok(BatchRecord {
        id: row.text("id")?,
        workflow: row.text("workflow")?,
        version: row.text("version")?,
        source: row.text("source")?,
        total_cases: unsigned(row, T, "total_cases")?,
        model_override: row.opt_text("model_override")?,
        status: enumeration(row, T, "status", BatchStatus::parse)?,
        created_at_ms: row.int("created_at_ms")?,
        finished_at_ms: row.opt_int("finished_at_ms")?,
        caller: caller_from_row(row)?,
    })
}

/// The caller columns (`key_id`, `caller_user`, `team`) of a run or batch row.
fn caller_from_row(row: &impl Columns) -> Result<Option<crate::Caller>> {
    let Some(key_id) = row.opt_text("key_id")? else {
        return Ok(None);
    };
    Ok(Some(crate::Caller {
        key_id,
        user: row.opt_text("caller_user")?,
        team: row.opt_text("team")?,
    }))
}

/// A case index read back from `runs.case_index`.
pub(crate) fn case_index(value: i64) -> Result<u64> {
    non_negative("runs", "case_index", value)
}

/// The listing query for `filter`, newest first. Only the filters that are set become
/// conditions, so each combination can use its index.
pub(crate) fn list_runs_query<'a, DB>(filter: &'a RunFilter) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!("SELECT {SUMMARY_COLUMNS} FROM runs"));
    let mut keyword = " WHERE ";
    let conditions = [
        ("workflow", filter.workflow.as_deref()),
        ("batch_id", filter.batch_id.as_deref()),
        ("status", filter.status.map(RunStatus::as_str)),
        ("model", filter.model.as_deref()),
        ("version", filter.version.as_deref()),
        ("caller_user", filter.caller.as_deref()),
    ];
    for (column, value) in conditions {
        if let Some(value) = value {
            query
                .push(keyword)
                .push(column)
                .push(" = ")
                .push_bind(value);
            keyword = " AND ";
        }
    }
    let times = [(" >= ", filter.since_ms), (" < ", filter.until_ms)];
    for (op, value) in times {
        if let Some(value) = value {
            query
                .push(keyword)
                .push("created_at_ms")
                .push(op)
                .push_bind(value);
            keyword = " AND ";
        }
    }
    if let Some((at_ms, id)) = &filter.before {
        // Row-value comparison is in both dialects; spelled out, it uses the same index.
        query
            .push(keyword)
            .push("(created_at_ms < ")
            .push_bind(*at_ms)
            .push(" OR (created_at_ms = ")
            .push_bind(*at_ms)
            .push(" AND id < ")
            .push_bind(id.as_str())
            .push("))");
    }
    query
        .push(" ORDER BY created_at_ms DESC, id DESC LIMIT ")
        .push_bind(i64::from(filter.limit.unwrap_or(DEFAULT_LIST_LIMIT)));
    query
}

/// The rows of `$sql` with the text parameters `$binds` (`$1`, `$2`, … in order), each read
/// by `$map`: the list queries whose filters decide which parameters there are.
macro_rules! fetch_with_text_binds {
    ($db:ty, $pool:expr, $sql:expr, $binds:expr, $map:expr) => {{
        let mut query = sqlx::query::<$db>($sql);
        for bind in $binds {
            query = query.bind(bind);
        }
        query.fetch_all($pool).await?.iter().map($map).collect()
    }};
}

pub(crate) use fetch_with_text_binds;
