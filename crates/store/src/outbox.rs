//! The webhook outbox: each event is a row written in the transaction of the change it
//! reports (a review decision, an escalation), so an event exists exactly when its change
//! does and a restart loses none. Senders lease due rows (`claimed_until_ms`; PostgreSQL skips
//! rows another replica is leasing), try them, and record the outcome with the next try's time.

use async_trait::async_trait;
use serde::Serialize;
pub use shopfloor_core::webhook::{DeliveryState, EventKind};

use crate::Result;

/// Columns of `outbox`, in [`event_from_row`] order.
pub(crate) const OUTBOX_COLUMNS: &str = "id, kind, workflow, run_id, url, secret_env, body, \
     created_at_ms, attempts, next_attempt_at_ms, delivered_at_ms, last_status, last_error";
/// Events listed when the filter sets no limit.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// One event to deliver, and how its delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEvent {
    /// Also the `X-Shopfloor-Event-Id` of every delivery.
    pub id: String,
    pub kind: EventKind,
    pub workflow: String,
    pub run_id: Option<String>,
    pub url: String,
    /// The environment variable with the signing secret, read when sending.
    pub secret_env: String,
    /// The JSON body exactly as it is sent and signed.
    pub body: String,
    pub created_at_ms: i64,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// When the next try is due; `None` once delivered or given up.
    pub next_attempt_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    /// The receiver's HTTP status on the last try, if it answered.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

impl OutboxEvent {
    /// A new event, due at once.
    pub fn due_now(
        id: String,
        kind: EventKind,
        workflow: &str,
        run_id: Option<&str>,
        webhook: &shopfloor_core::spec::WebhookSpec,
        body: String,
        now_ms: i64,
    ) -> Self {
        Self {
            id,
            kind,
            workflow: workflow.to_string(),
            run_id: run_id.map(str::to_string),
            url: webhook.url.clone(),
            secret_env: webhook.secret_env.clone(),
            body,
            created_at_ms: now_ms,
            attempts: 0,
            next_attempt_at_ms: Some(now_ms),
            delivered_at_ms: None,
            last_status: None,
            last_error: None,
        }
    }

    pub fn state(&self) -> DeliveryState {
        match (self.delivered_at_ms, self.next_attempt_at_ms) {
            (Some(_), _) => DeliveryState::Delivered,
            (None, Some(_)) => DeliveryState::Pending,
            (None, None) => DeliveryState::Failed,
        }
    }
}

/// The outcome of one try.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOutcome {
    pub id: String,
    pub at_ms: i64,
    pub delivered: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// When to try again; `None` when delivered or given up.
    pub next_attempt_at_ms: Option<i64>,
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub state: Option<DeliveryState>,
    pub workflow: Option<String>,
    /// Newest first, at most this many (default 100).
    pub limit: Option<u32>,
}

/// The outbox's part of the store.
#[async_trait]
pub trait OutboxStore {
    /// Add events, due at their `next_attempt_at_ms`.
    async fn enqueue_events(&self, events: &[OutboxEvent]) -> Result<()>;

    /// Lease up to `limit` events due at `now_ms` until `until_ms`, oldest due first. An event
    /// leased by another sender is not handed out until its lease ends.
    async fn claim_due_events(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>>;

    /// Record a try and end its lease.
    async fn record_delivery(&self, outcome: &DeliveryOutcome) -> Result<()>;

    /// Events newest first.
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<OutboxEvent>>;

    /// How many events are in each state.
    async fn event_counts(&self) -> Result<Vec<(DeliveryState, u64)>>;

    /// Whether an event with this id was ever queued, whatever became of it.
    async fn has_event(&self, id: &str) -> Result<bool>;
}

/// An event from a row of [`OUTBOX_COLUMNS`].
pub(crate) fn event_from_row(row: &impl crate::codec::Columns) -> Result<OutboxEvent> {
    use crate::codec::{enumeration, unsigned};
    const T: &str = "outbox";
    let corrupt = |column: &'static str, n: i64| crate::StoreError::Corrupt {
        table: T,
        column,
        message: format!("{n} is out of range"),
    };
    let attempts = unsigned(row, T, "attempts")?;
    Ok(OutboxEvent {
        id: row.text("id")?,
        kind: enumeration(row, T, "kind", EventKind::parse)?,
        workflow: row.text("workflow")?,
        run_id: row.opt_text("run_id")?,
        url: row.text("url")?,
        secret_env: row.text("secret_env")?,
        body: row.text("body")?,
        created_at_ms: row.int("created_at_ms")?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts", attempts as i64))?,
        next_attempt_at_ms: row.opt_int("next_attempt_at_ms")?,
        delivered_at_ms: row.opt_int("delivered_at_ms")?,
        last_status: row
            .opt_int("last_status")?
            .map(|s| u16::try_from(s).map_err(|_| corrupt("last_status", s)))
            .transpose()?,
        last_error: row.opt_text("last_error")?,
    })
}

/// The SQL condition of a delivery state.
fn state_condition(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Delivered => "delivered_at_ms IS NOT NULL",
        DeliveryState::Pending => "delivered_at_ms IS NULL AND next_attempt_at_ms IS NOT NULL",
        DeliveryState::Failed => "delivered_at_ms IS NULL AND next_attempt_at_ms IS NULL",
    }
}

/// The list query of `filter` and its binds.
pub(crate) fn list_query(filter: &EventFilter) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    if let Some(state) = filter.state {
        conditions.push(state_condition(state).to_string());
    }
    if let Some(workflow) = &filter.workflow {
        binds.push(workflow.clone());
        conditions.push(format!("workflow = ${}", binds.len()));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (
        format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox {clause} \
             ORDER BY created_at_ms DESC, id DESC LIMIT {}",
            filter.limit.unwrap_or(DEFAULT_LIST_LIMIT)
        ),
        binds,
    )
}

/// The count query: one row per state that has events.
pub(crate) fn counts_query() -> String {
    let case = DeliveryState::ALL
        .iter()
        .map(|s| format!("WHEN {} THEN '{}'", state_condition(*s), s.as_str()))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "SELECT state, COUNT(*) AS n FROM (SELECT CASE {case} END AS state FROM outbox) s \
         GROUP BY state"
    )
}

/// `impl OutboxStore for $store` over `$db`; `$lock` is what the claim's inner select adds.
/// Also defines `insert_outbox_rows`, which other writers call inside their transaction.
macro_rules! outbox_store_impl {
    ($store:ty, $db:ty, $lock:literal) => {
        /// Insert `events` in the transaction `tx`; an id already there is kept as it is.
        async fn insert_outbox_rows(
            tx: &mut <$db as sqlx::Database>::Connection,
            events: &[$crate::outbox::OutboxEvent],
        ) -> $crate::Result<()> {
            for event in events {
                sqlx::query::<$db>(&format!(
                    "INSERT INTO outbox ({}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (id) DO NOTHING",
                    $crate::outbox::OUTBOX_COLUMNS
                ))
                .bind(&event.id)
                .bind(event.kind.as_str())
                .bind(&event.workflow)
                .bind(&event.run_id)
                .bind(&event.url)
                .bind(&event.secret_env)
                .bind(&event.body)
                .bind(event.created_at_ms)
                .bind(i64::from(event.attempts))
                .bind(event.next_attempt_at_ms)
                .bind(event.delivered_at_ms)
                .bind(event.last_status.map(i64::from))
                .bind(&event.last_error)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        }

        #[::async_trait::async_trait]
        impl $crate::outbox::OutboxStore for $store {
            async fn enqueue_events(
                &self,
                events: &[$crate::outbox::OutboxEvent],
            ) -> $crate::Result<()> {
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                insert_outbox_rows(&mut *tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_due_events(
                &self,
                now_ms: i64,
                until_ms: i64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::outbox::OutboxEvent>> {
                let sql = format!(
                    "UPDATE outbox SET claimed_until_ms = $2 \
                     WHERE id IN (SELECT id FROM outbox WHERE next_attempt_at_ms <= $1 \
                                  AND (claimed_until_ms IS NULL OR claimed_until_ms <= $1) \
                                  ORDER BY next_attempt_at_ms, id LIMIT $3 {}) \
                     RETURNING {}",
                    $lock,
                    $crate::outbox::OUTBOX_COLUMNS
                );
                let mut tx = self.begin_write($crate::queries::TxLock::Rows).await?;
                let rows = sqlx::query::<$db>(&sql)
                    .bind(now_ms)
                    .bind(until_ms)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let mut events = rows
                    .iter()
                    .map($crate::outbox::event_from_row)
                    .collect::<$crate::Result<Vec<_>>>()?;
                events.sort_by(|a, b| {
                    (a.next_attempt_at_ms, &a.id).cmp(&(b.next_attempt_at_ms, &b.id))
                });
                Ok(events)
            }

            async fn record_delivery(
                &self,
                outcome: &$crate::outbox::DeliveryOutcome,
            ) -> $crate::Result<()> {
                sqlx::query::<$db>(
                    "UPDATE outbox SET attempts = attempts + 1, claimed_until_ms = NULL, \
                     delivered_at_ms = $1, next_attempt_at_ms = $2, last_status = $3, \
                     last_error = $4 WHERE id = $5",
                )
                .bind(outcome.delivered.then_some(outcome.at_ms))
                .bind(outcome.next_attempt_at_ms)
                .bind(outcome.status.map(i64::from))
                .bind(&outcome.error)
                .bind(&outcome.id)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn list_events(
                &self,
                filter: &$crate::outbox::EventFilter,
            ) -> $crate::Result<Vec<$crate::outbox::OutboxEvent>> {
                let (sql, binds) = $crate::outbox::list_query(filter);
                $crate::codec::fetch_with_text_binds!(
                    $db,
                    self.reader(),
                    &sql,
                    &binds,
                    $crate::outbox::event_from_row
                )
            }

            async fn has_event(&self, id: &str) -> $crate::Result<bool> {
                let found =
                    sqlx::query_scalar::<$db, i64>("SELECT COUNT(*) FROM outbox WHERE id = $1")
                        .bind(id)
                        .fetch_one(self.reader())
                        .await?;
                Ok(found > 0)
            }

            async fn event_counts(
                &self,
            ) -> $crate::Result<Vec<($crate::outbox::DeliveryState, u64)>> {
                use $crate::codec::Columns;
                let rows = sqlx::query::<$db>(&$crate::outbox::counts_query())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| {
                        let state = $crate::codec::enumeration(
                            row,
                            "outbox",
                            "state",
                            $crate::outbox::DeliveryState::parse,
                        )?;
                        let n = $crate::codec::non_negative("outbox", "n", row.int("n")?)?;
                        Ok((state, n))
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use outbox_store_impl;
