//! The gallery of workflow templates: `shopfloor templates list`, `shopfloor init DIR
//! --template NAME` and `shopfloor new workflow NAME --template T`. Each template is a
//! workflow file, an eval dataset written for it and a guide section, embedded in the binary;
//! the README's gallery table gives each one's scores on the embedded model.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::json;

use super::Global;

/// One template of the gallery.
pub struct Template {
    pub name: &'static str,
    /// What it does, in a line.
    pub title: &'static str,
    /// The output contract's kind: labels, json or text.
    pub output: &'static str,
    /// How it is scored, in a few words.
    pub scored_by: &'static str,
    pub workflow: &'static str,
    pub dataset: &'static str,
    /// Its section of a project's guide.
    pub guide: &'static str,
}

impl Template {
    /// The dataset's cases (non-empty lines).
    pub fn cases(&self) -> usize {
        self.dataset
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    /// The workflow file for a workflow named `name`: the template's own dataset path (and
    /// examples drawn from it) point at `datasets/NAME.jsonl`.
    pub fn workflow_named(&self, name: &str) -> String {
        self.workflow.replace(
            &format!("datasets/{}.jsonl", self.name),
            &format!("datasets/{name}.jsonl"),
        )
    }
}

macro_rules! template {
    ($name:literal, $title:literal, $output:literal, $scored_by:literal) => {
        Template {
            name: $name,
            title: $title,
            output: $output,
            scored_by: $scored_by,
            workflow: include_str!(concat!(
                "../../templates/",
                $name,
                "/workflows/",
                $name,
                ".toml"
            )),
            dataset: include_str!(concat!(
                "../../templates/",
                $name,
                "/datasets/",
                $name,
                ".jsonl"
            )),
            guide: include_str!(concat!("../../templates/", $name, "/GUIDE.md")),
        }
    };
}

/// Every template; the first is what `init` scaffolds by default.
pub const TEMPLATES: [Template; 6] = [
    Template {
        name: "ticket-triage",
        title: "Route support tickets to the right queue",
        output: "labels",
        scored_by: "label_accuracy",
        workflow: include_str!("../scaffold/workflows/ticket-triage.toml"),
        dataset: include_str!("../scaffold/datasets/ticket-triage.jsonl"),
        guide: include_str!("../../templates/ticket-triage/GUIDE.md"),
    },
    template!(
        "lead-qualification",
        "Qualify inbound sales leads: qualified, nurture or disqualified",
        "labels",
        "label_accuracy"
    ),
    template!(
        "invoice-fields",
        "Extract vendor, number, dates, currency and amounts from supplier invoices",
        "json",
        "json_match, json_valid"
    ),
    template!(
        "reply-drafting",
        "Draft a first reply to a customer email, within the shop's policy",
        "text",
        "similarity, llm_judge"
    ),
    template!(
        "contract-clauses",
        "Flag risky contract clauses; held for two approvals",
        "labels",
        "label_accuracy"
    ),
    template!(
        "meeting-notes",
        "Summarise a meeting: decisions, actions with owners, open questions",
        "text",
        "coverage"
    ),
];

/// The template named `name`, or an error listing them.
pub fn find(name: &str) -> anyhow::Result<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
        anyhow::anyhow!(
            "unknown template \"{name}\"; templates: {} (see `shopfloor templates list`)",
            names.join(", ")
        )
    })
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Every template: its name, what it does, its output, how it is scored and its cases.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::List { json } = command;
    if json {
        let list: Vec<_> = TEMPLATES
            .iter()
            .map(|t| {
                json!({"name": t.name, "title": t.title, "output": t.output,
                    "scored_by": t.scored_by, "cases": t.cases()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &TEMPLATES {
        println!(
            "{:width$}  {:6}  {:3} cases  {}  (scored by {})",
            t.name,
            t.output,
            t.cases(),
            t.title,
            t.scored_by
        );
    }
    println!(
        "\nStart a project from one: shopfloor init DIR --template NAME\n\
         Add one to a project:     shopfloor new workflow NAME --template TEMPLATE"
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum NewCommand {
    /// Add a workflow to this project from a template: workflows/NAME.toml and its dataset
    /// datasets/NAME.jsonl, ready to `check` and `eval`.
    Workflow {
        /// The new workflow's name (lower case letters, digits and dashes).
        name: String,
        /// The template to start from (`shopfloor templates list`).
        #[arg(long)]
        template: String,
        /// Overwrite files that already exist.
        #[arg(long)]
        force: bool,
    },
}

pub fn new(global: &Global, command: NewCommand) -> anyhow::Result<ExitCode> {
    let NewCommand::Workflow {
        name,
        template,
        force,
    } = command;
    let template = find(&template)?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!("workflow name \"{name}\": use lower case letters, digits and dashes, e.g. vendor-invoices");
    }
    let root = &global.project;
    let config = super::project_config(
        root,
        &format!("shopfloor init --template {}", template.name),
    )?;
    let files = [
        (
            format!("workflows/{name}.toml"),
            template.workflow_named(&name),
        ),
        (
            format!("datasets/{name}.jsonl"),
            template.dataset.to_string(),
        ),
    ];
    write_files(root, &files, force)?;
    println!(
        "Added workflow {name} from the {} template ({} eval cases):",
        template.name,
        template.cases()
    );
    for (path, _) in &files {
        println!("  {path}");
    }
    if !config.models.contains_key("local") {
        println!(
            "note: the template routes to the embedded model `local`, which {} does not define: \
             add it (see `shopfloor init`'s shopfloor.toml) or change [route] models",
            shopfloor_engine::CONFIG_FILE
        );
    }
    println!("\nNext: shopfloor check && shopfloor eval {name}");
    Ok(ExitCode::SUCCESS)
}

/// Write `files` under `root`, refusing to overwrite any unless `force` (then nothing is
/// written).
pub fn write_files(root: &Path, files: &[(String, String)], force: bool) -> anyhow::Result<()> {
    if !force {
        let existing: Vec<&str> = files
            .iter()
            .map(|(p, _)| p.as_str())
            .filter(|p| root.join(p).exists())
            .collect();
        if !existing.is_empty() {
            bail!(
                "{} already has {}; nothing was written (use --force to overwrite)",
                root.display(),
                existing.join(", ")
            );
        }
    }
    for (path, content) in files {
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, content)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}
