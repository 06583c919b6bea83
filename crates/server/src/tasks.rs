//! Spawned tasks the server waits for at shutdown: connections, and runs whose clients left.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Counts tasks spawned through it; [`Tasks::idle`] waits until none is left.
#[derive(Clone, Default)]
pub(crate) struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    running: AtomicUsize,
    idle: Notify,
}

/// Counts its task out when dropped, even if the task panicked.
struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tasks {
    pub(crate) fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(self.inner.clone());
        tokio::spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Wait until no task is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.inner.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_every_task() {
        let tasks = Tasks::default();
        tasks.idle().await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _ = rx.await;
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), tasks.idle())
                .await
                .is_err(),
            "a task is still running"
        );
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), tasks.idle())
            .await
            .expect("idle once the task ended");
    }
}
