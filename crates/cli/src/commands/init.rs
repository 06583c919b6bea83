//! `shopfloor init [DIR] [--template NAME]`: scaffold a project from a template of the gallery
//! (default: the ticket-triage example).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::templates::{self, Template};
use super::Global;

/// The project configuration every template starts from.
const CONFIG: &str = include_str!("../scaffold/shopfloor.toml");
/// The getting-started guide of the default template.
const GUIDE: &str = include_str!("../scaffold/GUIDE.md");

#[derive(clap::Args)]
#[command(after_help = "Templates (`shopfloor templates list`): ticket-triage, \
lead-qualification, invoice-fields, reply-drafting, contract-clauses, meeting-notes. Each \
writes shopfloor.toml (the embedded model and a commented vendor model), the workflow, its \
eval dataset and GUIDE.md.")]
pub struct Args {
    /// Where to create the project (default: the --project folder, i.e. the current one).
    dir: Option<PathBuf>,
    /// The template to start from.
    #[arg(long, default_value = "ticket-triage")]
    template: String,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| global.project.clone());
    let template = templates::find(&args.template)?;
    let files = files(template);
    templates::write_files(&dir, &files, args.force)?;
    println!(
        "Created a shopfloor project in {} from the {} template:",
        dir.display(),
        template.name
    );
    for (path, _) in &files {
        println!("  {path}");
    }
    println!(
        "\nNext: cd {} && shopfloor check && shopfloor eval {}   (then read GUIDE.md)",
        dir.display(),
        template.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Write the default example project into `dir`, refusing to overwrite unless `force`.
pub fn scaffold(dir: &Path, force: bool) -> anyhow::Result<()> {
    templates::write_files(dir, &files(&templates::TEMPLATES[0]), force)
}

/// The files of a project made from `template`.
fn files(template: &Template) -> Vec<(String, String)> {
    let guide = if template.name == templates::TEMPLATES[0].name {
        GUIDE.to_string()
    } else {
        format!(
            "# Getting started\n\n`shopfloor init --template {name}` created a project with one workflow, \
             `{name}`, its eval dataset (`datasets/{name}.jsonl`, {cases} cases) and this guide. \
             `shopfloor check` validates it; `shopfloor models pull smollm2` fetches the embedded \
             model; `shopfloor eval {name}` scores it against the dataset and its gates. \
             `shopfloor templates list` shows the other templates, and `shopfloor new workflow \
             NAME --template T` adds one to this project.\n\n{guide}",
            name = template.name,
            cases = template.cases(),
            guide = template.guide
        )
    };
    vec![
        ("shopfloor.toml".into(), CONFIG.into()),
        (
            format!("workflows/{}.toml", template.name),
            template.workflow.into(),
        ),
        (
            format!("datasets/{}.jsonl", template.name),
            template.dataset.into(),
        ),
        ("GUIDE.md".into(), guide),
        (".gitignore".into(), ".shopfloor/\n".into()),
    ]
}
