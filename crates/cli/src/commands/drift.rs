//! `shopfloor drift WORKFLOW`: the current version's last 24 hours and 7 days against its
//! reference, check by check. Exit code 0 either way: drift is a finding, not a failure.

use std::process::ExitCode;

use shopfloor_engine::{now_ms, DriftReport, ReferenceKind};

use super::{format_time, Global};

#[derive(clap::Args)]
#[command(
    after_help = "Reference: the version's first 7 days in production, or, before those have \
[monitoring] min_runs runs (200) and for a workflow not in production, the eval set's expected \
labels. Labels: chi-square p < 0.05 (reference of at most 1000 runs) or Jensen-Shannon distance \
>= 0.1, and PSI (warn >= 0.1, alert >= 0.25). Lengths: tokens of the answering attempt, \
Kolmogorov-Smirnov p < 0.05 on a sample of at most 2000 runs. Vocabulary: share of input words \
unseen in the reference >= 0.2. Rates: two-proportion z-test p < 0.05. Latency: p95 at least 1.5 \
times the reference's. No alert before a window has min_runs runs."
)]
pub struct Args {
    /// The workflow (its file's stem under workflows/).
    workflow: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let engine = global.open_engine().await?;
    let result = engine.drift(&args.workflow, now_ms()).await;
    engine.close().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &DriftReport) {
    let reference = &report.reference;
    let source = match reference.kind {
        ReferenceKind::Production => format!(
            "first production week {} – {}, {} runs",
            reference.from_ms.map_or_else(String::new, format_time),
            reference.to_ms.map_or_else(String::new, format_time),
            reference.runs
        ),
        ReferenceKind::Eval => format!("eval set's expected labels, {} cases", reference.runs),
        ReferenceKind::None => {
            "none: no production week with enough runs and no labelled eval set".to_string()
        }
    };
    println!(
        "{} {}  reference: {source}",
        report.workflow, report.version
    );
    for window in &report.windows {
        println!(
            "\n{} ({} runs){}",
            window.name,
            window.runs,
            if window.drift { "  DRIFT" } else { "" }
        );
        if window.checks.is_empty() {
            continue;
        }
        println!(
            "  {:<18} {:<19} {:>10} {:>10} {:>9} {:>7} {:>7}  verdict",
            "check", "test", "statistic", "p", "threshold", "n ref", "n cur"
        );
        for check in &window.checks {
            let verdict = if check.drift {
                "drift"
            } else if check.warn {
                "warn"
            } else {
                "ok"
            };
            println!(
                "  {:<18} {:<19} {:>10.4} {:>10} {:>9} {:>7} {:>7}  {verdict}{}",
                check.name,
                check.test.as_str(),
                check.statistic,
                check.p_value.map_or("-".to_string(), |p| format!("{p:.4}")),
                check.threshold,
                check.n_reference,
                check.n_current,
                check
                    .note
                    .as_ref()
                    .map_or(String::new(), |n| format!(" ({n})"))
            );
            for shift in &check.shifts {
                println!(
                    "      {}: {:.1}% → {:.1}% ({:+.1} points)",
                    shift.label,
                    shift.reference_share * 100.0,
                    shift.current_share * 100.0,
                    shift.change * 100.0
                );
            }
        }
    }
}
