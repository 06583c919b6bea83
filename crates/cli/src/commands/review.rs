//! `shopfloor review …`: the review queue from a terminal — the same engine calls as
//! `/v1/reviews`. The reviewer is `SHOPFLOOR_ACTOR`, else the login name.

use std::process::ExitCode;

use anyhow::anyhow;
use serde_json::Value;
use shopfloor_core::review::ReviewStatus;
use shopfloor_engine::store_types::{
    DeliveryState, EventFilter, OutboxEvent, ReviewFilter, ReviewItem,
};
use shopfloor_engine::{DecisionRequest, Engine, ReviewView, Reviewer};

use super::{format_time, Global};

#[derive(clap::Subcommand)]
#[command(
    after_help = "Items are addressed by their run id. High-risk outputs, outputs with a \
[review] hold_labels label and outputs below hold_below_confidence wait here until approved; \
medium-risk outputs sampled at sample_rate were released and wait for a look after. Every \
decision is written to the audit log."
)]
pub enum Command {
    /// Items of the queue, oldest first.
    List {
        #[arg(long, value_name = "W")]
        workflow: Option<String>,
        /// pending, approved, edited, rejected or all.
        #[arg(long, default_value = "pending", value_name = "STATUS")]
        status: String,
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Claim the oldest pending item for you (for the workflow's reservation_minutes) and show it.
    Next {
        #[arg(long, value_name = "W")]
        workflow: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One item: input, output, confidence, decisions so far.
    Show {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Release the output as the model wrote it.
    Approve {
        run_id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Release a corrected output (checked against the workflow's output contract).
    Edit {
        run_id: String,
        /// The correction: a label, JSON, or text.
        #[arg(long, value_name = "VALUE")]
        output: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Do not release the output.
    Reject {
        run_id: String,
        /// One of the workflow's [review] reasons (default: wrong_label, unsafe,
        /// hallucination, other).
        #[arg(long, value_name = "CODE")]
        reason: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Backlog, overdue items, decisions, acceptance and edit rates, time per reviewer,
    /// agreement between reviewers.
    Stats {
        #[arg(long, value_name = "W")]
        workflow: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Webhook events ([review] webhook) and how their delivery stands, newest first.
    Deliveries {
        #[arg(long, value_name = "W")]
        workflow: Option<String>,
        /// pending, delivered, failed or all.
        #[arg(long, default_value = "all", value_name = "STATE")]
        state: String,
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Apply each workflow's SLA once (on_sla: escalate or reject items past sla_minutes) and
    /// send the webhook events that are due. `shopfloor serve` does this continuously; run
    /// this from a scheduler where no server runs.
    Sweep,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let engine = global.open_engine().await?;
    let result = dispatch(&engine, command).await;
    engine.close().await;
    result
}

fn reviewer() -> Reviewer {
    Reviewer {
        name: super::actor(),
        key_id: None,
    }
}

async fn dispatch(engine: &Engine, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List {
            workflow,
            status,
            limit,
            json,
        } => {
            let status = one_or_all(
                "status",
                &status,
                ReviewStatus::parse,
                ReviewStatus::expected(),
            )?;
            let items = engine
                .reviews(&ReviewFilter {
                    workflow,
                    status,
                    limit: Some(limit),
                })
                .await?;
            print_list(&items, json);
        }
        Command::Next { workflow, json } => {
            match engine.review_next(workflow.as_deref(), &reviewer()).await? {
                Some(view) => print_view(&view, json),
                None if json => println!("null"),
                None => println!("nothing to review: the queue has no pending item you may decide"),
            }
        }
        Command::Show { run_id, json } => print_view(&engine.review_show(&run_id).await?, json),
        Command::Approve { run_id, note } => {
            let item = engine
                .review_decide(&run_id, &reviewer(), DecisionRequest::Approve { note })
                .await?;
            print_decided(&item);
            deliver(engine).await?;
        }
        Command::Edit {
            run_id,
            output,
            note,
        } => {
            // JSON when it parses as JSON, else the text itself (a label, free text).
            let output = serde_json::from_str(&output).unwrap_or(Value::String(output));
            let item = engine
                .review_decide(&run_id, &reviewer(), DecisionRequest::Edit { output, note })
                .await?;
            print_decided(&item);
            deliver(engine).await?;
        }
        Command::Reject {
            run_id,
            reason,
            note,
        } => {
            let item = engine
                .review_decide(
                    &run_id,
                    &reviewer(),
                    DecisionRequest::Reject { reason, note },
                )
                .await?;
            print_decided(&item);
            deliver(engine).await?;
        }
        Command::Deliveries {
            workflow,
            state,
            limit,
            json,
        } => {
            let state = one_or_all(
                "state",
                &state,
                DeliveryState::parse,
                DeliveryState::expected(),
            )?;
            let events = engine
                .deliveries(&EventFilter {
                    state,
                    workflow,
                    limit: Some(limit),
                })
                .await?;
            print_deliveries(&events, json);
        }
        Command::Sweep => {
            let report = engine.review_sweep().await?;
            println!(
                "SLA: {} item(s) escalated, {} rejected",
                report.escalated, report.rejected
            );
            deliver(engine).await?;
        }
        Command::Stats { workflow, json } => {
            let stats = engine.review_stats(workflow.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_stats(&stats);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `all` as `None`, else the value `parse` reads from `text`, refused naming what was expected.
fn one_or_all<T>(
    what: &str,
    text: &str,
    parse: fn(&str) -> Option<T>,
    expected: String,
) -> anyhow::Result<Option<T>> {
    match text {
        "all" => Ok(None),
        other => parse(other)
            .map(Some)
            .ok_or_else(|| anyhow!("unknown {what} \"{other}\"; expected one of: {expected}, all")),
    }
}

/// Send the webhook events a decision (or the sweep) wrote, once; what fails stays in the
/// outbox for `serve` or the next `review sweep`.
async fn deliver(engine: &Engine) -> anyhow::Result<()> {
    let pass = engine.deliver_due().await?;
    if pass.delivered > 0 {
        println!("webhook: {} event(s) delivered", pass.delivered);
    }
    if pass.retrying + pass.given_up > 0 {
        eprintln!(
            "warning: webhook: {} event(s) not delivered; see `shopfloor review deliveries`",
            pass.retrying + pass.given_up
        );
    }
    Ok(())
}

fn print_deliveries(events: &[OutboxEvent], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(events).unwrap_or_default()
        );
        return;
    }
    if events.is_empty() {
        println!("no webhook events (set [review] webhook = {{ url = \"…\", secret_env = \"NAME\" }} in a workflow)");
        return;
    }
    println!(
        "{:<36} {:<16} {:<20} {:<9} {:>5}  last",
        "event", "type", "workflow", "state", "tries"
    );
    for e in events {
        let last = match (e.delivered_at_ms, &e.last_error, e.next_attempt_at_ms) {
            (Some(at), _, _) => format!(
                "delivered {} (HTTP {})",
                format_time(at),
                e.last_status.map_or("-".to_string(), |s| s.to_string())
            ),
            (None, Some(error), Some(next)) => format!("{error}; next try {}", format_time(next)),
            (None, Some(error), None) => format!("{error}; given up"),
            (None, None, Some(next)) => format!("due {}", format_time(next)),
            (None, None, None) => "-".to_string(),
        };
        println!(
            "{:<36} {:<16} {:<20} {:<9} {:>5}  {last}",
            e.id,
            e.kind.as_str(),
            e.workflow,
            e.state().as_str(),
            e.attempts
        );
    }
}

fn print_list(items: &[ReviewItem], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
        return;
    }
    if items.is_empty() {
        println!("no review items (high-risk, held-label and low-confidence outputs, and sampled medium-risk ones, arrive here)");
        return;
    }
    let now = shopfloor_engine::now_ms();
    println!(
        "{:<36}  {:<20} {:<9} {:<15} {:<19} claimed by",
        "run", "workflow", "status", "reason", "since"
    );
    for item in items {
        println!(
            "{:<36}  {:<20} {:<9} {:<15} {:<19} {}{}",
            item.run_id,
            item.workflow,
            item.status.as_str(),
            item.reason.as_str(),
            format_time(item.created_at_ms),
            item.holder(now).unwrap_or("-"),
            match (item.overdue(now), item.escalated_at_ms) {
                (true, Some(_)) => "  OVERDUE (escalated)",
                (true, None) => "  OVERDUE",
                _ => "",
            }
        );
    }
}

fn print_view(view: &ReviewView, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(view).unwrap_or_default());
        return;
    }
    let (item, run) = (&view.item, &view.run);
    println!(
        "run {} · {} version {} · {} ({})",
        item.run_id,
        item.workflow,
        item.version,
        item.status.as_str(),
        item.reason.as_str()
    );
    println!("  input:      {}", run.input);
    println!(
        "  output:     {}",
        item.output
            .as_ref()
            .map_or("-".to_string(), Value::to_string)
    );
    if let Some(corrected) = &item.corrected_output {
        println!("  corrected:  {corrected}");
    }
    if let Some(confidence) = run.confidence {
        println!("  confidence: {confidence:.3}");
    }
    if let Some(error) = &run.error {
        println!("  note:       {error}");
    }
    println!(
        "  approvals:  {} of {} needed",
        view.decisions
            .iter()
            .filter(|d| d.decision != shopfloor_core::review::Decision::Reject)
            .count(),
        item.approvals_required
    );
    for d in &view.decisions {
        println!(
            "  {} {} by {}{}{}",
            format_time(d.decided_at_ms),
            d.decision.as_str(),
            d.reviewer,
            d.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            d.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
    }
}

fn print_decided(item: &ReviewItem) {
    let what = match item.status {
        ReviewStatus::Pending => format!(
            "recorded; {} of {} approvals so far, the output stays held",
            item.decisions, item.approvals_required
        ),
        ReviewStatus::Approved => "approved: the output is released".to_string(),
        ReviewStatus::Edited => "edited: the correction is released".to_string(),
        ReviewStatus::Rejected => "rejected: the output is not released".to_string(),
    };
    println!("{} {what}", item.run_id);
}

fn print_stats(s: &shopfloor_engine::ReviewStats) {
    let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    println!(
        "pending {} (overdue {}) · oldest {}",
        s.pending,
        s.overdue,
        s.oldest_pending_minutes
            .map_or("-".to_string(), |m| format!("{m:.0} min"))
    );
    println!(
        "decided: {} approved · {} edited · {} rejected · acceptance {} · edit rate {}",
        s.approved,
        s.edited,
        s.rejected,
        rate(s.acceptance_rate),
        rate(s.edit_rate)
    );
    for (reason, n) in &s.reasons {
        println!("  reject reason {reason}: {n}");
    }
    let minutes = |m: Option<f64>| m.map_or("-".to_string(), |m| format!("{m:.1}"));
    for r in &s.reviewers {
        println!(
            "  {:<24} {} decision(s) · claim→decision p50 {} min · p95 {} min",
            r.reviewer,
            r.decisions,
            minutes(r.p50_minutes),
            minutes(r.p95_minutes)
        );
    }
    match s.agreement_kappa {
        Some(kappa) => println!(
            "agreement: Cohen's κ {kappa:.2} over {} item(s) two reviewers decided",
            s.agreement_items
        ),
        None => println!("agreement: no item decided by two reviewers yet"),
    }
}
