//! API keys (only a SHA-256 of each is kept) and the caller of a run: the records, their SQL
//! and their row decoding.

use serde::{Deserialize, Serialize};
use shopfloor_core::access::Role;
use shopfloor_core::limits::{Budget, BudgetPeriod, KeyLimits};

use crate::codec::Columns;
use crate::{Result, StoreError};

/// An API key as stored: never the key, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    /// Who or what holds the key (a person, a service); unique among live keys.
    pub name: String,
    pub role: Role,
    pub team: Option<String>,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// The key's first characters, to recognise it in listings.
    pub prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// Requests and tokens per minute, spend per day or month; none by default.
    #[serde(default)]
    pub limits: KeyLimits,
}

/// Who made a run through the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The API key's id.
    pub key_id: String,
    /// The end user the caller named (OpenAI's `user` field), else the key's name.
    pub user: Option<String>,
    pub team: Option<String>,
}

/// Columns of `api_keys`, in [`INSERT_KEY`] order.
pub(crate) const KEY_COLUMNS: &str = "id, name, role, team, key_hash, prefix, created_at_ms, \
     revoked_at_ms, rpm, tpm, budget_usd, budget_period";
/// Insert one key.
pub(crate) const INSERT_KEY: &str = "INSERT INTO api_keys (id, name, role, team, key_hash, \
     prefix, created_at_ms, revoked_at_ms, rpm, tpm, budget_usd, budget_period) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
/// Set the limits of the live key with a name or id: binds rpm, tpm, budget_usd,
/// budget_period, then the name or id.
pub(crate) const SET_KEY_LIMITS: &str = "UPDATE api_keys SET rpm = $1, tpm = $2, \
     budget_usd = $3, budget_period = $4 WHERE (id = $5 OR name = $5) AND revoked_at_ms IS NULL";
/// The live key with a name, if any.
pub(crate) const LIVE_KEY_NAMED: &str =
    "SELECT id FROM api_keys WHERE name = $1 AND revoked_at_ms IS NULL";
/// Revoke the live key with a name or id: binds the time, then the name or id.
pub(crate) const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at_ms = $1 \
     WHERE (id = $2 OR name = $2) AND revoked_at_ms IS NULL";

/// A key from a row of [`KEY_COLUMNS`].
pub(crate) fn key_from_row(row: &impl Columns) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        role: crate::codec::enumeration(row, "api_keys", "role", Role::parse)?,
        team: row.opt_text("team")?,
        key_hash: row.text("key_hash")?,
        prefix: row.text("prefix")?,
        created_at_ms: row.int("created_at_ms")?,
        revoked_at_ms: row.opt_int("revoked_at_ms")?,
        limits: limits_from_row(row)?,
    })
}

fn limits_from_row(row: &impl Columns) -> Result<KeyLimits> {
    let count = |column: &'static str| -> Result<Option<u64>> {
        row.opt_int(column)?
            .map(|n| {
                u64::try_from(n).map_err(|_| StoreError::Corrupt {
                    table: "api_keys",
                    column,
                    message: format!("{n} is negative"),
                })
            })
            .transpose()
    };
    let budget = match (row.opt_float("budget_usd")?, row.opt_text("budget_period")?) {
        (Some(usd), Some(period)) => Some(Budget {
            usd,
            period: BudgetPeriod::parse(&period).ok_or_else(|| StoreError::Corrupt {
                table: "api_keys",
                column: "budget_period",
                message: format!("\"{period}\" is not day or month"),
            })?,
        }),
        _ => None,
    };
    Ok(KeyLimits {
        rpm: count("rpm")?,
        tpm: count("tpm")?,
        budget,
    })
}

/// The limit columns of `limits`, in [`SET_KEY_LIMITS`] order.
pub(crate) fn limit_columns(
    limits: &KeyLimits,
) -> (Option<i64>, Option<i64>, Option<f64>, Option<&'static str>) {
    let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    (
        count(limits.rpm),
        count(limits.tpm),
        limits.budget.map(|b| b.usd),
        limits.budget.map(|b| b.period.as_str()),
    )
}

/// The error for a second live key of one name.
pub(crate) fn duplicate_key(name: &str) -> StoreError {
    StoreError::Duplicate {
        kind: "live API key",
        name: name.to_string(),
    }
}

/// The error for revoking a key that is not live.
pub(crate) fn no_live_key(name_or_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "live API key",
        id: name_or_id.to_string(),
    }
}
