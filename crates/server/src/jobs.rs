//! The server's background jobs. Each is named, runs on its own interval in its own task (so a
//! slow one, a drift check over a long history, never holds up another, webhook delivery), and
//! reports to `/metrics` per job: passes and failures counted, the last pass's duration, and
//! when a pass last ended. A failed pass is logged and tried again at the next interval.
//!
//! Every replica may run every job: review items and webhook events are leased or guarded in
//! the store, the weekly review is one event per week, and retention's batches are each their
//! own short write, so nothing is acted on twice.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::AppState;

/// How often retention runs, and how many batches (of 1,000 runs) one pass may apply.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
const RETENTION_BATCHES: u32 = 10;

/// The jobs' names, as `/metrics` labels them.
const REVIEW_SLA: &str = "review_sla";
const WEBHOOKS: &str = "webhooks";
const EXPERIMENTS: &str = "experiments";
const WEEKLY_REVIEW: &str = "weekly_review";
const RETENTION: &str = "retention";
const DRIFT: &str = "drift";

/// Start this replica's jobs: the review SLAs, webhook delivery, experiment guardrails and the
/// weekly review every `every`; `[retention]` once a minute when set; the drift check every
/// `[monitoring] every` when set. Each stops when `stop` turns true.
pub(crate) fn spawn_all(
    state: &AppState,
    every: Duration,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let config = &state.engine.project.config;
    let mut jobs = vec![
        spawn(REVIEW_SLA, every, state, stop, |state| async move {
            let sweep = state.engine.review_sweep().await?;
            state.metrics.sla_actions(&sweep);
            Ok(())
        }),
        spawn(WEBHOOKS, every, state, stop, |state| async move {
            let pass = state.engine.deliver_due().await?;
            state.metrics.deliveries(&pass);
            Ok(())
        }),
        spawn(EXPERIMENTS, every, state, stop, |state| async move {
            state.engine.check_experiments().await?;
            Ok(())
        }),
    ];
    if config.monitoring.weekly_webhook.is_some() {
        // Once a week has ended its review is queued. The engine builds it only when that
        // week's event is not in the store yet, and the store keeps it to one event per week,
        // so neither another replica nor a restart sends or builds it twice.
        jobs.push(spawn(
            WEEKLY_REVIEW,
            every,
            state,
            stop,
            |state| async move {
                state
                    .engine
                    .queue_weekly_review(shopfloor_engine::now_ms())
                    .await?;
                Ok(())
            },
        ));
    }
    if !config.retention.is_unset() {
        jobs.push(spawn(
            RETENTION,
            RETENTION_EVERY,
            state,
            stop,
            |state| async move {
                let now = shopfloor_engine::now_ms();
                let report = state.engine.apply_retention(now, RETENTION_BATCHES).await?;
                if report.deleted + report.stripped > 0 {
                    tracing::info!(
                        deleted = report.deleted,
                        stripped = report.stripped,
                        "retention applied"
                    );
                }
                Ok(())
            },
        ));
    }
    if let Some(secs) = config.monitoring.every_secs {
        let every_ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        jobs.push(spawn(
            DRIFT,
            Duration::from_secs(secs.max(1)),
            state,
            stop,
            move |state| async move {
                let now = shopfloor_engine::now_ms();
                let verdicts = state.engine.drift_sweep(now, every_ms).await?;
                state.metrics.drift_verdicts(&verdicts);
                Ok(())
            },
        ));
    }
    jobs
}

/// Run `pass` now and then every `every` until `stop` turns true, timing and counting each.
fn spawn<F, Fut>(
    name: &'static str,
    every: Duration,
    state: &AppState,
    stop: &watch::Receiver<bool>,
    pass: F,
) -> JoinHandle<()>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), shopfloor_engine::EngineError>> + Send,
{
    let state = state.clone();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => return,
                _ = tick.tick() => {}
            }
            let started = Instant::now();
            let result = pass(state.clone()).await;
            if let Err(e) = &result {
                tracing::warn!(
                    job = name,
                    "background job failed, tried again in {every:?}: {e}"
                );
            }
            state
                .metrics
                .job_pass(name, started.elapsed(), result.is_ok());
        }
    })
}
