//! `shopfloor promote WORKFLOW --to STAGE`: move a workflow through its lifecycle, gated.

use std::process::ExitCode;

use shopfloor_core::spec::Stage;

use super::Global;

#[derive(clap::Args)]
#[command(
    after_help = "Gates: pilot and production need an owner and an [outcome]; \
production needs the last complete eval on the current version (its whole dataset, finished) \
to have passed its gates, and a live \
reviewer key for high-risk workflows. Retiring is always allowed. The workflow file's `stage` \
is rewritten and the promotion is written to the audit log with who did it \
(SHOPFLOOR_ACTOR, else USER)."
)]
pub struct Args {
    /// The workflow to move.
    pub workflow: String,
    /// The stage to move to.
    #[arg(long, value_enum)]
    pub to: Target,
}

/// The stages a workflow can be promoted to (draft is where it starts).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Target {
    Pilot,
    Production,
    Retired,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let to = match args.to {
        Target::Pilot => Stage::Pilot,
        Target::Production => Stage::Production,
        Target::Retired => Stage::Retired,
    };
    let engine = global.open_engine().await?;
    let promoted = engine.promote(&args.workflow, to, &super::actor()).await;
    engine.close().await;
    let promoted = promoted?;
    println!(
        "{} moved from {} to {} (audit entry {})",
        promoted.workflow,
        promoted.from.as_str(),
        promoted.to.as_str(),
        promoted.audit_seq
    );
    Ok(ExitCode::SUCCESS)
}
