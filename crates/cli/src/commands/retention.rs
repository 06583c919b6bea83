//! `shopfloor retention`: apply `[retention]` now, every batch (`serve` does it once a minute,
//! ten batches at a time).

use std::process::ExitCode;

use shopfloor_engine::now_ms;

use super::Global;

#[derive(clap::Args)]
#[command(
    after_help = "Set in shopfloor.toml:\n\n  [retention]\n  runs_days = 400       # delete \
production runs older than this\n  keep_text_days = 90   # strip older runs' input, prompt, \
output, raw answers and error texts\n\nHeld runs (a review still waits on them), eval runs, \
reviews and the rollups behind outcomes, drift and the portfolio are kept. Each pass that \
changes anything is audited (retention.apply)."
)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let engine = global.open_engine().await?;
    let spec = engine.project.config.retention;
    let result = engine.apply_retention(now_ms(), u32::MAX).await;
    engine.close().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if spec.is_unset() {
        println!(
            "shopfloor.toml has no [retention]: nothing to do (set runs_days or keep_text_days)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(days) = spec.runs_days {
        println!("deleted {} runs older than {days} days", report.deleted);
    }
    if let Some(days) = spec.keep_text_days {
        println!(
            "stripped the texts of {} runs older than {days} days",
            report.stripped
        );
    }
    Ok(ExitCode::SUCCESS)
}
