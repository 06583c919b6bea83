//! Records for access and accountability: API keys, the caller of a run, the hash-chained
//! audit log, and cases of the persistent batch queue.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An API key as stored: never the key, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    /// Who or what holds the key (a person, a service); unique among live keys.
    pub name: String,
    /// A role name from `shopfloor_core::access::Role`.
    pub role: String,
    pub team: Option<String>,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// The key's first characters, to recognise it in listings.
    pub prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
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

/// One audit entry to append; the store numbers and chains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub at_ms: i64,
    /// Who did it: a user name, an API key's name, or `shopfloor` for the system itself.
    pub actor: String,
    /// What happened, dotted: `workflow.version`, `workflow.promote`, `baseline.set`,
    /// `key.create`, `key.revoke`, `policy.refuse`.
    pub action: String,
    /// What it happened to: a workflow, a key name.
    pub subject: String,
    /// The particulars, as JSON.
    pub detail: Value,
}

/// A stored audit entry: its position and its link to the one before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1-based, consecutive.
    pub seq: u64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: Value,
    /// [`AuditEntry::hash`] of the previous entry; [`GENESIS_HASH`] for the first.
    pub prev_hash: String,
    /// SHA-256 over every field above, hex.
    pub hash: String,
}

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl AuditEntry {
    /// Number and chain `entry` after the entry `(seq, hash)` (none for the first).
    pub fn chain(entry: NewAuditEntry, previous: Option<(u64, String)>) -> Self {
        let (seq, prev_hash) = match previous {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS_HASH.to_string()),
        };
        let mut chained = Self {
            seq,
            at_ms: entry.at_ms,
            actor: entry.actor,
            action: entry.action,
            subject: entry.subject,
            detail: entry.detail,
            prev_hash,
            hash: String::new(),
        };
        chained.hash = chained.compute_hash();
        chained
    }

    /// The hash this entry's fields call for. Each field is length-prefixed, so no two
    /// different entries hash the same text.
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let detail = self.detail.to_string();
        let fields: [&[u8]; 7] = [
            &self.seq.to_be_bytes(),
            &self.at_ms.to_be_bytes(),
            self.actor.as_bytes(),
            self.action.as_bytes(),
            self.subject.as_bytes(),
            detail.as_bytes(),
            self.prev_hash.as_bytes(),
        ];
        for field in fields {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field);
        }
        hex::encode(hasher.finalize())
    }
}

/// Where and how an audit chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq}: {reason}")]
pub struct ChainBreak {
    /// The first entry that does not fit the chain.
    pub seq: u64,
    pub reason: String,
}

/// An entry's number and (a prefix of, at least 12 hex digits) its hash, written `SEQ:HASH` and
/// kept outside the database. The chain proves everything before an entry; it cannot show that
/// entries were removed from its end. An anchor can: the chain must still reach it, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAnchor {
    pub seq: u64,
    pub hash: String,
}

/// The shortest hash prefix an anchor may give.
const MIN_ANCHOR_HEX: usize = 12;

impl std::fmt::Display for AuditAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for AuditAnchor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "{text:?} is not an audit anchor: write it as SEQ:HASH, as `shopfloor audit verify` \
                 prints it (at least {MIN_ANCHOR_HEX} hex digits of the hash)"
            )
        };
        let (seq, hash) = text.trim().split_once(':').ok_or_else(expected)?;
        let seq: u64 = seq.parse().ok().filter(|&n| n > 0).ok_or_else(expected)?;
        let hash = hash.to_ascii_lowercase();
        let hex = hash.len() >= MIN_ANCHOR_HEX
            && hash.len() <= 64
            && hash.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then_some(AuditAnchor { seq, hash })
            .ok_or_else(expected)
    }
}

/// Checks an audit chain one entry at a time, in `seq` order as stored, so a long log can be
/// verified page by page.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev_hash: String,
    anchor: Option<AuditAnchor>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            anchor: None,
        }
    }
}

impl ChainVerifier {
    /// A verifier for which the chain must also reach `anchor` unchanged (see [`finish`]).
    ///
    /// [`finish`]: ChainVerifier::finish
    pub fn anchored(anchor: AuditAnchor) -> Self {
        Self {
            anchor: Some(anchor),
            ..Self::default()
        }
    }

    /// Check the next entry; the error names it when it was altered, removed or reordered.
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let broken = |reason: String| ChainBreak {
            seq: entry.seq,
            reason,
        };
        if entry.seq != self.expected_seq {
            return Err(broken(format!(
                "expected entry {} here: entries were removed or reordered",
                self.expected_seq
            )));
        }
        if entry.prev_hash != self.prev_hash {
            return Err(broken(
                "its link to the previous entry does not match: the previous entry was \
                 altered or replaced"
                    .into(),
            ));
        }
        if entry.compute_hash() != entry.hash {
            return Err(broken(
                "its content does not match its hash: the entry was altered".into(),
            ));
        }
        if let Some(anchor) = self.anchor.as_ref().filter(|a| a.seq == entry.seq) {
            if !entry.hash.starts_with(&anchor.hash) {
                return Err(broken(format!(
                    "it does not match the anchor {anchor}: the log was rewritten from here on"
                )));
            }
        }
        self.prev_hash.clone_from(&entry.hash);
        self.expected_seq += 1;
        Ok(())
    }

    /// How many entries have been checked.
    pub fn checked(&self) -> u64 {
        self.expected_seq - 1
    }

    /// After the last entry: the head (`None` for an empty log), or the break when the chain
    /// never reached its anchor, that is when entries were removed from its end.
    pub fn finish(self) -> Result<Option<AuditAnchor>, ChainBreak> {
        let checked = self.checked();
        if let Some(anchor) = self.anchor.filter(|a| a.seq > checked) {
            return Err(ChainBreak {
                seq: anchor.seq,
                reason: format!(
                    "the anchored entry is gone (the log now ends at entry {checked}): entries \
                     were removed from its end"
                ),
            });
        }
        Ok((checked > 0).then_some(AuditAnchor {
            seq: checked,
            hash: self.prev_hash,
        }))
    }
}

/// Walk `entries` (in `seq` order as stored) and name the first that was altered, removed or
/// reordered. Returns the number of entries checked.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
) -> Result<u64, ChainBreak> {
    let mut verifier = ChainVerifier::default();
    for entry in entries {
        verifier.check(entry)?;
    }
    Ok(verifier.checked())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anchors_parse_from_seq_and_a_hash_prefix() {
        let anchor: AuditAnchor = "42:3F9A1C0E77B2".parse().unwrap();
        assert_eq!(anchor.seq, 42);
        assert_eq!(anchor.hash, "3f9a1c0e77b2");
        assert_eq!(anchor.to_string(), "42:3f9a1c0e77b2");
        for bad in [
            "",
            "42",
            "0:3f9a1c0e77b2",
            "x:3f9a1c0e77b2",
            "42:3f9a1c",
            "42:zzzzzzzzzzzz",
        ] {
            let error = bad.parse::<AuditAnchor>().unwrap_err();
            assert!(error.contains("SEQ:HASH"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_head_is_the_last_entry_checked_and_an_anchor_must_be_reached() {
        let chain = entries(3);
        assert_eq!(ChainVerifier::default().finish(), Ok(None));
        let mut verifier = ChainVerifier::default();
        for entry in &chain {
            verifier.check(entry).unwrap();
        }
        let head = verifier.finish().unwrap().unwrap();
        assert_eq!(head.seq, 3);
        assert_eq!(head.hash, chain[2].hash);

        // Reached with a prefix of its hash; gone when the chain stops short of it.
        let anchor = AuditAnchor {
            seq: 2,
            hash: chain[1].hash[..12].to_string(),
        };
        let mut verifier = ChainVerifier::anchored(anchor.clone());
        chain.iter().for_each(|e| verifier.check(e).unwrap());
        assert!(verifier.finish().is_ok());
        let mut verifier = ChainVerifier::anchored(anchor.clone());
        verifier.check(&chain[0]).unwrap();
        assert_eq!(verifier.finish().unwrap_err().seq, 2);
        // A different hash at its number: rewritten.
        let mut verifier = ChainVerifier::anchored(AuditAnchor {
            seq: 2,
            hash: "0".repeat(12),
        });
        verifier.check(&chain[0]).unwrap();
        let broken = verifier.check(&chain[1]).unwrap_err();
        assert!(
            broken.reason.contains("does not match the anchor"),
            "{broken}"
        );
    }

    fn entries(n: usize) -> Vec<AuditEntry> {
        let mut chain: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let previous = chain.last().map(|e| (e.seq, e.hash.clone()));
            chain.push(AuditEntry::chain(
                NewAuditEntry {
                    at_ms: 1_000 + i as i64,
                    actor: "ana".into(),
                    action: "workflow.promote".into(),
                    subject: format!("wf-{i}"),
                    detail: json!({"to": "pilot"}),
                },
                previous,
            ));
        }
        chain
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&entries(5)), Ok(5));
        assert_eq!(verify_chain(&[]), Ok(0));
    }

    #[test]
    fn an_altered_entry_is_named() {
        let mut chain = entries(5);
        chain[2].detail = json!({"to": "production"});
        assert_eq!(verify_chain(&chain).unwrap_err().seq, 3);
    }

    #[test]
    fn an_altered_and_rehashed_entry_breaks_the_next_link() {
        let mut chain = entries(5);
        chain[2].actor = "mallory".into();
        chain[2].hash = chain[2].compute_hash();
        let broken = verify_chain(&chain).unwrap_err();
        assert_eq!(broken.seq, 4);
        assert!(broken.reason.contains("previous entry"), "{broken}");
    }

    #[test]
    fn removed_and_reordered_entries_are_named() {
        let mut chain = entries(5);
        chain.remove(1);
        assert_eq!(verify_chain(&chain).unwrap_err().seq, 3);
        let mut chain = entries(5);
        chain.swap(3, 4);
        assert_eq!(verify_chain(&chain).unwrap_err().seq, 5);
    }

    #[test]
    fn field_boundaries_matter() {
        let a = &entries(1)[0];
        let mut b = a.clone();
        b.actor = "an".into();
        b.action = format!("a{}", a.action);
        assert_ne!(a.compute_hash(), b.compute_hash());
    }
}

/// SQL both databases share, and row decoding.
pub(crate) mod sql {
    use super::{ApiKeyRecord, AuditEntry, ClaimedCase};
    use crate::codec::{self, Columns};
    use crate::{Result, StoreError};

    pub const KEY_COLUMNS: &str =
        "id, name, role, team, key_hash, prefix, created_at_ms, revoked_at_ms";
    pub const INSERT_KEY: &str = "INSERT INTO api_keys (id, name, role, team, key_hash, prefix, \
         created_at_ms, revoked_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub const LIVE_KEY_NAMED: &str =
        "SELECT id FROM api_keys WHERE name = $1 AND revoked_at_ms IS NULL";
    pub const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at_ms = $1 \
         WHERE (id = $2 OR name = $2) AND revoked_at_ms IS NULL";

    pub const AUDIT_COLUMNS: &str = "seq, at_ms, actor, action, subject, detail, prev_hash, hash";
    pub const INSERT_AUDIT: &str = "INSERT INTO audit_log (seq, at_ms, actor, action, subject, \
         detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    pub const LAST_AUDIT: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

    pub const INSERT_CASE: &str = "INSERT INTO batch_cases (batch_id, case_index, input, \
         lease_owner, lease_until_ms) VALUES ($1, $2, $3, NULL, 0)";
    pub const EXTEND_LEASES: &str =
        "UPDATE batch_cases SET lease_until_ms = $1 WHERE lease_owner = $2";
    pub const BATCH_TOTAL: &str = "SELECT total_cases FROM batches WHERE id = $1";
    pub const BATCH_RECORDED: &str = "SELECT COUNT(*) FROM runs WHERE batch_id = $1";

    pub fn key_from_row(row: &impl Columns) -> Result<ApiKeyRecord> {
        Ok(ApiKeyRecord {
            id: row.text("id")?,
            name: row.text("name")?,
            role: row.text("role")?,
            team: row.opt_text("team")?,
            key_hash: row.text("key_hash")?,
            prefix: row.text("prefix")?,
            created_at_ms: row.int("created_at_ms")?,
            revoked_at_ms: row.opt_int("revoked_at_ms")?,
        })
    }

    pub fn audit_from_row(row: &impl Columns) -> Result<AuditEntry> {
        Ok(AuditEntry {
            seq: codec::unsigned(row, "audit_log", "seq")?,
            at_ms: row.int("at_ms")?,
            actor: row.text("actor")?,
            action: row.text("action")?,
            subject: row.text("subject")?,
            detail: codec::json(row, "audit_log", "detail")?,
            prev_hash: row.text("prev_hash")?,
            hash: row.text("hash")?,
        })
    }

    pub fn claimed_from_row(row: &impl Columns) -> Result<ClaimedCase> {
        Ok(ClaimedCase {
            batch_id: row.text("batch_id")?,
            workflow: row.text("workflow")?,
            case_index: codec::unsigned(row, "batch_cases", "case_index")?,
            input: codec::json(row, "batch_cases", "input")?,
            model_override: row.opt_text("model_override")?,
        })
    }

    pub fn duplicate_key(name: &str) -> StoreError {
        StoreError::Duplicate {
            kind: "live API key",
            name: name.to_string(),
        }
    }

    pub fn no_live_key(name_or_id: &str) -> StoreError {
        StoreError::NotFound {
            kind: "live API key",
            id: name_or_id.to_string(),
        }
    }
}

/// The queries that read the same in both dialects, written once and expanded into each
/// backend's module (generic sqlx code over both databases cannot satisfy `async_trait`'s
/// `Send` bounds). `$read` and `$write` name the store's methods returning its reader and
/// writer pools.
macro_rules! shared_access_queries {
    ($store:ty, $db:ty, $read:ident, $write:ident) => {
        pub(super) async fn api_key_by_hash(
            store: &$store,
            key_hash: &str,
        ) -> Result<Option<ApiKeyRecord>> {
            let query = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
            sqlx::query::<$db>(&query)
                .bind(key_hash)
                .fetch_optional(store.$read())
                .await?
                .map(|row| sql::key_from_row(&row))
                .transpose()
        }
        pub(super) async fn list_api_keys(store: &$store) -> Result<Vec<ApiKeyRecord>> {
            let query = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at_ms, id");
            sqlx::query::<$db>(&query)
                .fetch_all(store.$read())
                .await?
                .iter()
                .map(sql::key_from_row)
                .collect()
        }
        pub(super) async fn revoke_api_key(
            store: &$store,
            name_or_id: &str,
            at_ms: i64,
        ) -> Result<ApiKeyRecord> {
            let query = format!("{} RETURNING {KEY_COLUMNS}", sql::REVOKE_KEY);
            sqlx::query::<$db>(&query)
                .bind(at_ms)
                .bind(name_or_id)
                .fetch_optional(store.$write())
                .await?
                .map(|row| sql::key_from_row(&row))
                .transpose()?
                .ok_or_else(|| sql::no_live_key(name_or_id))
        }
        pub(super) async fn audit_entries(
            store: &$store,
            after_seq: u64,
            limit: u32,
        ) -> Result<Vec<AuditEntry>> {
            let query = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            );
            sqlx::query::<$db>(&query)
                .bind(to_bigint("audit_log.seq", after_seq)?)
                .bind(i64::from(limit))
                .fetch_all(store.$read())
                .await?
                .iter()
                .map(sql::audit_from_row)
                .collect()
        }
        pub(super) async fn latest_audit(
            store: &$store,
            action: &str,
            subject: &str,
        ) -> Result<Option<AuditEntry>> {
            let query = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE action = $1 AND subject = $2 \
                 ORDER BY seq DESC LIMIT 1"
            );
            sqlx::query::<$db>(&query)
                .bind(action)
                .bind(subject)
                .fetch_optional(store.$read())
                .await?
                .map(|row| sql::audit_from_row(&row))
                .transpose()
        }
        pub(super) async fn extend_batch_leases(
            store: &$store,
            worker: &str,
            lease_until_ms: i64,
        ) -> Result<u64> {
            Ok(sqlx::query::<$db>(sql::EXTEND_LEASES)
                .bind(lease_until_ms)
                .bind(worker)
                .execute(store.$write())
                .await?
                .rows_affected())
        }
        pub(super) async fn batch_progress(store: &$store, batch_id: &str) -> Result<(u64, u64)> {
            let total = sqlx::query_scalar::<$db, i64>(sql::BATCH_TOTAL)
                .bind(batch_id)
                .fetch_optional(store.$read())
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    kind: "batch",
                    id: batch_id.to_string(),
                })?;
            let recorded = sqlx::query_scalar::<$db, i64>(sql::BATCH_RECORDED)
                .bind(batch_id)
                .fetch_one(store.$read())
                .await?;
            Ok((
                u64::try_from(total).unwrap_or(0),
                u64::try_from(recorded).unwrap_or(0),
            ))
        }

        pub(super) async fn batch_runs(
            store: &$store,
            batch_id: &str,
            after_case: u64,
            limit: u32,
        ) -> Result<Vec<crate::RunRecord>> {
            let query = format!(
                "SELECT {} FROM runs WHERE batch_id = $1 AND case_index > $2 \
                 ORDER BY case_index LIMIT $3",
                crate::codec::RUN_COLUMNS
            );
            sqlx::query::<$db>(&query)
                .bind(batch_id)
                .bind(to_bigint("runs.case_index", after_case)?)
                .bind(i64::from(limit))
                .fetch_all(store.$read())
                .await?
                .iter()
                .map(|row| crate::codec::run_from_row(row, Vec::new()))
                .collect()
        }
    };
}
pub(crate) use shared_access_queries;
