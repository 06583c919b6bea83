//! `shopfloor intake rank|accept`: the processes owners propose (`intake/NAME.toml`), ranked
//! by value and feasibility with the reasons, and a proposal turned into a draft workflow from
//! a template.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::json;
use shopfloor_core::spec::intake::{
    assess, draft_workflow, parse_intake, rank, Intake, IntakeOutput, DEFAULT_HOURLY_RATE,
    MIN_FIRST_EVAL_CASES,
};
use shopfloor_core::spec::{ModelUse, ProjectConfig};

use super::templates::{self, write_files};
use super::Global;
use crate::EXIT_CONFIG;

/// Where the proposals live, under the project.
const INTAKE_DIR: &str = "intake";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Rank every intake/NAME.toml: value (hours a month at [intake] hourly_rate) and
    /// feasibility, with the reasons, the most feasible first.
    #[command(after_help = "An intake file:

  process = \"Key supplier invoices into the ledger\"
  owner = \"priya@acme.example\"
  cases_per_week = 400
  minutes_per_case = 3
  error_cost = \"medium\"          # low | medium | high
  data_class = \"confidential\"    # public | internal | confidential | restricted
  risk = \"medium\"                # low | medium | high
  examples_available = true      # do known-good past cases exist?
  output = \"fields\"              # labels | fields | text")]
    Rank {
        #[arg(long)]
        json: bool,
    },
    /// Turn a proposal into a draft workflow from a template: its owner, risk, data class and
    /// [outcome] from the intake, an empty dataset that must hold 30 of the owner's own cases
    /// before the first eval.
    Accept {
        /// The intake's name (intake/NAME.toml); the workflow gets the same name.
        name: String,
        /// The template to start from (default: by the intake's output: ticket-triage for
        /// labels, invoice-fields for fields, reply-drafting for text).
        #[arg(long)]
        template: Option<String>,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Rank { json } => rank_command(&global.project, json),
        Command::Accept {
            name,
            template,
            force,
        } => accept(&global.project, &name, template.as_deref(), force),
    }
}

/// Every intake file of the project, parsed; problems are printed as they are found.
fn read_intakes(root: &Path) -> anyhow::Result<(Vec<Intake>, usize)> {
    let dir = root.join(INTAKE_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no {INTAKE_DIR}/ folder in {}: write one file per proposed process, \
             {INTAKE_DIR}/NAME.toml (see `shopfloor intake rank --help`)",
            root.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut intakes = Vec::new();
    let mut problems = 0;
    for path in paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = format!("{INTAKE_DIR}/{name}.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (intake, diagnostics) = parse_intake(&name, &file, &text);
        for d in &diagnostics {
            eprintln!("error: {d}");
        }
        problems += diagnostics.len();
        if let (Some(intake), true) = (intake, diagnostics.is_empty()) {
            intakes.push(intake);
        }
    }
    Ok((intakes, problems))
}

/// Whether a chat model of the project may see `class` data.
fn model_for(config: &ProjectConfig, class: shopfloor_core::spec::DataClass) -> bool {
    config
        .models
        .values()
        .any(|m| m.kind == ModelUse::Chat && m.data_classes.contains(&class))
}

fn rank_command(root: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = super::project_config(root, "shopfloor init")?;
    let (intakes, problems) = read_intakes(root)?;
    let rate = config.hourly_rate.unwrap_or(DEFAULT_HOURLY_RATE);
    let ranked = rank(
        intakes
            .iter()
            .map(|i| assess(i, model_for(&config, i.data_class), rate))
            .collect(),
    );
    let suggestion = |i: usize, a: &shopfloor_core::spec::intake::Assessment| {
        if !a.blockers.is_empty() {
            "blocked"
        } else if i == 0 {
            "start here"
        } else if a.feasibility >= 0.6 {
            "next"
        } else {
            "later"
        }
    };
    if json {
        let list: Vec<_> = ranked
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut v = json!(a);
                v["rank"] = json!(i + 1);
                v["suggestion"] = json!(suggestion(i, a));
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"hourly_rate": rate, "intakes": list}))?
        );
    } else if ranked.is_empty() {
        println!("no valid intake files to rank");
    } else {
        let rate_note = match config.hourly_rate {
            Some(_) => String::new(),
            None => " (the default; set [intake] hourly_rate in shopfloor.toml)".into(),
        };
        println!("Value at {rate} an hour{rate_note}; the most feasible first.\n");
        for (i, a) in ranked.iter().enumerate() {
            println!(
                "{}. {} — {} ({})\n   {:.0} hours a month, {:.0} a month · feasibility {:.2} · {}",
                i + 1,
                a.name,
                a.process,
                a.owner,
                a.hours_per_month,
                a.value_per_month,
                a.feasibility,
                suggestion(i, a)
            );
            for b in &a.blockers {
                println!("   blocked: {b}");
            }
            for r in &a.reasons {
                println!("   - {r}");
            }
        }
        println!("\nNext: shopfloor intake accept NAME [--template T]");
    }
    Ok(if problems > 0 {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    })
}

fn accept(
    root: &Path,
    name: &str,
    template: Option<&str>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    super::project_config(root, "shopfloor init")?;
    let file = format!("{INTAKE_DIR}/{name}.toml");
    let text = std::fs::read_to_string(root.join(&file))
        .with_context(|| format!("cannot read {file} (an intake of this name)"))?;
    let (intake, problems) = parse_intake(name, &file, &text);
    for p in &problems {
        eprintln!("error: {p}");
    }
    let Some(intake) = intake.filter(|_| problems.is_empty()) else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let template = templates::find(template.unwrap_or(match intake.output {
        IntakeOutput::Labels => "ticket-triage",
        IntakeOutput::Fields => "invoice-fields",
        IntakeOutput::Text => "reply-drafting",
    }))?;
    let workflow = draft_workflow(&template.workflow_named(name), &intake)
        .map_err(|e| anyhow::anyhow!("template {}: {e}", template.name))?;
    let files = [
        (format!("workflows/{name}.toml"), workflow),
        (format!("datasets/{name}.jsonl"), String::new()),
    ];
    write_files(root, &files, force)?;
    println!(
        "Drafted workflow {name} from intake/{name}.toml and the {} template:",
        template.name
    );
    for (path, _) in &files {
        println!("  {path}");
    }
    println!(
        "\nNext: adapt its input schema, prompt and output to the process; write at least \
         {MIN_FIRST_EVAL_CASES} known-good cases of your own into datasets/{name}.jsonl (the \
         first eval refuses fewer; `shopfloor templates list` shows datasets to copy the form \
         from); then shopfloor check && shopfloor eval {name}"
    );
    Ok(ExitCode::SUCCESS)
}
