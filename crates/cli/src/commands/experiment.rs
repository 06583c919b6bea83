//! `shopfloor experiment start|status|stop|simulate`: a variant of a workflow takes a share
//! of its single runs; the arms' figures and an always-valid interval on the metric say keep
//! or cut, guardrails halt a variant that breaks them; `simulate` checks the statistics that
//! decide on simulated A/A and A/B data (issue 28).

use std::process::ExitCode;

use serde_json::json;
use shopfloor_core::experiment::{Guardrail, Metric, Verdict};
use shopfloor_core::sequential::{simulate, Simulation};
use shopfloor_engine::{ExperimentStart, DEFAULT_MIN_RUNS, DEFAULT_SHARE};

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Start an experiment: the variant (a [variants.NAME] of the workflow whose last eval
    /// passed the gates) takes a share of the workflow's single runs; audited.
    #[command(
        after_help = "Metrics: acceptance_rate (reviewed outputs approved unchanged; \
higher is better), invalid_rate, cost_per_run (lower is better). Guardrails may also use \
cost_per_accepted and p95_latency_ms; a limit is a value (invalid_rate:0.1) or a multiple of \
the control's (cost_per_accepted:1.5x). A guardrail is read once each arm has 20 runs; \
breached, the variant takes no more traffic until someone decides. Assignment is sticky: a \
hash of (experiment, subject), the subject being the request's `user` or the input field \
--subject-field names; a run with neither draws its own arm. Batches and evals are not \
split."
    )]
    Start {
        workflow: String,
        /// The variant to try.
        #[arg(long)]
        variant: String,
        /// What the variant should change, and why.
        #[arg(long)]
        hypothesis: String,
        /// The metric that decides.
        #[arg(long)]
        metric: String,
        /// METRIC:LIMIT, e.g. cost_per_accepted:1.5x; repeat for several.
        #[arg(long = "guardrail", value_name = "METRIC:LIMIT")]
        guardrails: Vec<String>,
        /// The share of subjects the variant gets.
        #[arg(long, default_value_t = DEFAULT_SHARE)]
        share: f64,
        /// The planned outcomes per arm: the interval is tightest there, and past them a
        /// variant that has not shown --mde is recommended for cutting.
        #[arg(long, default_value_t = DEFAULT_MIN_RUNS)]
        min_runs: u64,
        /// The smallest gain worth keeping (default 0.05 for rates, a tenth of the control's
        /// value for cost).
        #[arg(long)]
        mde: Option<f64>,
        /// An input field whose value is the subject (default: the request's `user`).
        #[arg(long)]
        subject_field: Option<String>,
        /// Print the experiment as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A workflow's experiments, newest first: each arm's figures, the interval on the
    /// metric and what it recommends (keep, cut or continue). Guardrails are checked first.
    Status {
        workflow: String,
        #[arg(long)]
        json: bool,
    },
    /// End the workflow's live experiment with a decision; audited with the hypothesis and
    /// the figures.
    Stop {
        workflow: String,
        #[arg(long, value_parser = ["keep", "cut"])]
        decision: String,
        /// Why, in words.
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run simulated experiments: A/A (no difference) to count false positives, with the
    /// confidence sequence and, for comparison, a plain 95% test looked at as often; then A/B
    /// with a real lift to show the power at 1k, 5k and 20k runs.
    Simulate(SimulateArgs),
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Only the A/A part.
    #[arg(long)]
    aa: bool,
    /// Simulated experiments per figure.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    experiments: u32,
    /// Runs of each A/A experiment, split evenly between the arms.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(4..=10_000_000))]
    runs: u64,
    /// Looks at the result, evenly spaced; an experiment stops at the first that decides.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    looks: u32,
    /// The control's rate (e.g. the share of outputs reviewers accept).
    #[arg(long, default_value_t = 0.5)]
    base: f64,
    /// The variant's lift for the power figures, in points of rate.
    #[arg(long, default_value_t = 0.05)]
    lift: f64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Simulate(args) => simulate_command(args),
        Command::Start {
            workflow,
            variant,
            hypothesis,
            metric,
            guardrails,
            share,
            min_runs,
            mde,
            subject_field,
            json,
        } => {
            let metric =
                Metric::from_text(&metric).map_err(|e| anyhow::anyhow!("--metric: {e}"))?;
            let guardrails = guardrails
                .iter()
                .map(|g| Guardrail::parse(g).map_err(|e| anyhow::anyhow!("--guardrail: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let engine = global.open_engine().await?;
            let started = engine
                .start_experiment(
                    &super::actor(),
                    ExperimentStart {
                        workflow,
                        variant,
                        hypothesis,
                        metric,
                        guardrails,
                        share: Some(share),
                        min_runs: Some(min_runs),
                        mde,
                        subject_field,
                    },
                )
                .await;
            engine.close().await;
            let started = started?;
            if json {
                println!("{}", serde_json::to_string_pretty(&started)?);
            } else {
                println!(
                    "started experiment {}: variant {} of {} takes {:.0}% of its single runs",
                    started.record.id,
                    started.record.variant,
                    started.record.workflow,
                    started.record.share * 100.0
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { workflow, json } => {
            let engine = global.open_engine().await?;
            let statuses = engine.experiment_status(&workflow).await;
            engine.close().await;
            let statuses = statuses?;
            if json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else if statuses.is_empty() {
                println!(
                    "{workflow} has no experiments (start one with `shopfloor experiment start`)"
                );
            } else {
                for status in &statuses {
                    println!("{}", status.summary());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop {
            workflow,
            decision,
            note,
            json,
        } => {
            let decision = Verdict::parse(&decision).unwrap_or(Verdict::Cut);
            let engine = global.open_engine().await?;
            let stopped = engine
                .stop_experiment(&super::actor(), &workflow, decision, note)
                .await;
            engine.close().await;
            let stopped = stopped?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stopped)?);
            } else {
                print!("{}", stopped.summary());
                if decision == Verdict::Keep {
                    println!(
                        "keep: make variant {} the workflow's prompt and route in its file, then eval and promote it as usual",
                        stopped.record.variant
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn simulate_command(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let SimulateArgs {
        aa,
        experiments,
        runs,
        looks,
        base,
        lift,
        json,
    } = args;
    if !(0.0..=1.0).contains(&base) || !(0.0..=1.0).contains(&(base + lift)) {
        anyhow::bail!("--base and --base + --lift must be rates between 0 and 1");
    }
    let aa_run = Simulation {
        experiments,
        runs,
        looks,
        base,
        lift: 0.0,
        alpha: 0.05,
        seed: 20261207,
    };
    let sequential = simulate(&aa_run, false);
    let peeking = simulate(&aa_run, true);
    let power: Vec<(u64, f64)> = if aa {
        Vec::new()
    } else {
        [1_000, 5_000, 20_000]
            .into_iter()
            .map(|runs| {
                (
                    runs,
                    simulate(
                        &Simulation {
                            runs,
                            lift,
                            ..aa_run
                        },
                        false,
                    ),
                )
            })
            .collect()
    };
    if json {
        let body = json!({
            "experiments": experiments, "runs": runs, "looks": looks, "alpha": 0.05, "base": base,
            "aa_false_positive_rate": sequential,
            "aa_false_positive_rate_plain_test_peeked": peeking,
            "power": power.iter().map(|(runs, p)| json!({"runs": runs, "lift": lift, "power": p})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "A/A, {experiments} experiments of {runs} runs at rate {base}, looked at {looks} times (α = 0.05):"
    );
    println!(
        "  false positives, confidence sequence    {:>6.2}%",
        sequential * 100.0
    );
    println!(
        "  false positives, plain test peeked at   {:>6.2}%",
        peeking * 100.0
    );
    if !power.is_empty() {
        println!(
            "A/B, a lift of {:+.1} points, {experiments} experiments each:",
            lift * 100.0
        );
        for (runs, p) in &power {
            println!(
                "  power at {runs:>6} runs                 {:>6.2}%",
                p * 100.0
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
