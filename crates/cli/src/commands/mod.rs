//! One module per subcommand; each is a thin shell over the engine.

pub mod check;
pub mod eval;
pub mod evals;
pub mod init;
pub mod models;
pub mod quickstart;
pub mod run;
pub mod runs;

use std::path::PathBuf;
use std::process::ExitCode;

use shopfloor_engine::EngineError;

use crate::EXIT_CONFIG;

/// Options every subcommand shares.
pub struct Global {
    pub project: PathBuf,
    pub database_url: Option<String>,
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
        | EngineError::UnknownBatch(_)
        | EngineError::BatchMismatch(_)
        | EngineError::InvalidDataset(_)
        | EngineError::NoDataset(_)
        | EngineError::UnknownEval(_) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        EngineError::Io { .. } | EngineError::Store(_) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
