//! `shopfloor report weekly`: the Friday operating review for owners and leadership, as
//! Markdown or as one self-contained HTML page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use shopfloor_core::calendar::iso_week;

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// What changed, each workflow this week against last with keep / fix / cut, wins, risks.
    Weekly {
        /// The ISO week, e.g. 2026-W49; default: this week (UTC).
        #[arg(long, value_name = "YYYY-Www")]
        week: Option<String>,
        /// md or html (one page, charts as inline SVG).
        #[arg(long, default_value = "md", value_parser = ["md", "html"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Weekly {
        week,
        format,
        output,
    } = command;
    let engine = global.open_engine().await?;
    let week = week.unwrap_or_else(|| iso_week(shopfloor_engine::now_ms()));
    let report = engine.weekly_report(&week).await;
    engine.close().await;
    let report = report?;
    let text = match format.as_str() {
        "html" => report.to_html(),
        _ => report.to_markdown(),
    };
    match output {
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
