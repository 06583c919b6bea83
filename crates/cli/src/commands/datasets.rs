//! `shopfloor datasets add-from-reviews WORKFLOW`: reviewers' decisions become eval cases;
//! `shopfloor datasets similar WORKFLOW --json INPUT`: the cases nearest to an input.

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
    /// The cases nearest to an input among the workflow's [prompt] examples (else its [eval]
    /// dataset), by cosine similarity of the embedded MiniLM's vectors of the rendered user
    /// message: what `select = "similar"` would show the model. Needs `shopfloor models pull
    /// minilm`; the first search of a file encodes its cases once (kept under .shopfloor/).
    Similar {
        workflow: String,
        /// The input, a JSON object that matches the workflow's input schema.
        #[arg(long = "json", value_name = "INPUT")]
        input: String,
        /// How many cases.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
        k: u16,
        /// Print the cases as JSON.
        #[arg(long = "as-json")]
        as_json: bool,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let (workflow, dry_run, json) = match command {
        Command::AddFromReviews {
            workflow,
            dry_run,
            json,
        } => (workflow, dry_run, json),
        Command::Similar {
            workflow,
            input,
            k,
            as_json,
        } => return similar(global, &workflow, &input, k.into(), as_json).await,
    };
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

async fn similar(
    global: &Global,
    workflow: &str,
    input: &str,
    k: usize,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let input: serde_json::Value = serde_json::from_str(input)
        .map_err(|e| anyhow::anyhow!("--json: the input is not JSON: {e}"))?;
    let engine = global.open_engine().await?;
    let found = engine.similar_cases(workflow, input, k).await;
    engine.close().await;
    let (file, cases) = found?;
    if as_json {
        let body = serde_json::json!({"file": file, "cases": cases});
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} case(s) of {file} nearest to the input:", cases.len());
    for case in &cases {
        let first_line = case
            .user
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        println!(
            "  {:.3}  {}  → {}  ({})",
            case.similarity,
            case.id,
            case.answer,
            first_line.chars().take(70).collect::<String>()
        );
    }
    Ok(ExitCode::SUCCESS)
}
