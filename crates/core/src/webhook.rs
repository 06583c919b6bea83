//! Webhook events as pure rules: their kinds, how a body is signed (and how a receiver checks
//! it), and when a failed delivery is tried again. The engine keeps the events in the store's
//! outbox and sends them; nothing here does I/O.

use sha2::{Digest, Sha256};

/// The header with the body's signature: `t=UNIX_SECONDS,v1=HEX`.
pub const SIGNATURE_HEADER: &str = "X-Shopfloor-Signature";
/// The header with the event's id, the same on every delivery of it, for de-duplication.
pub const EVENT_ID_HEADER: &str = "X-Shopfloor-Event-Id";
/// Deliveries tried before an event is given up (and shown as failed).
pub const MAX_ATTEMPTS: u32 = 10;
/// The wait after the first failed delivery; it doubles after each failure.
const FIRST_RETRY_MS: i64 = 30_000;
/// The longest wait between two deliveries.
const LONGEST_RETRY_MS: i64 = 3_600_000;

crate::text_enum! {
    /// What happened, as the `type` of an event.
    pub enum EventKind {
        /// A held output was approved or corrected and reached its caller.
        ReviewReleased => "review.released",
        /// A reviewer (or the SLA) rejected an output.
        ReviewRejected => "review.rejected",
        /// An item is past its `[review] sla_minutes`.
        ReviewOverdue => "review.overdue",
        /// A scheduled drift check alerted.
        DriftDetected => "drift.detected",
        /// A week ended: its operating review (`[monitoring] weekly_webhook`).
        WeeklyReview => "report.weekly",
    }
}

crate::text_enum! {
    /// Where an event's delivery stands.
    pub enum DeliveryState {
        /// Not delivered yet; another try is due.
        Pending => "pending",
        /// The receiver answered 2xx.
        Delivered => "delivered",
        /// Given up after [`MAX_ATTEMPTS`] tries.
        Failed => "failed",
    }
}

/// The wait before the next try after `failures` failed deliveries, or `None` when the event
/// is given up: 30 s, 1 min, 2 min, … at most an hour, [`MAX_ATTEMPTS`] tries in all (about
/// four and a half hours from the first to the last).
pub fn retry_delay_ms(failures: u32) -> Option<i64> {
    if failures == 0 || failures >= MAX_ATTEMPTS {
        return None;
    }
    let doubled = FIRST_RETRY_MS.saturating_mul(1_i64 << (failures - 1).min(20));
    Some(doubled.min(LONGEST_RETRY_MS))
}

/// The [`SIGNATURE_HEADER`] of a body sent at `timestamp` (Unix seconds): `t=TIMESTAMP,v1=HEX`,
/// HEX being HMAC-SHA256 of `"{t}.{body}"` under `secret`.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(hmac_sha256(secret, &signed_message(timestamp, body)))
    )
}

/// Why a receiver refuses a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not of the form t=UNIX_SECONDS,v1=HEX")]
    Malformed,
    #[error("the signature was made at {signed_at}, more than {tolerance_s} s from now")]
    Stale { signed_at: i64, tolerance_s: i64 },
    #[error("the signature does not match the body under this secret")]
    Mismatch,
}

/// What a receiver does with a delivery: checks that `header` signs `body` under `secret`,
/// made within `tolerance_s` of `now_s` (a replayed old delivery is refused). The comparison
/// takes the same time wherever the signatures differ.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signature = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Malformed);
    };
    if (now_s - timestamp).abs() > tolerance_s {
        return Err(SignatureError::Stale {
            signed_at: timestamp,
            tolerance_s,
        });
    }
    let expected = hmac_sha256(secret, &signed_message(timestamp, body));
    let differs = signature.len() != expected.len()
        || signature
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0;
    if differs {
        Err(SignatureError::Mismatch)
    } else {
        Ok(())
    }
}

fn signed_message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    message
}

/// HMAC-SHA256 (RFC 2104): 20 lines over the `sha2` the project already has, instead of a
/// crate for it.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_signature_is_hmac_of_timestamp_dot_body_and_verifies() {
        let header = webhook_signature(b"s", 10, b"{}");
        assert_eq!(
            header,
            format!("t=10,v1={}", hex::encode(hmac_sha256(b"s", b"10.{}")))
        );
        assert_eq!(verify_signature(b"s", &header, b"{}", 12, 300), Ok(()));
        assert_eq!(
            verify_signature(b"other", &header, b"{}", 12, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s", &header, b"{ }", 12, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_signature(b"s", &header, b"{}", 10_000, 300),
            Err(SignatureError::Stale { signed_at: 10, .. })
        ));
        assert_eq!(
            verify_signature(b"s", "v1=00", b"{}", 10, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn retries_double_up_to_an_hour_then_stop() {
        let delays: Vec<Option<i64>> = (0..=MAX_ATTEMPTS).map(retry_delay_ms).collect();
        assert_eq!(delays[0], None);
        assert_eq!(delays[1], Some(30_000));
        assert_eq!(delays[2], Some(60_000));
        assert_eq!(delays[8], Some(3_600_000));
        assert_eq!(delays[9], Some(3_600_000));
        assert_eq!(delays[10], None);
    }
}
