//! `shopfloor init [DIR]`: scaffold the example project.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::Global;

/// The example project, embedded in the binary.
const FILES: [(&str, &str); 5] = [
    ("shopfloor.toml", include_str!("../scaffold/shopfloor.toml")),
    (
        "workflows/ticket-triage.toml",
        include_str!("../scaffold/workflows/ticket-triage.toml"),
    ),
    (
        "datasets/ticket-triage.jsonl",
        include_str!("../scaffold/datasets/ticket-triage.jsonl"),
    ),
    ("GUIDE.md", include_str!("../scaffold/GUIDE.md")),
    (".gitignore", ".shopfloor/\n"),
];

#[derive(clap::Args)]
pub struct Args {
    /// Where to create the project (default: the --project folder, i.e. the current one).
    dir: Option<PathBuf>,
    /// Overwrite files that already exist.
    #[arg(long)]
    force: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| global.project.clone());
    scaffold(&dir, args.force)?;
    println!("Created a shopfloor project in {}:", dir.display());
    for (path, _) in FILES {
        println!("  {path}");
    }
    println!(
        "\nNext: cd {} && shopfloor check   (then read GUIDE.md)",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Write the example project into `dir`, refusing to overwrite unless `force`.
pub fn scaffold(dir: &Path, force: bool) -> anyhow::Result<()> {
    if !force {
        let existing: Vec<&str> = FILES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| dir.join(p).exists())
            .collect();
        if !existing.is_empty() {
            bail!(
                "{} already has {}; nothing was written (use --force to overwrite)",
                dir.display(),
                existing.join(", ")
            );
        }
    }
    for (path, content) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, content)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(())
}
