//! `shopfloor run`: one input (`--json`) or a batch (`--input`), with a progress bar and a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};
use shopfloor_engine::store_types::{RunRecord, RunStatus};
use shopfloor_engine::{BatchReport, BatchRequest, Engine, EngineError, EngineOptions};

use super::Global;
use crate::progress::BatchProgress;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["input", "json"])))]
pub struct Args {
    /// The workflow's name (its file stem in workflows/).
    workflow: String,
    /// A JSONL file: one input object per line (or dataset cases {"input": {...}, "expected": ...}).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// One input object as JSON; prints the result.
    #[arg(long, value_name = "JSON")]
    json: Option<String>,
    /// How many cases run at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = super::concurrency())]
    concurrency: usize,
    /// Append one JSON line per finished case to this file.
    #[arg(long, value_name = "FILE", requires = "input")]
    out: Option<PathBuf>,
    /// Use only this model (a name from shopfloor.toml) instead of the workflow's route.
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// Finish an interrupted batch: cases already recorded are not run again.
    #[arg(long, value_name = "BATCH_ID", requires = "input")]
    resume: Option<String>,
    /// Record every model answer to FILE, for the replay provider.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let engine = Engine::open(EngineOptions {
        project_dir: global.project.clone(),
        database_url: global.database_url.clone(),
        record_to: args.record.clone(),
        ..EngineOptions::default()
    })
    .await?;
    super::models::ensure_pulled(&engine.local_models_for(&args.workflow, args.model.as_deref())?)?;
    let result = match (&args.json, &args.input) {
        (Some(json), _) => run_one(&engine, &args, json).await,
        (None, Some(input)) => run_batch(&engine, &args, input.clone()).await,
        (None, None) => unreachable!("clap requires --input or --json"),
    };
    engine.close().await;
    result
}

async fn run_one(engine: &Engine, args: &Args, json: &str) -> anyhow::Result<ExitCode> {
    let input: Value = serde_json::from_str(json)
        .map_err(|e| EngineError::InvalidInput(format!("--json is not valid JSON: {e}")))?;
    let run = engine
        .run_one(&args.workflow, input, args.model.clone())
        .await?;
    println!("{}", serde_json::to_string_pretty(&result_json(&run))?);
    if run.status == RunStatus::Held {
        eprintln!(
            "held for review: {} is high risk, so its output is released only when a reviewer \
             approves it (see `shopfloor runs show {}`)",
            run.workflow, run.id
        );
    }
    Ok(if matches!(run.status, RunStatus::Ok | RunStatus::Held) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn result_json(run: &RunRecord) -> Value {
    json!({
        "run_id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status.as_str(),
        "output": shopfloor_engine::released_output(run),
        "sampled_for_review": run.sampled_for_review,
        "error": run.error,
        "model": run.model,
        "attempts": run.attempts.len(),
        "latency_ms": run.latency_ms,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cost_usd": run.cost_usd,
    })
}

async fn run_batch(engine: &Engine, args: &Args, input: PathBuf) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        input.is_file(),
        "input file {} {}; --input takes a JSONL file, one input object per line",
        input.display(),
        match std::fs::metadata(&input) {
            Ok(meta) if meta.is_dir() => "is a folder",
            Ok(_) => "is not a regular file (a device or a pipe)",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
            Err(_) => "cannot be read",
        }
    );
    let request = BatchRequest {
        workflow: args.workflow.clone(),
        input: input.clone(),
        concurrency: args.concurrency,
        model_override: args.model.clone(),
        resume: args.resume.clone(),
        out: args.out.clone(),
    };
    let progress = BatchProgress::new(&args.workflow, &input.display().to_string());
    let stop = async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: finishing the cases in flight and recording them…");
        } else {
            std::future::pending::<()>().await;
        }
    };
    let report = engine
        .run_batch(&request, &progress, stop)
        .await
        .context("batch run")?;
    progress.finish();
    print_summary(&report, &args.workflow, &input);
    Ok(if report.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(report: &BatchReport, workflow: &str, input: &std::path::Path) {
    let ran = report.ok
        + report.invalid
        + report.failed
        + report.refused
        + report.held
        + report.review_rejected;
    println!("batch {}", report.batch_id);
    if report.resumed {
        println!("  already recorded before: {}", report.already_done);
    }
    println!(
        "  ran {ran}: ok {} · invalid output {} · failed {} · refused {}{}",
        report.ok,
        report.invalid,
        report.failed,
        report.refused,
        if report.held > 0 {
            format!(" · held {}", report.held)
        } else {
            String::new()
        }
    );
    if report.rejected > 0 {
        println!(
            "  skipped {} input line(s) that do not match the input schema",
            report.rejected
        );
    }
    if let (Some(p50), Some(p95), Some(p99)) = (
        report.latency_percentile(50.0),
        report.latency_percentile(95.0),
        report.latency_percentile(99.0),
    ) {
        println!("  latency p50 {p50} ms · p95 {p95} ms · p99 {p99} ms");
    }
    println!(
        "  tokens {} in / {} out · cost ${:.4}",
        report.prompt_tokens, report.completion_tokens, report.cost_usd
    );
    if report.interrupted {
        println!(
            "  interrupted: finish with `shopfloor run {workflow} --input {} --resume {}`",
            input.display(),
            report.batch_id
        );
    }
    println!("  details: shopfloor runs list --batch {}", report.batch_id);
}
