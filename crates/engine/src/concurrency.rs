//! The one bounded-concurrency loop: batches and evals run their cases through it.

use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

/// Start `work` on each item with at most `limit` (at least 1) in flight, and hand each result
/// to `finish` in the order they complete. Once `stop` resolves no more items start; those in
/// flight finish. The first error from `finish` ends the loop. `Ok(true)` when `stop` left
/// items unstarted.
pub(crate) async fn run_bounded<T, R, E, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    stop: impl Future<Output = ()>,
    work: impl Fn(T) -> Fut,
    mut finish: impl AsyncFnMut(R) -> Result<(), E>,
) -> Result<bool, E>
where
    Fut: Future<Output = R>,
{
    let mut pending = items.into_iter().peekable();
    let mut running = FuturesUnordered::new();
    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    loop {
        while !stopping && running.len() < limit.max(1) {
            let Some(item) = pending.next() else { break };
            running.push(work(item));
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            // A stop is seen before the next result, so none starts after it has come.
            biased;
            () = &mut stop, if !stopping => stopping = true,
            Some(result) = running.next() => finish(result).await?,
        }
    }
    Ok(stopping && pending.peek().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_than_the_limit_in_flight_and_every_result_finished() {
        let in_flight = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut seen = Vec::new();
        let interrupted = run_bounded(
            0..20u64,
            3,
            std::future::pending(),
            |i| {
                let (in_flight, most) = (&in_flight, &most);
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20 - i)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    i
                }
            },
            async |i| {
                seen.push(i);
                Ok::<(), ()>(())
            },
        )
        .await
        .unwrap();
        assert!(!interrupted);
        assert_eq!(most.load(Ordering::SeqCst), 3);
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn stop_lets_those_in_flight_finish_and_says_items_were_left() {
        let mut seen = 0;
        let interrupted = run_bounded(
            0..10u32,
            2,
            std::future::ready(()),
            |i| async move { i },
            async |_| {
                seen += 1;
                Ok::<(), ()>(())
            },
        )
        .await
        .unwrap();
        assert!(interrupted);
        assert_eq!(seen, 2, "the two started before the stop finish");
    }

    #[tokio::test]
    async fn the_first_error_ends_the_loop() {
        let result = run_bounded(
            0..10u32,
            1,
            std::future::pending(),
            |i| async move { i },
            async |i| if i == 3 { Err(i) } else { Ok(()) },
        )
        .await;
        assert_eq!(result, Err(3));
    }
}
