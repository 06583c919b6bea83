//! `[review]` of a workflow: how outputs reach a person and what the person may decide.

use serde::Serialize;

use super::reader::TableReader;

/// `[review]`: how outputs reach a person, and what the person may decide.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewSpec {
    /// Medium risk: the share of released outputs picked for review after the fact.
    pub sample_rate: f64,
    /// Any risk: an output whose confidence is lower is held until a person decides.
    pub hold_below_confidence: Option<f64>,
    /// Any risk: outputs with one of these labels are held.
    pub hold_labels: Vec<String>,
    /// How long a claimed item stays with its reviewer before others may take it.
    pub reservation_minutes: u32,
    /// The reasons a reviewer may give for rejecting an output.
    pub reasons: Vec<String>,
    /// How many different reviewers must approve a held output before it is released.
    pub approvals_required: u32,
    /// Items pending longer are overdue.
    pub sla_minutes: Option<u32>,
    /// What happens to an overdue item.
    pub on_sla: SlaAction,
    /// Where decisions are announced.
    pub webhook: Option<WebhookSpec>,
}

impl Default for ReviewSpec {
    fn default() -> Self {
        Self {
            sample_rate: 0.0,
            hold_below_confidence: None,
            hold_labels: Vec::new(),
            reservation_minutes: DEFAULT_RESERVATION_MINUTES,
            reasons: DEFAULT_REJECT_REASONS
                .iter()
                .map(|r| r.to_string())
                .collect(),
            approvals_required: 1,
            sla_minutes: None,
            on_sla: SlaAction::Escalate,
            webhook: None,
        }
    }
}

/// How long a claim holds when `[review] reservation_minutes` is not set.
pub const DEFAULT_RESERVATION_MINUTES: u32 = 10;
/// The reject reasons when `[review] reasons` is not set.
pub const DEFAULT_REJECT_REASONS: [&str; 4] = ["wrong_label", "unsafe", "hallucination", "other"];

crate::text_enum! {
    /// `[review] on_sla`: what happens to an item past its SLA.
    pub enum SlaAction {
        /// A warning and a `review.overdue` event; the item stays pending.
        Escalate => "escalate",
        /// The item is rejected with reason `sla_expired`.
        Reject => "reject",
    }
}

/// `[review] webhook = { url = "…", secret_env = "NAME" }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookSpec {
    pub url: String,
    /// The environment variable holding the signing secret (never the secret itself).
    pub secret_env: String,
}

pub(super) fn read_review(t: &TableReader<'_, '_>) -> ReviewSpec {
    let mut review = ReviewSpec::default();
    let rate = |key: &'static str| {
        let rate = t.number(key)?;
        if (0.0..=1.0).contains(&rate) {
            Some(rate)
        } else {
            t.invalid(
                key,
                format!("{rate} is not a rate; expected a number from 0 to 1"),
            );
            None
        }
    };
    review.sample_rate = rate("sample_rate").unwrap_or(0.0);
    review.hold_below_confidence = rate("hold_below_confidence");
    if let Some(labels) = t.strings("hold_labels") {
        review.hold_labels = labels.into_iter().map(|l| l.value).collect();
    }
    if let Some(minutes) = minutes(t, "reservation_minutes") {
        review.reservation_minutes = minutes;
    }
    review.sla_minutes = minutes(t, "sla_minutes");
    if let Some(reasons) = t.strings("reasons") {
        if reasons.is_empty() {
            t.invalid("reasons", "expected at least one reject reason".into());
        } else {
            review.reasons = reasons.into_iter().map(|r| r.value).collect();
        }
    }
    if let Some(n) = t.unsigned("approvals_required") {
        match u32::try_from(n) {
            Ok(n @ 1..=5) => review.approvals_required = n,
            _ => t.invalid(
                "approvals_required",
                format!("{n} is not a number of reviewers; expected 1 to 5"),
            ),
        }
    }
    if let Some(action) = t.choice("on_sla", SlaAction::CHOICES) {
        review.on_sla = action;
    }
    review.webhook = read_webhook(t, "webhook", "the URL decisions are POSTed to");
    review
}

/// The webhook table `key` of `t` (`{ url = "…", secret_env = "NAME" }`), whose URL is
/// described as `what` when it is missing.
pub(super) fn read_webhook(
    t: &TableReader<'_, '_>,
    key: &'static str,
    what: &'static str,
) -> Option<WebhookSpec> {
    t.table(key).and_then(|w| {
        let url = w.required_string("url", what);
        let secret_env = w.required_string(
            "secret_env",
            "the environment variable that holds the signing secret",
        );
        w.finish();
        Some(WebhookSpec {
            url: url?.value,
            secret_env: secret_env?.value,
        })
    })
}

/// A positive number of minutes, at most a year.
fn minutes(t: &TableReader<'_, '_>, key: &'static str) -> Option<u32> {
    let n = t.unsigned(key)?;
    match u32::try_from(n) {
        Ok(n @ 1..=525_600) => Some(n),
        _ => {
            t.invalid(
                key,
                format!("{n} is not a duration in minutes; expected 1 to 525600"),
            );
            None
        }
    }
}
