//! The audit log's SQL and row decoding. What an entry is and how the chain is hashed and
//! verified are core's rules ([`shopfloor_core::audit`]); the store numbers entries, persists
//! them and reads them back.

pub use shopfloor_core::audit::{
    verify_chain, AuditAction, AuditAnchor, AuditEntry, ChainBreak, ChainVerifier, NewAuditEntry,
    GENESIS_HASH,
};

use crate::codec::{self, Columns};
use crate::Result;

/// Columns of `audit_log`, in [`INSERT_AUDIT`] order.
pub(crate) const AUDIT_COLUMNS: &str =
    "seq, at_ms, actor, action, subject, detail, prev_hash, hash";
/// Insert one entry.
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at_ms, actor, action, \
     subject, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// The newest entry's number and hash, to chain the next one to.
pub(crate) const LAST_AUDIT: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

/// An entry from a row of [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row(row: &impl Columns) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: codec::unsigned(row, "audit_log", "seq")?,
        at_ms: row.int("at_ms")?,
        actor: row.text("actor")?,
        action: codec::enumeration(row, "audit_log", "action", AuditAction::parse)?,
        subject: row.text("subject")?,
        detail: codec::json(row, "audit_log", "detail")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}

/// The newest entry's `(seq, hash)` from a row of [`LAST_AUDIT`].
pub(crate) fn last_from_row(row: &impl Columns) -> Result<(u64, String)> {
    Ok((codec::unsigned(row, "audit_log", "seq")?, row.text("hash")?))
}
