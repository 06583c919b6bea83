//! `shopfloor runs list|show`: what was recorded.

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use shopfloor_engine::store_types::{RunFilter, RunOrigin, RunStatus};
use shopfloor_engine::{Audience, Records};

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Recorded runs, newest first.
    List {
        /// Only this workflow's runs.
        #[arg(long, value_name = "W")]
        workflow: Option<String>,
        /// Only the runs of this batch.
        #[arg(long, value_name = "BATCH_ID")]
        batch: Option<String>,
        /// Only runs with this status: ok, invalid, failed, refused, held.
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
    },
    /// One run: rendered prompt, every attempt, raw and parsed output, validity.
    Show {
        /// The run id (from `runs list` or a run's output).
        id: String,
        /// Print the whole record as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let records = Records::open(&global.project, global.database_url.as_deref()).await?;
    match command {
        Command::List {
            workflow,
            batch,
            status,
            limit,
        } => {
            let status = match status {
                Some(s) => Some(RunStatus::parse(&s).ok_or_else(|| {
                    anyhow!("unknown status \"{s}\"; expected ok, invalid, failed, refused or held")
                })?),
                None => None,
            };
            let runs = records
                .runs(&RunFilter {
                    workflow,
                    batch_id: batch,
                    status,
                    limit: Some(limit),
                    ..Default::default()
                })
                .await?;
            if runs.is_empty() {
                println!("no runs recorded yet (try `shopfloor run WORKFLOW --json '{{...}}'`)");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<36}  {:<24} {:<8} {:<12} {:<14} {:>9} {:>10}",
                "run", "workflow", "status", "version", "model", "latency", "cost"
            );
            for r in runs {
                println!(
                    "{:<36}  {:<24} {:<8} {:<12} {:<14} {:>7}ms {:>10}",
                    r.id,
                    r.workflow,
                    r.status.as_str(),
                    r.version,
                    r.model.as_deref().unwrap_or("-"),
                    r.latency_ms,
                    format!("${:.5}", r.cost_usd)
                );
            }
        }
        Command::Show { id, json } => {
            // What a reader sees: a held, rejected or corrected run's own answer is for
            // reviewers, who read it with `shopfloor review show`.
            let Some(view) = records.run_view(&id, Audience::Reader).await? else {
                bail!("no run with id {id} (list runs with `shopfloor runs list`)");
            };
            let (withheld, run) = (view.withheld, view.run);
            if json {
                let mut value = serde_json::to_value(&run)?;
                if let Some(w) = withheld {
                    value["output_withheld"] = serde_json::json!(w.as_str());
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("run       {}", run.id);
            println!("workflow  {} (version {})", run.workflow, run.version);
            match (&run.batch_id, run.case_index, run.origin) {
                (Some(eval), Some(case), RunOrigin::Eval) => {
                    println!("origin    eval {eval}, case {case}")
                }
                (Some(batch), Some(case), _) => println!("batch     {batch}, case {case}"),
                (_, _, origin) => println!("origin    {}", origin.as_str()),
            }
            println!("status    {}", run.status.as_str());
            if let Some(error) = &run.error {
                println!("error     {error}");
            }
            println!(
                "totals    {} ms · {} prompt + {} completion tokens · ${:.6}",
                run.latency_ms, run.prompt_tokens, run.completion_tokens, run.cost_usd
            );
            if let Some(examples) = run.prompt.get("examples").and_then(|e| e.as_array()) {
                let ids: Vec<&str> = examples.iter().filter_map(|e| e.as_str()).collect();
                println!(
                    "examples  {} ([prompt] examples, by case id)",
                    ids.join(", ")
                );
            }
            println!("\ninput\n  {}", run.input);
            println!("\nprompt");
            if let Some(messages) = run.prompt.get("messages").and_then(|m| m.as_array()) {
                for m in messages {
                    let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("?");
                    let content = m.get("content").and_then(|c| c.as_str()).unwrap_or("");
                    println!("  [{role}]");
                    for line in content.lines() {
                        println!("    {line}");
                    }
                }
            }
            println!("\nattempts");
            for a in &run.attempts {
                println!(
                    "  #{} {} ({}) {} · {} ms · {}+{} tokens · ${:.6}{}",
                    a.n,
                    a.model,
                    a.provider,
                    a.outcome.as_str(),
                    a.latency_ms,
                    a.prompt_tokens,
                    a.completion_tokens,
                    a.cost_usd,
                    a.error
                        .as_ref()
                        .map(|e| format!("\n      error: {e}"))
                        .unwrap_or_default()
                );
                if let Some(raw) = &a.raw_output {
                    println!("      answer: {raw:?}");
                }
            }
            if let Some(w) = withheld {
                match &run.output {
                    Some(output) => println!("\noutput\n  {output}\n  {}", w.describe()),
                    None => println!("\noutput\n  {}", w.describe()),
                }
                println!(
                    "  (a reviewer reads the model's own answer with `shopfloor review show {}`)",
                    run.id
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "\nraw output\n  {}",
                run.raw_output
                    .as_deref()
                    .map(|r| format!("{r:?}"))
                    .unwrap_or("-".into())
            );
            println!(
                "parsed output\n  {}",
                run.output
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or("- (no valid output)".into())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
