//! Webhook events of the review loop: what a decision or an overdue item reports, written to
//! the store's outbox with the change itself, then delivered at least once — signed
//! (`X-Shopfloor-Signature`), with the event's id for de-duplication, retried with backoff —
//! by `serve` in the background or by the CLI after a decision. The SLA sweep is here too:
//! items past `[review] sla_minutes` are escalated or rejected as `on_sla` says.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use shopfloor_core::review::{Decision, ReviewStatus};
use shopfloor_core::spec::{SlaAction, WebhookSpec};
use shopfloor_core::webhook::{
    retry_delay_ms, webhook_signature, EventKind, EVENT_ID_HEADER, SIGNATURE_HEADER,
};
use shopfloor_store::{
    DeliveryOutcome, DeliveryState, EventFilter, OutboxEvent, ReviewDecisionRecord, ReviewItem,
};

use crate::{now_ms, Engine, EngineError, SYSTEM_ACTOR};

/// How long a sender holds the events it took before another may try them.
const LEASE_MS: i64 = 60_000;
/// How long one delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Events taken per pass.
const PASS_LIMIT: u32 = 50;
/// Overdue items handled per sweep.
const SWEEP_LIMIT: u32 = 200;
/// The reject reason the SLA gives.
pub const SLA_REJECT_REASON: &str = "sla_expired";

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryPass {
    pub delivered: u32,
    /// Failed this time, tried again later.
    pub retrying: u32,
    /// Failed for the last time.
    pub given_up: u32,
}

/// What one SLA sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub escalated: u32,
    pub rejected: u32,
}

impl Engine {
    /// The events a final decision on `item` sends: `review.released` for an approval or an
    /// edit (with the released output), `review.rejected` for a reject. None while the item
    /// stays pending, or when the workflow has no webhook.
    pub(crate) fn decision_events(
        &self,
        item: &ReviewItem,
        status: ReviewStatus,
        decision: &ReviewDecisionRecord,
    ) -> Vec<OutboxEvent> {
        let kind = match status {
            ReviewStatus::Pending => return Vec::new(),
            ReviewStatus::Approved | ReviewStatus::Edited => EventKind::ReviewReleased,
            ReviewStatus::Rejected => EventKind::ReviewRejected,
        };
        let released = match kind {
            EventKind::ReviewReleased => decision
                .output
                .as_ref()
                .or(item.corrected_output.as_ref())
                .or(item.output.as_ref()),
            _ => None,
        };
        let data = json!({
            "status": status.as_str(),
            "decision": decision.decision.as_str(),
            "by": decision.reviewer,
            "reason": decision.reason,
            "note": decision.note,
            "output": released,
        });
        self.webhook(&item.workflow)
            .map(|hook| event(&hook, kind, item, data, decision.decided_at_ms))
            .into_iter()
            .collect()
    }

    /// Send the events that are due, each at most once in this pass. Safe to run on every
    /// replica at once: each event is leased to one sender.
    pub async fn deliver_due(&self) -> Result<DeliveryPass, EngineError> {
        self.deliver_due_at(now_ms()).await
    }

    /// [`Engine::deliver_due`] as of `now` (Unix ms): what is due then is sent now.
    pub async fn deliver_due_at(&self, now: i64) -> Result<DeliveryPass, EngineError> {
        let events = self
            .store
            .claim_due_events(now, now + LEASE_MS, PASS_LIMIT)
            .await?;
        let mut pass = DeliveryPass::default();
        if events.is_empty() {
            return Ok(pass);
        }
        let client = self.webhook_client()?;
        let outcomes = futures::future::join_all(events.iter().map(|e| send(client, e, now))).await;
        for (event, outcome) in events.iter().zip(outcomes) {
            if outcome.delivered {
                pass.delivered += 1;
            } else if outcome.next_attempt_at_ms.is_some() {
                pass.retrying += 1;
                tracing::warn!(
                    event_id = %event.id, workflow = %event.workflow, kind = %event.kind,
                    "webhook delivery failed, tried again later: {}",
                    outcome.error.as_deref().unwrap_or("")
                );
            } else {
                pass.given_up += 1;
                tracing::error!(
                    event_id = %event.id, workflow = %event.workflow, kind = %event.kind,
                    "webhook delivery given up after {} tries: {}",
                    event.attempts + 1,
                    outcome.error.as_deref().unwrap_or("")
                );
            }
            self.store.record_delivery(&outcome).await?;
        }
        Ok(pass)
    }

    /// The one HTTP client of webhook deliveries.
    fn webhook_client(&self) -> Result<&reqwest::Client, EngineError> {
        if let Some(client) = self.webhook_client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("shopfloor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::Webhook(format!("cannot build the HTTP client: {e}")))?;
        // Two passes at once may both build one; the first kept is the one used.
        Ok(self.webhook_client.get_or_init(|| client))
    }

    /// Act on items past their SLA: `escalate` logs a warning and sends `review.overdue`
    /// (once per item); `reject` rejects the item with reason `sla_expired` and sends
    /// `review.overdue` and `review.rejected`.
    pub async fn review_sweep(&self) -> Result<SweepReport, EngineError> {
        self.review_sweep_at(now_ms()).await
    }

    /// [`Engine::review_sweep`] as of `now` (Unix ms).
    pub async fn review_sweep_at(&self, now: i64) -> Result<SweepReport, EngineError> {
        self.flush().await;
        let mut report = SweepReport::default();
        for item in self.store.overdue_reviews(now, SWEEP_LIMIT).await? {
            let spec = self.project.workflow(&item.workflow).ok();
            let action = spec
                .as_ref()
                .map_or(SlaAction::Escalate, |w| w.spec.review.on_sla);
            let hook = self.webhook(&item.workflow);
            let overdue = hook.iter().map(|hook| {
                let data = json!({
                    "due_at_ms": item.due_at_ms,
                    "pending_minutes": (now - item.created_at_ms) / 60_000,
                    "action": action.as_str(),
                });
                event(hook, EventKind::ReviewOverdue, &item, data, now)
            });
            let overdue: Vec<OutboxEvent> = overdue.collect();
            match action {
                SlaAction::Escalate => {
                    if self
                        .store
                        .escalate_review(&item.run_id, now, &overdue)
                        .await?
                    {
                        report.escalated += 1;
                        tracing::warn!(
                            run_id = %item.run_id, workflow = %item.workflow,
                            "review item is past its SLA (due {}); escalated",
                            shopfloor_core::calendar::utc_datetime(item.due_at_ms.unwrap_or(now))
                        );
                    }
                }
                SlaAction::Reject => {
                    if self.reject_overdue(&item, overdue, now).await? {
                        report.rejected += 1;
                        tracing::warn!(
                            run_id = %item.run_id, workflow = %item.workflow,
                            "review item is past its SLA; rejected ({SLA_REJECT_REASON})"
                        );
                    }
                }
            }
        }
        Ok(report)
    }

    /// Webhook events, newest first.
    pub async fn deliveries(&self, filter: &EventFilter) -> Result<Vec<OutboxEvent>, EngineError> {
        Ok(self.store.list_events(filter).await?)
    }

    /// How many events are in each delivery state.
    pub async fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>, EngineError> {
        Ok(self.store.event_counts().await?)
    }

    async fn reject_overdue(
        &self,
        item: &ReviewItem,
        overdue: Vec<OutboxEvent>,
        now: i64,
    ) -> Result<bool, EngineError> {
        let minutes = self
            .project
            .workflow(&item.workflow)
            .ok()
            .and_then(|w| w.spec.review.sla_minutes);
        let record = ReviewDecisionRecord {
            run_id: item.run_id.clone(),
            reviewer: SYSTEM_ACTOR.to_string(),
            decision: Decision::Reject,
            output: None,
            reason: Some(SLA_REJECT_REASON.to_string()),
            note: minutes.map(|m| format!("not decided within the SLA of {m} minutes")),
            claimed_at_ms: None,
            decided_at_ms: now,
        };
        self.record_decision(item, record, ReviewStatus::Rejected, overdue)
            .await
    }

    pub(crate) fn webhook(&self, workflow: &str) -> Option<WebhookSpec> {
        self.project
            .workflow(workflow)
            .ok()
            .and_then(|w| w.spec.review.webhook.clone())
    }
}

/// A new event about `item`, its body fixed now (every retry sends and signs the same bytes).
fn event(
    hook: &WebhookSpec,
    kind: EventKind,
    item: &ReviewItem,
    data: Value,
    now: i64,
) -> OutboxEvent {
    let id = format!("evt_{}", uuid::Uuid::now_v7().simple());
    let about = About {
        workflow: &item.workflow,
        version: &item.version,
        run_id: Some(&item.run_id),
    };
    event_about(hook, id, kind, about, data, now)
}

/// What an event is about.
pub(crate) struct About<'a> {
    pub workflow: &'a str,
    pub version: &'a str,
    pub run_id: Option<&'a str>,
}

/// An event with its id and body fixed now.
pub(crate) fn event_about(
    hook: &WebhookSpec,
    id: String,
    kind: EventKind,
    about: About<'_>,
    data: Value,
    now: i64,
) -> OutboxEvent {
    let body = json!({
        "id": id,
        "type": kind.as_str(),
        "created_at_ms": now,
        "workflow": about.workflow,
        "version": about.version,
        "run_id": about.run_id,
        "data": data,
    });
    OutboxEvent::due_now(
        id,
        kind,
        about.workflow,
        about.run_id,
        hook,
        body.to_string(),
        now,
    )
}

/// One try of `event` at `now`; the outcome says when to try again.
async fn send(client: &reqwest::Client, event: &OutboxEvent, now: i64) -> DeliveryOutcome {
    let result = match std::env::var(&event.secret_env) {
        Ok(secret) if !secret.is_empty() => {
            let signature =
                webhook_signature(secret.as_bytes(), now_ms() / 1000, event.body.as_bytes());
            client
                .post(&event.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(EVENT_ID_HEADER, &event.id)
                .header(SIGNATURE_HEADER, signature)
                .body(event.body.clone())
                .send()
                .await
                .map_err(|e| (None, e.without_url().to_string()))
                .and_then(|response| {
                    let status = response.status();
                    if status.is_success() {
                        Ok(status.as_u16())
                    } else {
                        Err((
                            Some(status.as_u16()),
                            format!("the receiver answered {status}"),
                        ))
                    }
                })
        }
        _ => Err((
            None,
            format!(
                "the signing secret's variable {} is not set; set it where shopfloor runs",
                event.secret_env
            ),
        )),
    };
    let at_ms = now;
    match result {
        Ok(status) => DeliveryOutcome {
            id: event.id.clone(),
            at_ms,
            delivered: true,
            status: Some(status),
            error: None,
            next_attempt_at_ms: None,
        },
        Err((status, error)) => DeliveryOutcome {
            id: event.id.clone(),
            at_ms,
            delivered: false,
            status,
            error: Some(error),
            next_attempt_at_ms: retry_delay_ms(event.attempts + 1).map(|d| at_ms + d),
        },
    }
}
