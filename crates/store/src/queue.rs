//! The persistent batch queue (`batch_cases`): cases claimed with a lease and removed in the
//! transaction that records their run. The SQL both databases share and row decoding; the
//! claim itself differs by dialect and lives in each backend.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{self, Columns};
use crate::Result;

/// A batch case claimed by one replica until its lease runs out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedCase {
    pub batch_id: String,
    pub workflow: String,
    /// 1-based position in the batch's input.
    pub case_index: u64,
    pub input: Value,
    pub model_override: Option<String>,
}

/// What a replica asks for when it claims cases: up to `limit` whose lease ran out before
/// `now_ms`, leased to `worker` until `lease_until_ms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub worker: &'a str,
    pub limit: u32,
    pub lease_until_ms: i64,
    pub now_ms: i64,
}

/// Queue one case, never leased: binds batch id, case index, input.
pub(crate) const INSERT_CASE: &str = "INSERT INTO batch_cases (batch_id, case_index, input, \
     lease_owner, lease_until_ms) VALUES ($1, $2, $3, NULL, 0)";
/// Extend a worker's leases: binds the new end, then the worker.
pub(crate) const EXTEND_LEASES: &str =
    "UPDATE batch_cases SET lease_until_ms = $1 WHERE lease_owner = $2";
/// A batch's number of cases.
pub(crate) const BATCH_TOTAL: &str = "SELECT total_cases FROM batches WHERE id = $1";
/// A batch's number of recorded runs.
pub(crate) const BATCH_RECORDED: &str = "SELECT COUNT(*) FROM runs WHERE batch_id = $1";
/// What a claim returns, from the queue `c` joined with its batch `b`.
pub(crate) const CLAIMED_COLUMNS: &str =
    "c.batch_id, b.workflow, c.case_index, c.input, b.model_override";

/// A claimed case from a row of [`CLAIMED_COLUMNS`].
pub(crate) fn claimed_from_row(row: &impl Columns) -> Result<ClaimedCase> {
    Ok(ClaimedCase {
        batch_id: row.text("batch_id")?,
        workflow: row.text("workflow")?,
        case_index: codec::unsigned(row, "batch_cases", "case_index")?,
        input: codec::json(row, "batch_cases", "input")?,
        model_override: row.opt_text("model_override")?,
    })
}
