//! Retention (`[retention]`): production runs older than `runs_days` are deleted, and those
//! older than `keep_text_days` lose their texts, in batches of [`RETENTION_BATCH`] runs, each
//! its own short write, so the recorder never waits behind more than one batch. What each pass
//! did is audited. The store's rollups keep the figures of the runs that go.

use serde::Serialize;

use crate::audit_detail::{AuditDetail, RetentionApplied};
use crate::{Engine, EngineError};

const DAY_MS: i64 = 86_400_000;
/// Runs stripped or deleted in one write.
pub const RETENTION_BATCH: u32 = 1_000;

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Runs deleted (with their attempts).
    pub deleted: u64,
    /// Runs whose texts were removed.
    pub stripped: u64,
    /// Whether runs are left for another pass (the pass stopped at `max_batches`).
    pub more: bool,
}

impl Engine {
    /// Apply `[retention]` as of `now_ms`: delete, then strip, at most `max_batches` batches
    /// of each. A pass that changed anything writes one `retention.apply` audit entry with
    /// its counts. Without `[retention]` it does nothing.
    pub async fn apply_retention(
        &self,
        now_ms: i64,
        max_batches: u32,
    ) -> Result<RetentionReport, EngineError> {
        let spec = self.project.config.retention;
        let mut report = RetentionReport::default();
        let cutoff = |days: u32| now_ms - i64::from(days) * DAY_MS;
        if let Some(before) = spec.runs_days.map(cutoff) {
            let done = batches(max_batches, || {
                self.store.delete_runs_before(before, RETENTION_BATCH)
            });
            (report.deleted, report.more) = done.await?;
        }
        if let Some(before) = spec.keep_text_days.map(cutoff) {
            let done = batches(max_batches, || {
                self.store.strip_run_texts(before, RETENTION_BATCH)
            });
            let (stripped, more) = done.await?;
            report.stripped = stripped;
            report.more |= more;
        }
        if report.deleted > 0 || report.stripped > 0 {
            let detail = AuditDetail::RetentionApply(RetentionApplied {
                deleted: report.deleted,
                stripped: report.stripped,
                runs_days: spec.runs_days,
                keep_text_days: spec.keep_text_days,
            });
            self.audit(crate::SYSTEM_ACTOR, "runs", detail).await?;
        }
        Ok(report)
    }
}

/// Run `batch` until it does less than a full batch or `max` batches ran; the runs it did,
/// and whether a full last batch may have left more.
async fn batches<F, Fut>(max: u32, mut batch: F) -> Result<(u64, bool), EngineError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = shopfloor_store::Result<u64>>,
{
    let mut done = 0;
    for _ in 0..max {
        let n = batch().await?;
        done += n;
        if n < u64::from(RETENTION_BATCH) {
            return Ok((done, false));
        }
        // Let the recorder's flushes in between batches.
        tokio::task::yield_now().await;
    }
    Ok((done, max > 0))
}
