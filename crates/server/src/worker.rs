//! The batch worker: claims queued cases from the store with a lease (any replica may), renews
//! the lease while it runs them, records each run (which takes the case off the queue), and
//! marks batches done once every case is recorded. A replica that dies leaves its leases to
//! run out; another replica then claims those cases, and the store records each case once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use shopfloor_engine::store_types::{Caller, ClaimedCase};
use shopfloor_engine::RunFacts;
use tokio::sync::watch;

use crate::AppState;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This replica's name in leases; unique per process.
    pub id: String,
    /// Cases run at once.
    pub concurrency: usize,
    /// How long a claim holds a case; renewed every third of it while the case runs.
    pub lease: Duration,
    /// How often an idle worker looks for queued cases (a batch queued on this replica
    /// wakes it at once).
    pub poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::now_v7().simple().to_string()[20..]
            ),
            concurrency: 4,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(500),
        }
    }
}

/// What the worker remembers of a batch: its version and who submitted it.
#[derive(Clone)]
struct BatchInfo {
    version: String,
    caller: Option<Caller>,
}

/// How often finished cases are written and their batches checked for completion.
const SETTLE_EVERY: Duration = Duration::from_millis(200);

/// Run until `stop` turns true; then finish the cases in hand, record them and return.
pub(crate) async fn run(state: AppState, config: WorkerConfig, mut stop: watch::Receiver<bool>) {
    let concurrency = config.concurrency.max(1);
    let mut running = FuturesUnordered::new();
    let mut batches: HashMap<String, BatchInfo> = HashMap::new();
    let mut touched: HashSet<String> = HashSet::new();
    let mut renew = tokio::time::interval(config.lease / 3);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut settle = tokio::time::interval(SETTLE_EVERY);
    settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = *stop.borrow();
    // When the queue was last found empty (or the store failed): wait a poll before asking again.
    let mut idle_since: Option<Instant> = None;
    loop {
        let may_claim = idle_since.is_none_or(|at| at.elapsed() >= config.poll);
        if !stopping && may_claim && running.len() < concurrency {
            let free = (concurrency - running.len()) as u32;
            match state
                .engine
                .claim_cases(&config.id, free, config.lease)
                .await
            {
                Ok(cases) if cases.is_empty() => idle_since = Some(Instant::now()),
                Ok(cases) => {
                    idle_since = None;
                    for case in cases {
                        let info = batch_info(&state, &mut batches, &case).await;
                        running.push(run_case(state.clone(), case, info, stop.clone()));
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!("claiming batch cases failed: {e}");
                    idle_since = Some(Instant::now());
                }
            }
        }
        if stopping && running.is_empty() {
            break;
        }
        let wait = idle_since.map_or(config.poll, |at| config.poll.saturating_sub(at.elapsed()));
        tokio::select! {
            Some(batch) = running.next() => {
                touched.insert(batch);
            }
            _ = renew.tick(), if !running.is_empty() => {
                if let Err(e) = state.engine.extend_leases(&config.id, config.lease).await {
                    tracing::warn!("renewing batch leases failed: {e}");
                }
            }
            _ = settle.tick(), if !touched.is_empty() => {
                settle_batches(&state, &mut touched).await;
            }
            () = state.batch_queued.notified(), if !stopping => idle_since = None,
            () = tokio::time::sleep(wait), if !stopping && running.len() < concurrency => {}
            _ = stop.changed(), if !stopping => stopping = true,
        }
    }
    settle_batches(&state, &mut touched).await;
}

/// How long a case waits for its batch to be read before it is left in the queue.
const BATCH_READ_PATIENCE: Duration = Duration::from_secs(30);

/// The batch's version (a case runs only on the version it was queued for) and its submitter;
/// `None` when the store could not say (the case then asks again itself, never guessing).
async fn batch_info(
    state: &AppState,
    batches: &mut HashMap<String, BatchInfo>,
    case: &ClaimedCase,
) -> Option<BatchInfo> {
    if let Some(info) = batches.get(&case.batch_id) {
        return Some(info.clone());
    }
    let info = read_batch(state, &case.batch_id).await.ok()?;
    batches.insert(case.batch_id.clone(), info.clone());
    Some(info)
}

async fn read_batch(state: &AppState, batch_id: &str) -> Result<BatchInfo, String> {
    match state.engine.records().batch(batch_id).await {
        Ok(Some(batch)) => Ok(BatchInfo {
            version: batch.version,
            caller: batch.caller,
        }),
        // A batch that is gone: its cases fail for it in the engine.
        Ok(None) => Ok(BatchInfo {
            version: String::new(),
            caller: None,
        }),
        Err(e) => {
            tracing::warn!(batch = %batch_id, "reading the batch failed: {e}");
            Err(e.to_string())
        }
    }
}

/// Run one case and queue its run; returns the batch id. Without its batch's version
/// (`info` is `None`: the store failed) the case reads the batch again with backoff; if it
/// still cannot, it is not run (never on another version) and stays queued: once its lease
/// ends, a worker claims it again.
async fn run_case(
    state: AppState,
    case: ClaimedCase,
    info: Option<BatchInfo>,
    mut stop: watch::Receiver<bool>,
) -> String {
    let started = Instant::now();
    let batch = case.batch_id.clone();
    let info = match info {
        Some(info) => info,
        None => {
            let mut wait = Duration::from_millis(100);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return batch,
                }
                if let Ok(info) = read_batch(&state, &batch).await {
                    break info;
                }
                if started.elapsed() >= BATCH_READ_PATIENCE {
                    tracing::error!(
                        batch = %batch, case = case.case_index,
                        "the batch cannot be read; the case is left in the queue, not run"
                    );
                    return batch;
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    };
    // The submitter's tokens per minute and budget hold for its queued cases too: a case past
    // one stays queued (its lease runs out, and a worker tries it again later).
    if let Some(caller) = &info.caller {
        match state.engine.admit_queued(&caller.key_id).await {
            Ok(None) => {}
            Ok(Some(reached)) => {
                tracing::info!(
                    batch = %batch, case = case.case_index,
                    "{}; the case stays queued until the limit renews", reached.message
                );
                return batch;
            }
            Err(e) => {
                tracing::warn!(
                    batch = %batch, case = case.case_index,
                    "the key's limits cannot be read ({e}); the case stays queued, not run"
                );
                return batch;
            }
        }
    }
    let span = tracing::info_span!(
        "batch_case",
        batch = %case.batch_id,
        case = case.case_index,
        workflow = %case.workflow,
    );
    let run = tracing::Instrument::instrument(
        state.engine.run_claimed(case, &info.version, info.caller),
        span,
    )
    .await;
    state
        .metrics
        .run(&RunFacts::of_attempts(&run), started.elapsed());
    batch
}

/// Write the runs queued so far, then mark the batches whose cases are all recorded done.
async fn settle_batches(state: &AppState, touched: &mut HashSet<String>) {
    if touched.is_empty() {
        return;
    }
    state.engine.flush().await;
    for batch in touched.drain() {
        match state.engine.batch_progress(&batch).await {
            Ok(progress) if progress.complete() => {
                tracing::info!(batch = %batch, total = progress.total, "batch done");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(batch = %batch, "checking the batch's progress failed: {e}"),
        }
    }
}
