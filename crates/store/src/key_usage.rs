//! What each API key used, per UTC minute, day and month (`key_usage`): tokens and cost are
//! added in the transaction that records the runs, so the spend a limit is checked against is
//! never behind what is recorded; requests are taken one by one as they are admitted, with
//! the limit in the statement, so replicas sharing the database cannot both take the last.

use std::collections::HashMap;

use async_trait::async_trait;
use shopfloor_core::limits::{KeyUsage, Window};

use crate::{Result, RunRecord};

/// Minute rows are kept this long, then deleted as newer ones are written.
pub(crate) const MINUTE_ROWS_KEPT_MS: i64 = 60 * 60 * 1000;

/// One key's tokens and cost in one window, to add.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UsageRow<'a> {
    pub key_id: &'a str,
    pub span: &'static str,
    pub starts_at_ms: i64,
    pub tokens: i64,
    pub cost_usd: f64,
}

/// The usage of recorded runs that a key made, summed per key and window.
pub(crate) fn usage_rows<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> Vec<UsageRow<'a>> {
    let mut sums: HashMap<(&'a str, Window, i64), (i64, f64)> = HashMap::new();
    for run in runs {
        let Some(caller) = &run.caller else { continue };
        let tokens = i64::try_from(run.prompt_tokens.saturating_add(run.completion_tokens))
            .unwrap_or(i64::MAX);
        for window in Window::ALL {
            let sum = sums
                .entry((
                    caller.key_id.as_str(),
                    window,
                    window.start(run.created_at_ms),
                ))
                .or_default();
            sum.0 = sum.0.saturating_add(tokens);
            sum.1 += run.cost_usd;
        }
    }
    let mut rows: Vec<UsageRow<'a>> = sums
        .into_iter()
        .map(
            |((key_id, window, starts_at_ms), (tokens, cost_usd))| UsageRow {
                key_id,
                span: window.as_str(),
                starts_at_ms,
                tokens,
                cost_usd,
            },
        )
        .collect();
    // A fixed order, so that concurrent flushes take row locks in the same order.
    rows.sort_by(|a, b| {
        (a.key_id, a.span, a.starts_at_ms).cmp(&(b.key_id, b.span, b.starts_at_ms))
    });
    rows
}

/// Fold `(span, requests, tokens, cost)` rows of the windows that hold now into a usage.
pub(crate) fn fold(usage: &mut KeyUsage, span: &str, requests: i64, tokens: i64, cost: f64) {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    match Window::parse(span) {
        Some(Window::Minute) => {
            usage.minute_requests = count(requests);
            usage.minute_tokens = count(tokens);
        }
        Some(Window::Day) => usage.day_cost_usd = cost,
        Some(Window::Month) => usage.month_cost_usd = cost,
        None => {}
    }
}

/// The key-usage part of the store.
#[async_trait]
pub trait KeyUsageStore {
    /// Take one of the `rpm` requests of `key_id`'s minute that starts at `minute_ms`: false
    /// when all are taken.
    async fn take_request(&self, key_id: &str, minute_ms: i64, rpm: u64) -> Result<bool>;

    /// What `key_id` used in the minute, day and month that hold `now_ms`.
    async fn key_usage(&self, key_id: &str, now_ms: i64) -> Result<KeyUsage>;

    /// The same for every key that used anything in them, by key id.
    async fn all_key_usage(&self, now_ms: i64) -> Result<HashMap<String, KeyUsage>>;
}

/// `impl KeyUsageStore for $store` over `$db`, and `add_key_usage`, which the run writer
/// calls in its transaction.
macro_rules! key_usage_store_impl {
    ($store:ty, $db:ty) => {
        /// Add the usage of the `inserted` ones of `runs` to their keys' windows, and delete
        /// those keys' minute rows that are past keeping.
        async fn add_key_usage(
            tx: &mut <$db as sqlx::Database>::Connection,
            runs: &[$crate::RunRecord],
            inserted: &::std::collections::HashSet<String>,
        ) -> $crate::Result<()> {
            use $crate::key_usage::{usage_rows, MINUTE_ROWS_KEPT_MS};
            let rows = usage_rows(runs.iter().filter(|r| inserted.contains(&r.id)));
            for row in &rows {
                sqlx::query::<$db>(
                    "INSERT INTO key_usage (key_id, span, starts_at_ms, tokens, cost_usd) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id, span, starts_at_ms) \
                     DO UPDATE SET tokens = key_usage.tokens + $4, \
                     cost_usd = key_usage.cost_usd + $5",
                )
                .bind(row.key_id)
                .bind(row.span)
                .bind(row.starts_at_ms)
                .bind(row.tokens)
                .bind(row.cost_usd)
                .execute(&mut *tx)
                .await?;
            }
            let mut minutes: Vec<(&str, i64)> = rows
                .iter()
                .filter(|r| r.span == "minute")
                .map(|r| (r.key_id, r.starts_at_ms))
                .collect();
            minutes.dedup_by_key(|(key, _)| *key);
            for (key_id, minute) in minutes {
                sqlx::query::<$db>(
                    "DELETE FROM key_usage WHERE key_id = $1 AND span = 'minute' \
                     AND starts_at_ms < $2",
                )
                .bind(key_id)
                .bind(minute - MINUTE_ROWS_KEPT_MS)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        }

        #[::async_trait::async_trait]
        impl $crate::key_usage::KeyUsageStore for $store {
            async fn take_request(
                &self,
                key_id: &str,
                minute_ms: i64,
                rpm: u64,
            ) -> $crate::Result<bool> {
                let rpm = i64::try_from(rpm).unwrap_or(i64::MAX);
                if rpm < 1 {
                    return Ok(false);
                }
                let taken = sqlx::query::<$db>(
                    "INSERT INTO key_usage (key_id, span, starts_at_ms, requests) \
                     VALUES ($1, 'minute', $2, 1) ON CONFLICT (key_id, span, starts_at_ms) \
                     DO UPDATE SET requests = key_usage.requests + 1 \
                     WHERE key_usage.requests < $3",
                )
                .bind(key_id)
                .bind(minute_ms)
                .bind(rpm)
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(taken == 1)
            }

            async fn key_usage(
                &self,
                key_id: &str,
                now_ms: i64,
            ) -> $crate::Result<::shopfloor_core::limits::KeyUsage> {
                use ::shopfloor_core::limits::{KeyUsage, Window};
                use $crate::codec::Columns;
                let rows = sqlx::query::<$db>(
                    "SELECT span, requests, tokens, cost_usd FROM key_usage WHERE key_id = $1 \
                     AND ((span = 'minute' AND starts_at_ms = $2) \
                     OR (span = 'day' AND starts_at_ms = $3) \
                     OR (span = 'month' AND starts_at_ms = $4))",
                )
                .bind(key_id)
                .bind(Window::Minute.start(now_ms))
                .bind(Window::Day.start(now_ms))
                .bind(Window::Month.start(now_ms))
                .fetch_all(self.reader())
                .await?;
                let mut usage = KeyUsage::default();
                for row in &rows {
                    $crate::key_usage::fold(
                        &mut usage,
                        &row.text("span")?,
                        row.int("requests")?,
                        row.int("tokens")?,
                        row.float("cost_usd")?,
                    );
                }
                Ok(usage)
            }

            async fn all_key_usage(
                &self,
                now_ms: i64,
            ) -> $crate::Result<
                ::std::collections::HashMap<String, ::shopfloor_core::limits::KeyUsage>,
            > {
                use ::shopfloor_core::limits::Window;
                use $crate::codec::Columns;
                let rows = sqlx::query::<$db>(
                    "SELECT key_id, span, requests, tokens, cost_usd FROM key_usage \
                     WHERE (span = 'minute' AND starts_at_ms = $1) \
                     OR (span = 'day' AND starts_at_ms = $2) \
                     OR (span = 'month' AND starts_at_ms = $3)",
                )
                .bind(Window::Minute.start(now_ms))
                .bind(Window::Day.start(now_ms))
                .bind(Window::Month.start(now_ms))
                .fetch_all(self.reader())
                .await?;
                let mut all = ::std::collections::HashMap::new();
                for row in &rows {
                    $crate::key_usage::fold(
                        all.entry(row.text("key_id")?).or_default(),
                        &row.text("span")?,
                        row.int("requests")?,
                        row.int("tokens")?,
                        row.float("cost_usd")?,
                    );
                }
                Ok(all)
            }
        }
    };
}

pub(crate) use key_usage_store_impl;
