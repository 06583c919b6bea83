//! One module per subcommand; each is a thin shell over the engine.

pub mod audit;
pub mod check;
pub mod dashboard;
pub mod datasets;
pub mod drift;
pub mod eval;
pub mod evals;
pub mod experiment;
pub mod init;
pub mod intake;
pub mod keys;
pub mod models;
pub mod outcomes;
pub mod patterns;
pub mod policy;
pub mod portfolio;
pub mod promote;
pub mod quickstart;
pub mod report;
pub mod retention;
pub mod review;
pub mod run;
pub mod runs;
pub mod serve;
pub mod templates;

use std::path::PathBuf;
use std::process::ExitCode;

use shopfloor_engine::EngineError;

use crate::EXIT_CONFIG;

/// `--concurrency N`: at least 1 (0 would run nothing), at most 1024.
pub fn concurrency() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..=1024)
}

/// `--role ROLE`: one of the role names (listed in `--help` and in the error for another).
pub fn role() -> impl clap::builder::TypedValueParser<Value = shopfloor_core::access::Role> {
    use clap::builder::TypedValueParser;
    use shopfloor_core::access::Role;
    clap::builder::PossibleValuesParser::new(Role::CHOICES.iter().map(|(text, _)| *text))
        .try_map(|text| Role::parse(&text).ok_or_else(|| format!("unknown role {text}")))
}

/// Options every subcommand shares.
pub struct Global {
    pub project: PathBuf,
    pub database_url: Option<String>,
}

impl Global {
    /// The engine over this project and database, with the default options.
    pub async fn open_engine(&self) -> Result<shopfloor_engine::Engine, EngineError> {
        shopfloor_engine::Engine::open(shopfloor_engine::EngineOptions {
            project_dir: self.project.clone(),
            database_url: self.database_url.clone(),
            ..shopfloor_engine::EngineOptions::default()
        })
        .await
    }
}

/// Who is acting, for the audit log: `SHOPFLOOR_ACTOR`, else the login name.
pub fn actor() -> String {
    ["SHOPFLOOR_ACTOR", "USER", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(ms: i64) -> String {
    shopfloor_core::calendar::utc_datetime(ms)
}

/// Print an error the way a user needs it, and choose the exit code: 2 for a bad project,
/// input or usage, 1 for everything else.
pub fn report_error(error: &anyhow::Error) -> ExitCode {
    if let Some(engine) = error.downcast_ref::<EngineError>() {
        return report_engine_error(engine);
    }
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

fn report_engine_error(error: &EngineError) -> ExitCode {
    match error {
        EngineError::InvalidProject(diagnostics) => {
            for d in diagnostics {
                eprintln!("error: {d}");
            }
            eprintln!("{} problem(s) found; nothing was run.", diagnostics.len());
            ExitCode::from(EXIT_CONFIG)
        }
        EngineError::NoProject { .. }
        | EngineError::UnknownWorkflow { .. }
        | EngineError::UnknownModel { .. }
        | EngineError::InvalidInput(_)
        | EngineError::InvalidField { .. }
        | EngineError::UnknownBatch(_)
        | EngineError::BatchMismatch(_)
        | EngineError::InvalidDataset(_)
        | EngineError::NoDataset(_)
        | EngineError::UnknownEval(_)
        | EngineError::PromotionRefused { .. }
        | EngineError::NoExperiment(_)
        | EngineError::ExperimentConflict(_)
        | EngineError::Review(_) => {
            eprintln!("error: {error}");
            if let Some(hint) = hint(error) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(EXIT_CONFIG)
        }
        EngineError::Io { .. }
        | EngineError::WorkflowEdit { .. }
        | EngineError::Unscored { .. }
        | EngineError::Webhook(_)
        | EngineError::LimitReached(_)
        | EngineError::Store(_) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What to do next, in the CLI's own terms (the engine's messages do not name flags: they also
/// reach HTTP clients).
fn hint(error: &EngineError) -> Option<&'static str> {
    match error {
        EngineError::InvalidDataset(_) => Some("run the valid cases with --skip-invalid"),
        EngineError::NoDataset(_) => Some("or pass a dataset file with --dataset"),
        EngineError::ExperimentConflict(_) => {
            Some("shopfloor experiment stop WORKFLOW --decision keep|cut --note \"…\"")
        }
        _ => None,
    }
}

/// The project's `shopfloor.toml`, parsed alone (not its workflows), or an error naming the
/// file and each problem; `init` is the command that would make the project.
pub fn project_config(
    root: &std::path::Path,
    init: &str,
) -> anyhow::Result<shopfloor_core::spec::ProjectConfig> {
    use anyhow::Context;
    let path = root.join(shopfloor_engine::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a shopfloor project ({} not found); create one with `{init}`",
            root.display(),
            path.display()
        )
    })?;
    let (config, problems) =
        shopfloor_core::spec::parse_config(shopfloor_engine::CONFIG_FILE, &text);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        anyhow::bail!(
            "{} has {} problem(s)",
            shopfloor_engine::CONFIG_FILE,
            problems.len()
        );
    }
    Ok(config)
}
