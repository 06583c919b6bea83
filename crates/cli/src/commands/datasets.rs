//! `shopfloor datasets add-from-reviews WORKFLOW`: reviewers' decisions become eval cases.

use std::process::ExitCode;

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Append one case per decided review whose input is not in the workflow's [eval] dataset
    /// yet: `expected` is the approved or corrected output (left null for a person to fill in
    /// when a reviewer rejected without a correction; evals skip such cases until then).
    AddFromReviews {
        workflow: String,
        /// Print what would be added; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let Command::AddFromReviews {
        workflow,
        dry_run,
        json,
    } = command;
    let engine = global.open_engine().await?;
    let report = engine.cases_from_reviews(&workflow, dry_run).await;
    engine.close().await;
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would add" } else { "added" };
    println!(
        "{verb} {} case(s) to {} ({} to fill in by hand); {} already there",
        report.added.len(),
        report.dataset,
        report.to_fill,
        report.already_present
    );
    for case in &report.added {
        println!("  {case}");
    }
    for skipped in &report.skipped {
        println!("  skipped {skipped}");
    }
    Ok(ExitCode::SUCCESS)
}
