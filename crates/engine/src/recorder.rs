//! Writes runs to the store in batches, off the path of the work that produced them.
//!
//! `record` only queues; a background task flushes up to [`FLUSH_SIZE`] runs per transaction.
//! `close` drains the queue, so nothing recorded before a normal exit or Ctrl-C is lost. A failed
//! flush is retried; the store skips runs it already has, so a retry never duplicates a case.
//! A run the store cannot take (a value out of its range) does not take the others with it:
//! the rest are written one by one, and that run is recorded as failed with the reason. What
//! still cannot be written after every retry is counted ([`not_recorded`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shopfloor_store::{RunRecord, RunStatus, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Runs per transaction.
pub const FLUSH_SIZE: usize = 256;
/// How long a run may wait in the queue before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Runs this process gave up recording.
static NOT_RECORDED: AtomicU64 = AtomicU64::new(0);

/// How many runs this process could not record at all (for `/metrics`).
pub fn not_recorded() -> u64 {
    NOT_RECORDED.load(Ordering::Relaxed)
}

enum Message {
    Run(Box<RunRecord>),
    Flush(oneshot::Sender<()>),
}

/// A handle to the background writer. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Message>,
}

/// The writer task; await [`RecorderTask::close`] to drain it.
pub struct RecorderTask {
    handle: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Start the writer on the current tokio runtime.
    pub fn spawn(store: Arc<dyn Store>) -> (Recorder, RecorderTask) {
        let (tx, rx) = mpsc::channel(FLUSH_SIZE * 8);
        let handle = tokio::spawn(write_loop(store, rx));
        (Recorder { tx }, RecorderTask { handle })
    }

    /// Queue a run for writing. Waits only if the queue is full (back-pressure).
    pub async fn record(&self, run: RunRecord) {
        if self.tx.send(Message::Run(Box::new(run))).await.is_err() {
            tracing::error!("the run recorder has stopped; a run was not recorded");
        }
    }

    /// Wait until every run queued so far is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

impl RecorderTask {
    /// Drop every [`Recorder`] handle first; then this waits until the queue is written.
    pub async fn close(self) {
        if let Err(e) = self.handle.await {
            tracing::error!("the run recorder failed: {e}");
        }
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Message>) {
    let mut pending: Vec<RunRecord> = Vec::with_capacity(FLUSH_SIZE);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    // A run waits at most FLUSH_INTERVAL from when it was queued, however busy the queue is.
    let mut deadline = tokio::time::Instant::now();
    loop {
        let message = if pending.is_empty() {
            let message = rx.recv().await;
            deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
            message
        } else {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    write(&*store, &mut pending).await;
                    continue;
                }
            }
        };
        match message {
            Some(Message::Run(run)) => {
                pending.push(*run);
                if pending.len() >= FLUSH_SIZE {
                    write(&*store, &mut pending).await;
                }
            }
            Some(Message::Flush(done)) => {
                waiters.push(done);
                write(&*store, &mut pending).await;
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            None => {
                write(&*store, &mut pending).await;
                return;
            }
        }
    }
}

/// Write and clear `pending`, retrying with backoff: the runs are already done work.
async fn write(store: &dyn Store, pending: &mut Vec<RunRecord>) {
    if pending.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=8 {
        match store.insert_runs(pending).await {
            Ok(()) => {
                pending.clear();
                return;
            }
            Err(e) if cannot_store(&e) => {
                write_one_by_one(store, pending).await;
                if pending.is_empty() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(
                    attempt,
                    "recording {} runs failed: {e}; retrying in {delay:?}",
                    pending.len()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(
        "gave up recording {} runs after repeated store errors",
        pending.len()
    );
    NOT_RECORDED.fetch_add(pending.len() as u64, Ordering::Relaxed);
    pending.clear();
}

/// An error of the rows themselves, not of the store: writing them again cannot help.
fn cannot_store(e: &StoreError) -> bool {
    matches!(e, StoreError::OutOfRange { .. })
}

/// Write each run alone. One the store cannot take is recorded as failed, with the reason
/// and without the values it could not take; `pending` keeps the runs that failed for other
/// reasons (the store went away), for the retry.
async fn write_one_by_one(store: &dyn Store, pending: &mut Vec<RunRecord>) {
    let mut kept = Vec::new();
    for run in pending.drain(..) {
        match store.insert_runs(std::slice::from_ref(&run)).await {
            Ok(()) => {}
            Err(e) if cannot_store(&e) => {
                tracing::error!(run_id = %run.id, workflow = %run.workflow, "a run cannot be stored as it is: {e}; recording it as failed");
                let failed = unstorable(run, &e);
                if let Err(e) = store.insert_runs(std::slice::from_ref(&failed)).await {
                    tracing::error!(run_id = %failed.id, "even as failed the run cannot be stored: {e}");
                    NOT_RECORDED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => kept.push(run),
        }
    }
    *pending = kept;
}

/// `run` as a failed run saying why it could not be stored: its identity, input and prompt,
/// no figures.
fn unstorable(run: RunRecord, e: &StoreError) -> RunRecord {
    RunRecord {
        status: RunStatus::Failed,
        error: Some(format!("the run could not be recorded as it ended: {e}")),
        output: None,
        raw_output: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 0.0,
        latency_ms: 0,
        attempts: Vec::new(),
        review: None,
        confidence: None,
        ..run
    }
}
