//! `shopfloor outcomes …`: what a workflow is worth — accepted outputs, minutes saved net of
//! review time, cost per accepted output, the business KPI against its target, adoption —
//! per week and version; and `outcomes record` for the KPI as the business measures it.

use std::process::ExitCode;

use anyhow::anyhow;
use shopfloor_core::calendar::{parse_date, utc_date};
use shopfloor_engine::{Engine, NewKpiValue, OutcomeFigures, OutcomeReport};

use super::Global;

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "accepted = outputs that reached their caller and were not rejected, plus held \
outputs a reviewer approved or corrected. minutes saved = accepted × [outcome] \
minutes_saved_per_accepted − reviewers' minutes (claim to decision). cost per accepted = (model \
cost of every run, failed ones included + review hours × [outcome] reviewer_cost_per_hour) ÷ \
accepted. Eval runs are not counted."
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The workflow.
    #[arg(required = true)]
    workflow: Option<String>,
    /// Only runs from this day on (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE", value_parser = date)]
    since: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Record a value of the workflow's KPI ([outcome] kpi), as the business measured it.
    Record {
        workflow: String,
        #[arg(long, allow_negative_numbers = true)]
        value: f64,
        /// When it was measured (YYYY-MM-DD, UTC); default now.
        #[arg(long, value_name = "DATE", value_parser = date)]
        at: Option<i64>,
        #[arg(long)]
        note: Option<String>,
    },
}

fn date(text: &str) -> Result<i64, String> {
    parse_date(text)
        .ok_or_else(|| format!("\"{text}\" is not a date; expected YYYY-MM-DD, e.g. 2026-11-30"))
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let engine = global.open_engine().await?;
    let result = dispatch(&engine, args).await;
    engine.close().await;
    result
}

async fn dispatch(engine: &Engine, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(Command::Record {
        workflow,
        value,
        at,
        note,
    }) = args.command
    {
        let recorded = engine
            .record_kpi(
                &workflow,
                NewKpiValue {
                    value,
                    at_ms: at,
                    note,
                    recorded_by: super::actor(),
                },
            )
            .await?;
        println!(
            "recorded {} = {} for {} (measured {})",
            engine
                .project
                .workflow(&workflow)?
                .spec
                .outcome
                .as_ref()
                .map_or("kpi", |o| o.kpi.as_str()),
            recorded.value,
            workflow,
            utc_date(recorded.at_ms)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let workflow = args
        .workflow
        .ok_or_else(|| anyhow!("name the workflow: shopfloor outcomes WORKFLOW"))?;
    let report = engine.outcomes(&workflow, args.since).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn money(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("${v:.4}"))
}

fn rate(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

fn print_report(report: &OutcomeReport) {
    let t = &report.total;
    println!(
        "{} · {} min saved per accepted output · reviewer time at ${}/h",
        report.workflow, report.minutes_saved_per_accepted, report.reviewer_cost_per_hour
    );
    if t.runs == 0 {
        println!("no runs yet: run the workflow (shopfloor run, or the API) and its outcomes appear here");
    } else {
        print_figures("all weeks", t);
        println!(
            "\n{:<9} {:>6} {:>9} {:>9} {:>9} {:>8} {:>13} {:>10} {:>6}",
            "week",
            "runs",
            "accepted",
            "reviewed",
            "rejected",
            "accept",
            "minutes saved",
            "$/accepted",
            "users"
        );
        for w in &report.weeks {
            let f = &w.figures;
            println!(
                "{:<9} {:>6} {:>9} {:>9} {:>9} {:>8} {:>13.1} {:>10} {:>6}",
                w.week,
                f.runs,
                f.accepted,
                f.accepted_reviewed,
                f.rejected,
                rate(f.acceptance_rate),
                f.minutes_saved,
                money(f.cost_per_accepted_usd),
                w.users
            );
            if w.versions.len() > 1 {
                for v in &w.versions {
                    println!(
                        "  version {:<12} {:>6} runs · {} accepted · {}",
                        v.version,
                        v.figures.runs,
                        v.figures.accepted,
                        rate(v.figures.acceptance_rate)
                    );
                }
            }
        }
    }
    match &report.kpi {
        None => println!("\nno [outcome] table: the workflow names no KPI"),
        Some(kpi) => {
            let value = |v: Option<f64>| v.map_or("-".to_string(), |v| v.to_string());
            println!(
                "\nKPI {}: baseline {} · target {} · latest {}{}",
                kpi.name,
                value(kpi.baseline),
                value(kpi.target),
                kpi.latest.as_ref().map_or(
                    "none recorded (shopfloor outcomes record)".to_string(),
                    |l| { format!("{} ({})", l.value, utc_date(l.at_ms)) }
                ),
                match (kpi.progress, kpi.target_reached) {
                    (_, true) => " · target reached".to_string(),
                    (Some(p), false) => format!(" · {:.0}% of the way to the target", p * 100.0),
                    (None, false) => String::new(),
                }
            );
        }
    }
}

fn print_figures(label: &str, f: &OutcomeFigures) {
    println!(
        "{label}: {} runs · {} accepted ({} reviewed, {} unreviewed) · {} rejected · {} held · {} not answered",
        f.runs, f.accepted, f.accepted_reviewed, f.accepted_unreviewed, f.rejected, f.held, f.not_answered
    );
    println!(
        "  acceptance {} · minutes saved {:.1} (reviewers spent {:.1}) · model cost ${:.4} · cost per accepted {}",
        rate(f.acceptance_rate),
        f.minutes_saved,
        f.reviewer_minutes,
        f.model_cost_usd,
        money(f.cost_per_accepted_usd)
    );
}
