//! `shopfloor experiment simulate`: the project's own sequential statistics on simulated A/A
//! and A/B data — the false-positive rate however often one looks, and the power. The proof
//! that an experiment's status can be read every day (issue 28); experiments themselves are
//! not built yet.

use std::process::ExitCode;

use serde_json::json;
use shopfloor_core::sequential::{simulate, Simulation};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run simulated experiments: A/A (no difference) to count false positives, with the
    /// confidence sequence and, for comparison, a plain 95% test looked at as often; then A/B
    /// with a real lift to show the power at 1k, 5k and 20k runs.
    Simulate {
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
    },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Simulate {
        aa,
        experiments,
        runs,
        looks,
        base,
        lift,
        json,
    } = command;
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
