//! The audit log's rules: what an entry records, how it is chained to the one before by
//! SHA-256, and the verifier that names the first entry altered, removed or reordered. Pure:
//! the store numbers, persists and reads entries; this module decides what they must hash to.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

crate::text_enum! {
    /// What an audit entry records, dotted as `subject-kind.verb`.
    pub enum AuditAction {
        /// `shopfloor.toml` changed since the last version the log saw.
        ConfigVersion => "config.version",
        /// A workflow's version changed since the last one the log saw.
        WorkflowVersion => "workflow.version",
        /// A workflow moved to another lifecycle stage.
        WorkflowPromote => "workflow.promote",
        /// An eval became its workflow's baseline.
        BaselineSet => "baseline.set",
        /// An API key was created.
        KeyCreate => "key.create",
        /// An API key was revoked.
        KeyRevoke => "key.revoke",
        /// An API key's rate limits or budget changed.
        KeyLimits => "key.limits",
        /// A one-time dashboard sign-in link was made for a key.
        LoginLink => "login.link",
        /// Policy refused a run (the entry names the reason, never the data).
        PolicyRefuse => "policy.refuse",
        /// A batch was submitted through the server.
        BatchSubmit => "batch.submit",
        /// A reviewer approved a held or sampled output.
        ReviewApprove => "review.approve",
        /// A reviewer replaced an output with a correction.
        ReviewEdit => "review.edit",
        /// A reviewer rejected an output.
        ReviewReject => "review.reject",
        /// An experiment started: a variant took a share of a workflow's traffic.
        ExperimentStart => "experiment.start",
        /// A guardrail stopped an experiment's variant taking traffic.
        ExperimentHalt => "experiment.halt",
        /// An experiment ended with a decision (keep or cut) and its numbers.
        ExperimentStop => "experiment.stop",
        /// Retention stripped old runs' texts or deleted old runs (the entry has the counts).
        RetentionApply => "retention.apply",
    }
}

/// One audit entry to append; the store numbers and chains it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub at_ms: i64,
    /// Who did it: a user name, an API key's name, or `shopfloor` for the system itself.
    pub actor: String,
    /// What happened.
    pub action: AuditAction,
    /// What it happened to: a workflow, a key name.
    pub subject: String,
    /// The particulars, as JSON.
    pub detail: Value,
}

/// What a `workflow.promote` entry records: the stages, the version promoted, and the eval
/// its gates were judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromoteDetail {
    pub from: crate::spec::Stage,
    pub to: crate::spec::Stage,
    pub version: String,
    pub eval_id: Option<String>,
}

/// What a `workflow.version` or `config.version` entry records: the version first seen, the one
/// the log saw before it, and for a workflow its file and the stage its file gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDetail {
    pub version: String,
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<crate::spec::Stage>,
}

/// A stored audit entry: its position and its link to the one before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1-based, consecutive.
    pub seq: u64,
    pub at_ms: i64,
    pub actor: String,
    pub action: AuditAction,
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
    /// The promotion this entry records, when it is a `workflow.promote` entry whose detail
    /// reads as one.
    pub fn promotion(&self) -> Option<PromoteDetail> {
        (self.action == AuditAction::WorkflowPromote)
            .then(|| serde_json::from_value(self.detail.clone()).ok())
            .flatten()
    }

    /// The version this entry saw first, when it is a `workflow.version` or `config.version`
    /// entry whose detail reads as one.
    pub fn version_seen(&self) -> Option<VersionDetail> {
        matches!(
            self.action,
            AuditAction::WorkflowVersion | AuditAction::ConfigVersion
        )
        .then(|| serde_json::from_value(self.detail.clone()).ok())
        .flatten()
    }

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
            self.action.as_str().as_bytes(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(action: AuditAction, detail: Value) -> AuditEntry {
        let entry = NewAuditEntry {
            at_ms: 1,
            actor: "ann".into(),
            action,
            subject: "triage".into(),
            detail,
        };
        AuditEntry::chain(entry, None)
    }

    #[test]
    fn lifecycle_details_are_typed_and_read_the_entries_written_before_them() {
        use crate::spec::Stage;
        // As builds before the types wrote them: the same text, so the same hash.
        let promote =
            json!({"from": "pilot", "to": "production", "version": "v2", "eval_id": null});
        let typed = PromoteDetail {
            from: Stage::Pilot,
            to: Stage::Production,
            version: "v2".into(),
            eval_id: None,
        };
        assert_eq!(json!(typed), promote);
        let entry = stored(AuditAction::WorkflowPromote, promote);
        assert_eq!(entry.promotion(), Some(typed));
        assert_eq!(entry.version_seen(), None, "not a version entry");

        let config = VersionDetail {
            version: "abc".into(),
            previous: None,
            file: None,
            stage: None,
        };
        assert_eq!(json!(config), json!({"version": "abc", "previous": null}));
        let workflow = json!({"file": "workflows/triage.toml", "stage": "pilot",
            "version": "v1", "previous": "v0"});
        let seen = stored(AuditAction::WorkflowVersion, workflow.clone())
            .version_seen()
            .unwrap();
        assert_eq!(
            (seen.stage, seen.previous.as_deref()),
            (Some(Stage::Pilot), Some("v0"))
        );
        assert_eq!(json!(seen), workflow);
        // A detail of another shape is not read as one.
        let odd = stored(AuditAction::WorkflowPromote, json!({"to": "moon"}));
        assert_eq!(odd.promotion(), None);
    }

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
                    action: AuditAction::WorkflowPromote,
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
    fn every_text_field_counts() {
        let a = &entries(1)[0];
        let mut b = a.clone();
        b.actor = "anaw".into();
        b.subject = format!("{}x", a.subject);
        assert_ne!(a.compute_hash(), b.compute_hash());
    }

    #[test]
    fn hashes_match_known_vectors() {
        // Computed independently (Python's hashlib over the length-prefixed fields), so a
        // change to the hashed form cannot go unnoticed: it would break every stored chain.
        let chain = entries(2);
        assert_eq!(chain[0].prev_hash, GENESIS_HASH);
        assert_eq!(
            chain[0].hash,
            "ca04bb42f6899e47bcc4c9d1e48d585fdb5318a61b20422a317d5bf746acef3f"
        );
        assert_eq!(chain[1].prev_hash, chain[0].hash);
        assert_eq!(
            chain[1].hash,
            "d042425ffaa6e413ff9654bb5b35e7c0cab0a24e6d2557c1fe18d71c56be1e38"
        );
    }
}
