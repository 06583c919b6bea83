//! `shopfloor policy render`: the organisation's AI usage policy, written from the project's
//! configuration. Reads only the project files: no database, no network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shopfloor_core::policy_doc;
use shopfloor_engine::Project;

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write the AI usage policy from shopfloor.toml and workflows/ (Markdown or HTML).
    #[command(
        long_about = "Write the organisation's AI usage policy from the project's configuration: \
which models exist and where they run, which data classes each may see, what personal data is \
redacted or blocked, the review path per risk tier, who may do what (roles), what is kept, and \
every workflow with its owner, stage, risk and data class. Gaps a reader should know about (a \
workflow without an owner, an outside model allowed restricted data, no personal-data policy) \
are listed at the end.

The document says what the engine enforces, so it can be published as is; to change it, change \
the configuration and render it again. Needs no database and no network.

Examples:
  shopfloor policy render > AI-POLICY.md
  shopfloor policy render --output policy.html"
    )]
    Render(RenderArgs),
}

#[derive(clap::Args)]
pub struct RenderArgs {
    /// md (Markdown) or html (one self-contained page). Default: html when --output ends in
    /// .html or .htm, md otherwise.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,
    /// Write to FILE (atomically: a temporary file beside it, then a rename) instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// The date in the "generated on" line, as YYYY-MM-DD. Default: today (UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    date: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Markdown (CommonMark with tables).
    #[value(alias = "markdown")]
    Md,
    /// One HTML page with inline CSS and no external assets.
    #[value(alias = "htm")]
    Html,
}

pub fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Render(args) => render(global, args),
    }
}

fn render(global: &Global, args: RenderArgs) -> anyhow::Result<ExitCode> {
    let project = Project::load(&global.project)?;
    let workflows: Vec<_> = project.workflows.values().map(|w| w.spec.clone()).collect();
    let date = args.date.unwrap_or_else(today);
    let document = policy_doc::build(&project.config, &workflows, &date);
    let format = args.format.unwrap_or_else(|| {
        let html = args
            .output
            .as_deref()
            .and_then(Path::extension)
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
        if html {
            Format::Html
        } else {
            Format::Md
        }
    });
    let text = match format {
        Format::Md => document.to_markdown(),
        Format::Html => document.to_html(),
    };
    match &args.output {
        Some(path) => {
            write_atomically(path, text.as_bytes())?;
            eprintln!(
                "wrote the AI usage policy to {} ({} open point{})",
                path.display(),
                document.gaps.len(),
                if document.gaps.len() == 1 { "" } else { "s" }
            );
            for gap in &document.gaps {
                eprintln!("  - {}", gap.to_plain());
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write the policy to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `bytes` to a temporary file beside `path`, then rename it over `path`: a reader sees
/// the old document or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

fn parse_date(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    let month: u32 = text.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(0);
    let day: u32 = text.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(0);
    if shape && (1..=12).contains(&month) && (1..=31).contains(&day) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "\"{text}\" is not a date; expected YYYY-MM-DD, e.g. 2025-03-14"
        ))
    }
}

/// Today's date in UTC as YYYY-MM-DD.
fn today() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    super::format_time(ms).chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_is_a_date() {
        assert!(parse_date(&today()).is_ok(), "{}", today());
    }

    #[test]
    fn dates_are_checked() {
        assert!(parse_date("2025-03-14").is_ok());
        for bad in [
            "2025-3-14",
            "14.03.2025",
            "2025-13-01",
            "2025-00-10",
            "yesterday",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
