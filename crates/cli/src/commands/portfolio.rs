//! `shopfloor portfolio`: every workflow on one page — owner, stage, last eval, this week's use
//! and acceptance against last week's, minutes saved, cost per accepted output, KPI progress —
//! with health flags and a suggestion: keep, fix or cut.

use std::process::ExitCode;

use shopfloor_engine::PortfolioEntry;

use super::Global;

#[derive(clap::Args)]
#[command(
    after_help = "This week = the last 7 days; last week = the 7 before. Flags: no owner; no \
eval set or fewer than 30 cases; last gate failed; in pilot more than 90 days; no runs in 14 \
days; acceptance falling (two-proportion z-test, p < 0.05); cost per accepted up more than 20%; \
review items past their SLA. Cut: a long pilot whose KPI is not moving, or a pilot nobody uses; \
fix: any other flag; keep: none."
)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let engine = global.open_engine().await?;
    let result = engine.portfolio().await;
    engine.close().await;
    let entries = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else {
        print_entries(&entries);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_entries(entries: &[PortfolioEntry]) {
    if entries.is_empty() {
        println!("no workflows: add one under workflows/ (see `shopfloor init`)");
        return;
    }
    let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0));
    println!(
        "{:<22} {:<10} {:<26} {:>7} {:>8} {:>9} {:>9} {:>10} {:>6}  suggestion",
        "workflow",
        "stage",
        "owner",
        "runs 7d",
        "accept",
        "(before)",
        "min saved",
        "$/accepted",
        "KPI"
    );
    for e in entries {
        let stage = match e.days_in_stage {
            Some(days) => format!("{} {days}d", e.stage.as_str()),
            None => e.stage.as_str().to_string(),
        };
        println!(
            "{:<22} {:<10} {:<26} {:>7} {:>8} {:>9} {:>9.0} {:>10} {:>6}  {}",
            e.workflow,
            stage,
            e.owner.as_deref().unwrap_or("NONE"),
            e.this_week.runs,
            rate(e.this_week.acceptance_rate),
            rate(e.last_week.acceptance_rate),
            e.this_week.minutes_saved,
            e.this_week
                .cost_per_accepted_usd
                .map_or("-".to_string(), |c| format!("${c:.4}")),
            e.kpi
                .as_ref()
                .and_then(|k| k.progress)
                .map_or("-".to_string(), |p| format!("{:.0}%", p * 100.0)),
            e.suggestion.as_str().to_uppercase()
        );
        for reason in &e.reasons {
            println!("    - {reason}");
        }
    }
}
