//! `shopfloor evals list|show|baseline|compare`: stored eval runs.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use shopfloor_engine::store_types::{EvalCaseRecord, EvalRecord};
use shopfloor_engine::{EvalSummary, Records, ScoreSummary};

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Eval runs, newest first.
    List {
        /// Only this workflow's evals.
        #[arg(long, value_name = "W")]
        workflow: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
    },
    /// One eval's scorecard.
    Show {
        /// The eval id.
        id: String,
    },
    /// Make an eval its workflow's baseline: later evals compare with it and max_regression gates use it.
    Baseline {
        /// The eval id.
        id: String,
    },
    /// Two evals side by side: the cases whose outputs or scores differ.
    Compare {
        /// The earlier eval.
        a: String,
        /// The later eval.
        b: String,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let records = Records::open(&global.project, global.database_url.as_deref()).await?;
    match command {
        Command::List { workflow, limit } => {
            let evals = records.evals(workflow.as_deref(), limit).await?;
            if evals.is_empty() {
                println!("no evals yet (try `shopfloor eval WORKFLOW`)");
                return Ok(ExitCode::SUCCESS);
            }
            let mut baselines = HashMap::new();
            println!(
                "{:<36}  {:<22} {:<12} {:>6} {:<9} {:<6} score",
                "eval", "workflow", "version", "cases", "status", "gates"
            );
            for e in evals {
                if !baselines.contains_key(&e.workflow) {
                    baselines.insert(e.workflow.clone(), records.baseline(&e.workflow).await?);
                }
                let is_baseline =
                    baselines.get(&e.workflow).and_then(|b| b.as_deref()) == Some(e.id.as_str());
                let headline = summary_of(&e)?
                    .and_then(|s| s.scores.first().map(score_text))
                    .unwrap_or_default();
                println!(
                    "{:<36}  {:<22} {:<12} {:>6} {:<9} {:<6} {headline}{}",
                    e.id,
                    e.workflow,
                    e.version,
                    e.total_cases,
                    e.status.as_str(),
                    match e.passed {
                        Some(true) => "pass",
                        Some(false) => "FAIL",
                        None => "-",
                    },
                    if is_baseline { "  (baseline)" } else { "" }
                );
            }
        }
        Command::Show { id } => {
            let eval = records
                .eval(&id)
                .await?
                .ok_or_else(|| anyhow!("no eval with id {id}"))?;
            match summary_of(&eval)? {
                Some(summary) => super::eval::print_scorecard(&summary),
                None => println!(
                    "eval {id} of {} is {} (no summary yet)",
                    eval.workflow,
                    eval.status.as_str()
                ),
            }
        }
        Command::Baseline { id } => {
            let engine = shopfloor_engine::Engine::open(shopfloor_engine::EngineOptions {
                project_dir: global.project.clone(),
                database_url: global.database_url.clone(),
                ..Default::default()
            })
            .await?;
            let set = engine.set_baseline(&id, &super::actor()).await;
            engine.close().await;
            println!("eval {id} is now the baseline of {}", set?);
        }
        Command::Compare { a, b } => compare(&records, &a, &b).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn compare(records: &Records, a: &str, b: &str) -> anyhow::Result<()> {
    let (Some(left), Some(right)) = (records.eval(a).await?, records.eval(b).await?) else {
        bail!("both evals must exist: {a}, {b}");
    };
    let before: HashMap<String, EvalCaseRecord> = records
        .all_eval_cases(a)
        .await?
        .into_iter()
        .map(|c| (c.case_id.clone(), c))
        .collect();
    let after = records.all_eval_cases(b).await?;
    println!(
        "A {a}: {} version {} · B {b}: {} version {}",
        left.workflow, left.version, right.workflow, right.version
    );
    for (label, eval) in [("A", &left), ("B", &right)] {
        if let Some(summary) = summary_of(eval)? {
            let line: Vec<String> = summary.scores.iter().map(score_text).collect();
            println!("  {label}: {}", line.join(" · "));
        }
    }
    let mut differing = 0;
    let mut shared = 0;
    for case in &after {
        let Some(old) = before.get(&case.case_id) else {
            continue;
        };
        shared += 1;
        if old.output == case.output && old.scores == case.scores {
            continue;
        }
        differing += 1;
        let show = |c: &EvalCaseRecord| {
            c.output
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_else(|| format!("({})", c.status.as_str()))
        };
        println!(
            "{:<12} expected {:<12} A {:<14} B {:<14}",
            case.case_id,
            case.expected.to_string(),
            show(old),
            show(case)
        );
    }
    println!("{differing} of {shared} shared case(s) differ");
    Ok(())
}

/// An eval's stored summary; `None` while the eval has none yet.
fn summary_of(eval: &EvalRecord) -> anyhow::Result<Option<EvalSummary>> {
    eval.summary
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| anyhow!("eval {}: its stored summary cannot be read: {e}", eval.id))
}

/// A scorer's mean, as the listings show it.
fn score_text(score: &ScoreSummary) -> String {
    format!("{} {:.3}", score.scorer, score.mean)
}
