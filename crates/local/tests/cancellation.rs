//! Cancellation: a request whose future is dropped gives its slot back.
//!
//! In a test binary of its own (not a module of `tests/it`): `active_requests` counts every
//! request of the process-wide model, so other tests running beside it in the same process
//! would keep it above zero.

mod common;

use std::time::Duration;

use common::{ask, provider};
use shopfloor_providers::Provider;

#[tokio::test]
async fn dropping_a_request_frees_its_slot() {
    let provider = provider();
    let long = ask("Write a long essay about the history of shipping.", 2000);
    let cut = tokio::time::timeout(Duration::from_millis(300), provider.complete(&long)).await;
    assert!(
        cut.is_err(),
        "a 2000-token answer should not finish in 300 ms"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while provider.active_requests() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned request still holds its slot"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = provider
        .complete(&ask("Say yes.", 4))
        .await
        .expect("the model still answers");
    assert!(!next.text.is_empty());
}
