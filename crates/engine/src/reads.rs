//! The plain reads the server and the CLI make of what the engine recorded: runs, batches,
//! evals, the audit log, keys, the queues' sizes, and the idempotency keys the gateway keeps.
//! [`Records`] holds them: the CLI opens it alone ([`Records::open`]) for commands that must
//! work on a project whose workflows do not load and must not audit new versions as
//! `Engine::open` does; an engine hands out its own, [`Engine::read`] after writing the runs its
//! recorder still holds (read-your-writes), [`Engine::records`] as it stands.

use std::path::Path;
use std::sync::Arc;

use shopfloor_store::{
    ApiKeyRecord, AuditEntry, BatchRecord, DeliveryState, EvalRecord, IdempotencyClaim,
    IdempotencyRequest, KeptAnswer, ReviewCount, RunFilter, RunRecord, RunSummary, Store,
};

use crate::{Engine, EngineError};

/// Reads of a project's store. Cheap to clone (it shares the store).
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

impl Engine {
    /// The records as they stand: for reads that do not depend on runs just made (keys,
    /// evals, the audit log).
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The records after writing the runs the recorder still holds, so that a read of runs
    /// sees every run this engine answered.
    pub async fn read(&self) -> &Records {
        self.flush().await;
        &self.records
    }
}

impl Records {
    /// The records of the project in `project_dir` (its embedded SQLite file) or at
    /// `database_url`, without loading the project.
    pub async fn open(project_dir: &Path, database_url: Option<&str>) -> Result<Self, EngineError> {
        Ok(Self::over(
            crate::open_store(project_dir, database_url).await?,
        ))
    }

    pub(crate) fn over(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The store these records read; the engine's modules that own a read (visibility,
    /// variants, keys, eval cases) write it as a method of `Records` over this.
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Whether the store answers; `Ok` carries its backend's name (`sqlite`, `postgres`).
    pub async fn store_ready(&self) -> Result<&'static str, EngineError> {
        self.store.ping().await?;
        Ok(self.store.backend())
    }

    /// The review queue per workflow and status at `now_ms`, and the webhook outbox per
    /// delivery state: what `/metrics` reports of the shared queues.
    pub async fn queue_counts(
        &self,
        now_ms: i64,
    ) -> Result<(Vec<ReviewCount>, Vec<(DeliveryState, u64)>), EngineError> {
        let events = async { Ok(self.store.event_counts().await?) };
        tokio::try_join!(self.review_counts(now_ms), events)
    }

    /// Items per workflow and status in the review queue at `now_ms`.
    pub async fn review_counts(&self, now_ms: i64) -> Result<Vec<ReviewCount>, EngineError> {
        Ok(self.store.review_counts(None, now_ms).await?)
    }

    /// The API key whose SHA-256 is `key_hash`, live or revoked.
    pub async fn key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, EngineError> {
        Ok(self.store.api_key_by_hash(key_hash).await?)
    }

    /// Runs matching `filter`, newest first, as summaries.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, EngineError> {
        Ok(self.store.list_runs(filter).await?)
    }

    /// One run, whole. Callers that show it to a person use [`Records::run_view`], which
    /// leaves out what their role may not see.
    pub async fn run_record(&self, id: &str) -> Result<Option<RunRecord>, EngineError> {
        Ok(self.store.get_run(id).await?)
    }

    /// A batch as submitted.
    pub async fn batch(&self, id: &str) -> Result<Option<BatchRecord>, EngineError> {
        Ok(self.store.get_batch(id).await?)
    }

    /// A batch's recorded runs with a case index above `after_case`, in case order, at most
    /// `limit`.
    pub async fn batch_runs(
        &self,
        id: &str,
        after_case: u64,
        limit: u32,
    ) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.store.batch_runs(id, after_case, limit).await?)
    }

    /// One eval.
    pub async fn eval(&self, id: &str) -> Result<Option<EvalRecord>, EngineError> {
        Ok(self.store.get_eval(id).await?)
    }

    /// The latest `limit` evals (of `workflow`), newest first.
    pub async fn evals(
        &self,
        workflow: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EvalRecord>, EngineError> {
        Ok(self.store.list_evals(workflow, limit).await?)
    }

    /// The id of `workflow`'s baseline eval, if one is set.
    pub async fn baseline(&self, workflow: &str) -> Result<Option<String>, EngineError> {
        Ok(self.store.baseline(workflow).await?)
    }

    /// Audit entries after sequence number `after_seq`, oldest first, at most `limit`.
    pub async fn audit_entries(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        Ok(self.store.audit_entries(after_seq, limit).await?)
    }

    /// Claim an idempotency key for a request, or say what holds it.
    pub async fn claim_idempotency(
        &self,
        request: &IdempotencyRequest<'_>,
    ) -> Result<IdempotencyClaim, EngineError> {
        Ok(self.store.claim_idempotency(request).await?)
    }

    /// Keep the answer of a claimed idempotency key for its retries.
    pub async fn keep_idempotent_answer(
        &self,
        api_key_id: &str,
        key: &str,
        answer: &KeptAnswer,
    ) -> Result<(), EngineError> {
        Ok(self
            .store
            .keep_idempotent_answer(api_key_id, key, answer)
            .await?)
    }

    /// Let a claimed idempotency key go unanswered, so that a retry runs the request again.
    pub async fn release_idempotency(
        &self,
        api_key_id: &str,
        key: &str,
    ) -> Result<(), EngineError> {
        Ok(self.store.release_idempotency(api_key_id, key).await?)
    }
}
