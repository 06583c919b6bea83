//! `shopfloor eval`: score a workflow against its dataset, compare with the baseline, gate CI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use shopfloor_engine::store_types::{EvalCaseRecord, RunStatus};
use shopfloor_engine::{Engine, EvalObserver, EvalRequest, EvalSummary, ExamplesSetting};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The workflow's name.
    workflow: String,
    /// The dataset (JSONL or CSV); default: the workflow's [eval] dataset.
    #[arg(long, value_name = "PATH")]
    dataset: Option<PathBuf>,
    /// Use only this model instead of the workflow's route.
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// How many cases run at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = super::concurrency())]
    concurrency: usize,
    /// Only the first N cases.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Call the model even for cases answered before by this version (at temperature 0).
    #[arg(long)]
    no_cache: bool,
    /// Run the valid cases of a dataset that has invalid ones.
    #[arg(long)]
    skip_invalid: bool,
    /// Exit 1 when a gate fails (for CI).
    #[arg(long)]
    gate: bool,
    /// Write a JUnit XML report (one testcase per dataset case).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write the summary as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run the eval without examples and with the 1, 4 and 8 most similar (from the
    /// workflow's [prompt] examples file, else its eval dataset; a case never sees itself),
    /// and print each scorer's lift over none with its paired 95% interval: whether examples
    /// help this workflow, and how many.
    #[arg(long, conflicts_with_all = ["gate", "junit", "json"])]
    compare_examples: bool,
    /// Evaluate this [variants.NAME] of the workflow (a version of its own) instead of the
    /// workflow: a variant may take traffic in an experiment once such an eval passed the
    /// gates (`shopfloor check` lists which may).
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let engine = global.open_engine().await?;
    let mut local = engine.local_models_for(&args.workflow, args.model.as_deref())?;
    // A variant may route to embedded models the workflow does not.
    if let (Some(variant), None) = (&args.variant, &args.model) {
        if let Ok(spec) = engine.project.variant_spec(&args.workflow, variant) {
            let config = &engine.project.config;
            local.extend(
                spec.route
                    .models
                    .iter()
                    .filter_map(|m| config.models.get(&m.value))
                    .filter(|m| m.provider == shopfloor_core::spec::ProviderKind::Local)
                    .map(|m| m.model.clone()),
            );
        }
    }
    local.dedup();
    super::models::ensure_pulled(&local)?;
    let request = EvalRequest {
        workflow: args.workflow.clone(),
        dataset: args.dataset.clone(),
        model_override: args.model.clone(),
        concurrency: args.concurrency,
        limit: args.limit,
        no_cache: args.no_cache,
        skip_invalid: args.skip_invalid,
        examples: ExamplesSetting::AsConfigured,
        compare_with: None,
        variant: args.variant.clone(),
    };
    if let Some(variant) = &args.variant {
        let loaded = engine.project.variant(&args.workflow, variant);
        match loaded {
            Ok(loaded) => eprintln!(
                "variant {variant} of {} (version {})",
                args.workflow, loaded.version
            ),
            Err(e) => {
                engine.close().await;
                return Err(e.into());
            }
        }
    }
    // Similar examples are encoded once per content of their file: show it happening.
    let warm = EvalRequest {
        examples: if args.compare_examples {
            ExamplesSetting::Similar(1)
        } else {
            ExamplesSetting::AsConfigured
        },
        ..request.clone()
    };
    if let Err(e) = encode_examples(&engine, &warm).await {
        engine.close().await;
        return Err(e);
    }
    if args.compare_examples {
        let compared = compare_examples(&engine, request).await;
        engine.close().await;
        return compared.map(|()| ExitCode::SUCCESS);
    }
    let result = evaluate(&engine, &request).await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            engine.close().await;
            return Err(e);
        }
    };
    print_scorecard(&summary);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
    }
    if let Some(path) = &args.junit {
        let cases = engine.records().all_eval_cases(&summary.eval_id).await?;
        write_junit(path, &summary, &cases)?;
    }
    engine.close().await;
    if summary.interrupted {
        return Ok(ExitCode::from(130));
    }
    Ok(if args.gate && !summary.passed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Encode the `similar` examples an eval of `request` would use, with a progress bar, when
/// they are not kept beside the store yet.
async fn encode_examples(engine: &Engine, request: &EvalRequest) -> anyhow::Result<()> {
    let Some(set) = engine.examples_for_eval(request)? else {
        return Ok(());
    };
    if !set.needs_encoding() {
        return Ok(());
    }
    let bar = ProgressBar::new(set.len() as u64).with_style(
        ProgressStyle::with_template(
            "encoding {len} examples once (kept beside the store) {wide_bar} {pos}/{len} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    tokio::task::spawn_blocking(move || {
        set.encode_with(&|done, _| shown.set_position(done as u64))
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    Ok(())
}

/// `--compare-examples`: one eval per setting, each compared with the one without examples.
async fn compare_examples(engine: &Engine, request: EvalRequest) -> anyhow::Result<()> {
    let settings = [
        ("none", ExamplesSetting::Without),
        ("similar, k = 1", ExamplesSetting::Similar(1)),
        ("similar, k = 4", ExamplesSetting::Similar(4)),
        ("similar, k = 8", ExamplesSetting::Similar(8)),
    ];
    let mut rows: Vec<(&str, EvalSummary)> = Vec::new();
    for (name, examples) in settings {
        eprintln!("examples: {name}");
        let compare_with = rows.first().map(|(_, none)| none.eval_id.clone());
        let summary = evaluate(
            engine,
            &EvalRequest {
                examples,
                compare_with,
                ..request.clone()
            },
        )
        .await?;
        rows.push((name, summary));
    }
    let Some((_, none)) = rows.first() else {
        return Ok(());
    };
    println!(
        "{} · {} case(s) · lift over no examples, paired by case",
        request.workflow, none.cases
    );
    for score in &none.scores {
        println!("  {}", score.scorer);
        for (name, summary) in &rows {
            let Some(mine) = summary.scores.iter().find(|s| s.scorer == score.scorer) else {
                continue;
            };
            let lift = summary
                .baseline
                .as_ref()
                .and_then(|b| b.scores.iter().find(|d| d.scorer == score.scorer))
                .map(|d| {
                    format!(
                        "{:+.3} ({:+.3} to {:+.3}){}",
                        d.delta,
                        d.delta_low,
                        d.delta_high,
                        if d.significant { " significant" } else { "" }
                    )
                })
                .unwrap_or_else(|| "—".to_string());
            println!(
                "    {name:<15} {:.3} ({:.3}–{:.3})  {lift:<36} p50 {} ms · {} tokens in · eval {}",
                mine.mean,
                mine.ci_low,
                mine.ci_high,
                summary
                    .latency_p50_ms
                    .map_or("—".to_string(), |m| m.to_string()),
                summary.prompt_tokens,
                summary.eval_id
            );
        }
    }
    Ok(())
}

/// Run an eval with a progress bar; Ctrl-C stops it (stored as cancelled).
pub async fn evaluate(engine: &Engine, request: &EvalRequest) -> anyhow::Result<EvalSummary> {
    let progress = EvalProgress {
        bar: ProgressBar::hidden(),
    };
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let summary = engine.run_eval(request, &progress, stop).await?;
    progress.bar.finish_and_clear();
    Ok(summary)
}

struct EvalProgress {
    bar: ProgressBar,
}

impl EvalObserver for EvalProgress {
    fn started(&self, eval_id: &str, cases: u64, skipped: u64) {
        eprintln!(
            "eval {eval_id}: {cases} case(s){}",
            if skipped > 0 {
                format!(", {skipped} invalid skipped")
            } else {
                String::new()
            }
        );
        self.bar.set_length(cases);
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.bar.set_style(
            ProgressStyle::with_template(
                "{bar:40.cyan/blue} {pos}/{len} [{elapsed_precise}, eta {eta}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }

    fn finished(&self, case: &EvalCaseRecord) {
        self.bar.inc(1);
        if case.cached {
            self.bar.set_message("(cached)");
        }
    }
}

/// Print an eval's scorecard.
pub fn print_scorecard(s: &EvalSummary) {
    println!(
        "eval {} · {} version {} · {} case(s) from {}",
        s.eval_id, s.workflow, s.version, s.cases, s.dataset
    );
    if let Some(model) = &s.model_override {
        println!("  model: {model}");
    }
    if s.cached_cases > 0 {
        println!(
            "  {} case(s) reused from earlier evals of this version (--no-cache to rerun)",
            s.cached_cases
        );
    }
    for score in &s.scores {
        println!(
            "  {:<16} {:.3}  (95% CI {:.3}–{:.3})",
            score.scorer, score.mean, score.ci_low, score.ci_high
        );
    }
    println!(
        "  invalid output   {:.1}% ({} of {}) · failed {}",
        s.invalid_rate * 100.0,
        s.invalid,
        s.cases,
        s.failed
    );
    if let (Some(p50), Some(p95)) = (s.latency_p50_ms, s.latency_p95_ms) {
        println!("  latency          p50 {p50} ms · p95 {p95} ms");
    }
    if let Some(e) = &s.examples {
        let per_case = if e.min == e.max {
            format!("{} per case", e.min)
        } else {
            format!("{} to {} per case (mean {:.1})", e.min, e.max, e.mean())
        };
        println!(
            "  examples         {per_case}, never a case's own answer ({} case(s) that ran)",
            e.cases
        );
    }
    println!(
        "  tokens           {} in / {} out · cost ${:.4}",
        s.prompt_tokens, s.completion_tokens, s.cost_usd
    );
    if s.judge_errors > 0 || s.judge_cost_usd > 0.0 {
        println!(
            "  judge            {} error(s) (counted as failures) · cost ${:.4}",
            s.judge_errors, s.judge_cost_usd
        );
    }
    if let Some(labels) = &s.labels {
        print_labels(labels);
    }
    print_worst(&s.worst);
    if let Some(b) = &s.baseline {
        print_baseline(b);
    }
    if let Some(slice) = &s.review_slice {
        println!("  cases from reviews ({} of them):", slice.cases);
        for score in &slice.scores {
            println!(
                "    {:<16} {:.3}  (pass rate {:.1}%)",
                score.scorer,
                score.mean,
                score.pass_rate * 100.0
            );
        }
    }
    if s.unanswered_cases > 0 {
        println!(
            "  {} case(s) left out: their expected answer is still to be filled in",
            s.unanswered_cases
        );
    }
    print_gates(s);
}

fn print_labels(labels: &shopfloor_core::scorers::LabelReport) {
    println!("  macro-F1         {:.3}", labels.macro_f1);
    println!(
        "  {:<12} {:>9} {:>7} {:>6} {:>8}",
        "label", "precision", "recall", "F1", "support"
    );
    for l in &labels.per_label {
        println!(
            "  {:<12} {:>9.3} {:>7.3} {:>6.3} {:>8}",
            l.label, l.precision, l.recall, l.f1, l.support
        );
    }
    let mut header = format!("  {:<12}", "expected ↓");
    for label in &labels.labels {
        header.push_str(&format!(" {label:>9}"));
    }
    header.push_str(&format!(" {:>9}", shopfloor_core::scorers::INVALID_COLUMN));
    println!("{header}");
    for (label, row) in labels.labels.iter().zip(&labels.confusion) {
        let cells: String = row.iter().map(|c| format!(" {c:>9}")).collect();
        println!("  {label:<12}{cells}");
    }
}

fn print_worst(worst: &[shopfloor_engine::WorstCase]) {
    if !worst.is_empty() {
        println!("  worst cases:");
        for w in worst {
            let answer = match (&w.output, &w.raw_output) {
                (Some(o), _) => o.to_string(),
                (None, Some(raw)) => format!("{} {raw:?}", w.status),
                (None, None) => w.status.clone(),
            };
            println!(
                "    {} (line {}): expected {} got {} · score {:.2}",
                w.case_id,
                w.line,
                w.expected,
                shopfloor_core::output::shorten(&answer, 60),
                w.score
            );
        }
    }
}

fn print_baseline(b: &shopfloor_engine::BaselineComparison) {
    println!(
        "  against baseline {} (version {}, {} paired cases):",
        b.baseline_id, b.baseline_version, b.paired_cases
    );
    for d in &b.scores {
        println!(
            "    {:<16} {:.3} → {:.3} ({:+.3}) p={:.3}{} · {} improved, {} regressed",
            d.scorer,
            d.baseline,
            d.current,
            d.delta,
            d.p_value,
            if d.significant {
                " significant"
            } else {
                " not significant"
            },
            d.improved,
            d.regressed
        );
    }
    if !b.regressed_cases.is_empty() {
        println!("    regressed: {}", b.regressed_cases.join(", "));
    }
    if !b.improved_cases.is_empty() {
        println!("    improved:  {}", b.improved_cases.join(", "));
    }
}

fn print_gates(s: &EvalSummary) {
    for g in &s.gates {
        println!(
            "  gate {:<10} {} {}",
            g.kind,
            match (g.passed, g.no_baseline) {
                (_, true) => "NO BASELINE",
                (true, false) => "PASS",
                (false, false) => "FAIL",
            },
            g.message
        );
    }
    if s.interrupted {
        println!("  interrupted: the eval is stored as cancelled");
    } else if !s.gates.is_empty() {
        println!(
            "  result: {}",
            if s.passed {
                "every gate passed"
            } else {
                "a gate FAILED"
            }
        );
    }
}

/// JUnit XML: one testcase per dataset case, failing when its first scorer did not pass.
fn write_junit(path: &Path, summary: &EvalSummary, cases: &[EvalCaseRecord]) -> anyhow::Result<()> {
    let first = summary
        .scores
        .first()
        .map(|s| s.scorer.clone())
        .unwrap_or_default();
    let failures = cases.iter().filter(|c| !case_passed(c, &first)).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n",
        escape(&format!(
            "shopfloor eval {} {}",
            summary.workflow, summary.version
        )),
        cases.len()
    ));
    for case in cases {
        xml.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            escape(&summary.workflow),
            escape(&case.case_id),
            case.latency_ms as f64 / 1000.0
        ));
        if !case_passed(case, &first) {
            let actual = match (&case.output, &case.raw_output) {
                (Some(o), _) => o.to_string(),
                (None, Some(raw)) => format!("{} output: {raw}", case.status.as_str()),
                (None, None) => case.status.as_str().to_string(),
            };
            xml.push_str(&format!(
                "\n    <failure message=\"{}\">expected: {}\nactual: {}\nscores: {}</failure>\n  ",
                escape(&format!("{first} failed")),
                escape(&case.expected.to_string()),
                escape(&actual),
                escape(&serde_json::to_string(&case.scores)?)
            ));
        }
        xml.push_str("</testcase>\n");
    }
    xml.push_str("</testsuite>\n");
    std::fs::write(path, xml)?;
    Ok(())
}

fn case_passed(case: &EvalCaseRecord, scorer: &str) -> bool {
    // A case its first scorer did not score did not pass it.
    case.status != RunStatus::Failed && case.scores.get(scorer).is_some_and(|s| s.passed)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
