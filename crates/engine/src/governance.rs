//! Accountability: API keys, the audit log and lifecycle promotions.
//!
//! Every change that matters for governance goes through here and leaves an audit entry:
//! workflow versions seen at start, promotions, baselines, keys, policy refusals.

use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shopfloor_core::access::{Permission, Role};
use shopfloor_core::lifecycle::{promotion_blockers, set_stage, EvalFact, PromotionFacts};
use shopfloor_core::limits::{self, KeyLimits, KeyUsage};
use shopfloor_core::spec::Stage;
use shopfloor_store::{
    ApiKeyRecord, AuditAction, AuditAnchor, AuditEntry, ChainBreak, ChainVerifier, NewAuditEntry,
    RunRecord,
};

use crate::audit_detail::{self, AuditDetail};
use crate::{now_ms, Engine, EngineError, WORKFLOWS_DIR};

/// The actor of entries the system writes by itself.
pub const SYSTEM_ACTOR: &str = "shopfloor";
/// Audit entries read per page when verifying.
const AUDIT_PAGE: u32 = 1_000;

/// A new API key: the one time its secret exists outside the caller's hands.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: ApiKeyRecord,
    /// `sf_` and 64 hex digits; shown once, never stored.
    pub secret: String,
}

/// A fresh random key.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sf_{}", hex::encode(bytes))
}

/// What the store keeps of a key: its SHA-256, hex.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A promotion that happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub workflow: String,
    pub from: Stage,
    pub to: Stage,
    pub audit_seq: u64,
}

impl Engine {
    /// Append an entry to the audit log.
    pub(crate) async fn audit(
        &self,
        actor: &str,
        subject: &str,
        detail: AuditDetail,
    ) -> Result<AuditEntry, EngineError> {
        Ok(self
            .store
            .append_audit(NewAuditEntry {
                at_ms: now_ms(),
                actor: actor.to_string(),
                action: detail.action(),
                subject: subject.to_string(),
                detail: detail.to_json(),
            })
            .await?)
    }

    /// Audit the project config and each workflow whose version differs from the last one the
    /// log saw: the changes a deployment brings, recorded when they are first loaded.
    pub(crate) async fn audit_new_versions(&self) -> Result<(), EngineError> {
        // The parsed config, not the file text: comments, layout and the lines they move are
        // not changes.
        let mut config = serde_json::to_value(&self.project.config).unwrap_or_default();
        if let Some(models) = config.get_mut("models").and_then(Value::as_object_mut) {
            for model in models.values_mut().filter_map(Value::as_object_mut) {
                model.remove("line");
            }
        }
        let config_version = hex::encode(&Sha256::digest(config.to_string().as_bytes())[..8]);
        self.audit_version(crate::CONFIG_FILE, &config_version, None)
            .await?;
        for (name, workflow) in &self.project.workflows {
            self.audit_version(
                name,
                &workflow.version,
                Some((workflow.spec.file.clone(), workflow.spec.stage)),
            )
            .await?;
        }
        Ok(())
    }

    /// Append a `workflow.version` entry (`config.version` without `workflow`) for `subject`
    /// unless the last such entry already has this `version`; `workflow` is a workflow's file
    /// and the stage it gives.
    async fn audit_version(
        &self,
        subject: &str,
        version: &str,
        workflow: Option<(String, shopfloor_core::spec::Stage)>,
    ) -> Result<(), EngineError> {
        let action = match workflow {
            Some(_) => AuditAction::WorkflowVersion,
            None => AuditAction::ConfigVersion,
        };
        let seen = self.store.latest_audit(action, subject).await?;
        let previous = seen.and_then(|e| e.version_seen()).map(|d| d.version);
        if previous.as_deref() == Some(version) {
            return Ok(());
        }
        let (file, stage) = workflow.unzip();
        let detail = shopfloor_core::audit::VersionDetail {
            version: version.to_string(),
            previous,
            file,
            stage,
        };
        let detail = match action {
            AuditAction::WorkflowVersion => AuditDetail::WorkflowVersion(detail),
            _ => AuditDetail::ConfigVersion(detail),
        };
        self.audit(SYSTEM_ACTOR, subject, detail).await?;
        Ok(())
    }

    /// Audit a run that policy refused. The entry names the workflow and the reason (kinds of
    /// data, data classes), never the data.
    pub(crate) async fn audit_refusal(&self, run: &RunRecord) {
        let detail = AuditDetail::PolicyRefuse(audit_detail::PolicyRefusal {
            run_id: run.id.clone(),
            version: run.version.clone(),
            reason: run.error.clone(),
        });
        if let Err(e) = self.audit(SYSTEM_ACTOR, &run.workflow, detail).await {
            tracing::error!(run_id = %run.id, error = %e, "could not audit a policy refusal");
        }
    }

    /// Walk the whole audit log: its head (`None` when empty), or the first entry that breaks
    /// the chain. With an `anchor` (an entry noted earlier, outside the database) the chain must
    /// still reach that entry unchanged, which shows entries removed from its end.
    pub async fn verify_audit(
        &self,
        anchor: Option<&AuditAnchor>,
    ) -> Result<Result<Option<AuditAnchor>, ChainBreak>, EngineError> {
        let mut verifier = anchor
            .cloned()
            .map_or_else(ChainVerifier::default, ChainVerifier::anchored);
        let mut after = 0;
        loop {
            let page = self.store.audit_entries(after, AUDIT_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                if let Err(broken) = verifier.check(entry) {
                    return Ok(Err(broken));
                }
            }
        }
        Ok(verifier.finish())
    }

    /// Create an API key for `name` with `role`, audited as done by `actor`.
    pub async fn create_key(
        &self,
        name: &str,
        role: Role,
        team: Option<&str>,
        actor: &str,
    ) -> Result<NewKey, EngineError> {
        self.create_key_limited(name, role, team, KeyLimits::default(), actor)
            .await
    }

    /// Create an API key with rate limits or a budget, audited as done by `actor`.
    pub async fn create_key_limited(
        &self,
        name: &str,
        role: Role,
        team: Option<&str>,
        limits: KeyLimits,
        actor: &str,
    ) -> Result<NewKey, EngineError> {
        if name.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "a key needs a non-empty name".into(),
            ));
        }
        check_limits(&limits)?;
        let secret = generate_key();
        let record = ApiKeyRecord {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.to_string(),
            role,
            team: team.map(str::to_string),
            key_hash: hash_key(&secret),
            prefix: secret.chars().take(10).collect(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
            limits,
        };
        self.store.create_api_key(&record).await?;
        let detail = AuditDetail::KeyCreate(audit_detail::KeyCreate {
            key_id: record.id.clone(),
            role: record.role,
            team: record.team.clone(),
            prefix: record.prefix.clone(),
            limits: limits.any().then_some(limits),
        });
        self.audit(actor, name, detail).await?;
        Ok(NewKey { record, secret })
    }

    /// Replace the limits of the live key with this name or id, audited as done by `actor`.
    /// Servers see the change when their key cache next reads the key (within its time to
    /// live, 5 s by default).
    pub async fn set_key_limits(
        &self,
        name_or_id: &str,
        limits: KeyLimits,
        actor: &str,
    ) -> Result<ApiKeyRecord, EngineError> {
        check_limits(&limits)?;
        let record = self.store.set_key_limits(name_or_id, &limits).await?;
        let detail = AuditDetail::KeyLimits(audit_detail::KeyLimitsSet {
            key_id: record.id.clone(),
            limits,
        });
        self.audit(actor, &record.name, detail).await?;
        Ok(record)
    }

    /// Admit a request of `key` or say which of its limits it reached: tokens per minute and
    /// the budget against what its recorded runs used, then one of its requests for this
    /// minute, taken in the store (so replicas share the count). A key without limits costs
    /// nothing here. Calls already in flight when a limit is reached still finish, so use can
    /// pass a token or budget limit by what they take.
    pub async fn admit(
        &self,
        key_id: &str,
        key_name: &str,
        limits: &KeyLimits,
    ) -> Result<(), EngineError> {
        if !limits.any() {
            return Ok(());
        }
        let now = now_ms();
        if limits.tpm.is_some() || limits.budget.is_some() {
            let usage = self.store.key_usage(key_id, now).await?;
            limits::check(limits, &usage, key_name, now).map_err(EngineError::LimitReached)?;
        }
        if let Some(rpm) = limits.rpm {
            let minute = limits::Window::Minute.start(now);
            if !self.store.take_request(key_id, minute, rpm).await? {
                return Err(EngineError::LimitReached(limits::requests_reached(
                    rpm, key_name, now,
                )));
            }
        }
        Ok(())
    }

    /// Whether a queued case of a batch that key `key_id` submitted may run now: the key's
    /// tokens per minute and budget, checked against what its runs used (the recorder written
    /// first, so that cases run one after another see each other's spend). `None` to run; the
    /// limit reached otherwise. Requests per minute do not apply: a batch was one request,
    /// and its pace is the worker's.
    pub async fn admit_queued(
        &self,
        key_id: &str,
    ) -> Result<Option<limits::LimitReached>, EngineError> {
        let Some(key) = self.store.api_key_by_id(key_id).await? else {
            return Ok(None);
        };
        let limits = KeyLimits {
            rpm: None,
            ..key.limits
        };
        if !limits.any() {
            return Ok(None);
        }
        self.recorder.flush().await;
        let now = now_ms();
        let usage = self.store.key_usage(key_id, now).await?;
        Ok(limits::check(&limits, &usage, &key.name, now).err())
    }

    /// Revoke the live key with this name or id, audited as done by `actor`.
    pub async fn revoke_key(
        &self,
        name_or_id: &str,
        actor: &str,
    ) -> Result<ApiKeyRecord, EngineError> {
        let record = self.store.revoke_api_key(name_or_id, now_ms()).await?;
        let detail = AuditDetail::KeyRevoke(audit_detail::KeyRevoke {
            key_id: record.id.clone(),
            role: record.role,
        });
        self.audit(actor, &record.name, detail).await?;
        Ok(record)
    }

    /// Set `eval_id` as the baseline of its workflow, audited as done by `actor`.
    pub async fn set_baseline(&self, eval_id: &str, actor: &str) -> Result<String, EngineError> {
        let eval = self
            .store
            .get_eval(eval_id)
            .await?
            .ok_or_else(|| EngineError::UnknownEval(eval_id.to_string()))?;
        let previous = self.store.baseline(&eval.workflow).await?;
        self.store
            .set_baseline(&eval.workflow, eval_id, now_ms())
            .await?;
        let detail = AuditDetail::BaselineSet(audit_detail::BaselineSet {
            eval_id: eval_id.to_string(),
            previous,
            version: eval.version.clone(),
        });
        self.audit(actor, &eval.workflow, detail).await?;
        Ok(eval.workflow)
    }

    /// What stands in the way of promoting `workflow` to `to` now: nothing when it may go.
    pub async fn promotion_blockers(
        &self,
        workflow: &str,
        to: Stage,
    ) -> Result<Vec<String>, EngineError> {
        let (loaded, facts) = self.promotion_facts(workflow).await?;
        Ok(promotion_blockers(&loaded.spec, to, &facts))
    }

    /// A workflow and what its promotion gates read.
    async fn promotion_facts(
        &self,
        workflow: &str,
    ) -> Result<(std::sync::Arc<crate::LoadedWorkflow>, PromotionFacts), EngineError> {
        let loaded = self.project.workflow(workflow)?;
        let facts = PromotionFacts {
            version: loaded.version.clone(),
            last_eval: self
                .records
                .last_complete_eval(workflow, &loaded.version)
                .await?
                .map(|e| EvalFact {
                    id: e.id,
                    version: e.version,
                    passed: e.passed,
                }),
            reviewers: self
                .store
                .list_api_keys()
                .await?
                .iter()
                .filter(|k| k.revoked_at_ms.is_none())
                .filter(|k| k.role.allows(Permission::Review))
                .count(),
        };
        Ok((loaded, facts))
    }

    /// Move `workflow` to `to` if its gates allow: rewrite `stage` in its file and audit it.
    pub async fn promote(
        &self,
        workflow: &str,
        to: Stage,
        actor: &str,
    ) -> Result<Promotion, EngineError> {
        let (loaded, facts) = self.promotion_facts(workflow).await?;
        let blockers = promotion_blockers(&loaded.spec, to, &facts);
        if !blockers.is_empty() {
            return Err(EngineError::PromotionRefused {
                workflow: workflow.to_string(),
                to: to.as_str(),
                reasons: blockers,
            });
        }
        let path = self
            .project
            .root
            .join(WORKFLOWS_DIR)
            .join(format!("{workflow}.toml"));
        let text = std::fs::read_to_string(&path).map_err(EngineError::io(&path))?;
        let edited = set_stage(&text, to).map_err(|message| EngineError::WorkflowEdit {
            path: path.clone(),
            message,
        })?;
        // Write beside, then rename: a crash leaves the old file or the new, never half.
        let temp = path.with_extension("toml.promote");
        std::fs::write(&temp, edited).map_err(EngineError::io(&temp))?;
        std::fs::rename(&temp, &path).map_err(EngineError::io(&path))?;
        let entry = self
            .audit(
                actor,
                workflow,
                AuditDetail::WorkflowPromote(shopfloor_core::audit::PromoteDetail {
                    from: loaded.spec.stage,
                    to,
                    version: loaded.version.clone(),
                    eval_id: facts.last_eval.map(|e| e.id),
                }),
            )
            .await?;
        Ok(Promotion {
            workflow: workflow.to_string(),
            from: loaded.spec.stage,
            to,
            audit_seq: entry.seq,
        })
    }
}

impl crate::Records {
    /// Every API key with what it used in the minute, day and month that hold now (what
    /// `keys list` reads without loading a project).
    pub async fn keys_with_usage(&self) -> Result<Vec<(ApiKeyRecord, KeyUsage)>, EngineError> {
        let keys = self.store().list_api_keys().await?;
        let mut usage = self.store().all_key_usage(now_ms()).await?;
        Ok(keys
            .into_iter()
            .map(|key| {
                let used = usage.remove(&key.id).unwrap_or_default();
                (key, used)
            })
            .collect())
    }
}

/// Limits that can be met: at least one request and one token a minute, a positive budget.
fn check_limits(limits: &KeyLimits) -> Result<(), EngineError> {
    let field = |field: &'static str, message: &str| {
        Err(EngineError::InvalidField {
            field,
            message: message.to_string(),
        })
    };
    if limits.rpm == Some(0) {
        return field(
            "rpm",
            "must be at least 1 request a minute (leave it out for no limit)",
        );
    }
    if limits.tpm == Some(0) {
        return field(
            "tpm",
            "must be at least 1 token a minute (leave it out for no limit)",
        );
    }
    if let Some(budget) = limits.budget {
        if !(budget.usd.is_finite() && budget.usd > 0.0) {
            return field("budget_usd", "must be a positive number of US dollars");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_stored_as_their_sha256() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with("sf_") && a.len() == 67, "{a}");
        assert_ne!(hash_key(&a), hash_key(&b));
        // SHA-256 of the whole key, hex: what a lookup by hash must reproduce.
        assert_eq!(
            hash_key("sf_test"),
            "def55b07d41b2f6c171f7dadc12e4d1e48f21768c7c0695fb06f7867e834d431"
        );
    }
}
