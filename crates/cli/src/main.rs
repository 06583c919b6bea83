//! `shopfloor`: workflows as code, run on any model, every run recorded.

mod commands;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a bad project, bad input or bad usage (as opposed to a failed run).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "shopfloor",
    version,
    about = "Take company AI workflows from demo to production: workflows as code, any model, every run recorded.",
    long_about = None,
)]
struct Cli {
    /// Run as if started in DIR (like `git -C`): the project folder holding shopfloor.toml;
    /// relative paths in other arguments are taken from there too.
    #[arg(short = 'C', long = "project", global = true, value_name = "DIR")]
    project: Option<PathBuf>,

    /// PostgreSQL URL to record into instead of the embedded SQLite file (.shopfloor/shopfloor.db).
    #[arg(
        long,
        global = true,
        env = "SHOPFLOOR_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scaffold a project from a template: shopfloor.toml, the workflow, its dataset, a guide.
    Init(commands::init::Args),
    /// The gallery of workflow templates, each with a dataset written for it.
    #[command(subcommand)]
    Templates(commands::templates::Command),
    /// Proposed processes (intake/NAME.toml): rank them by value and feasibility, accept one
    /// as a draft workflow.
    #[command(subcommand)]
    Intake(commands::intake::Command),
    /// Shared prompt patterns (patterns/*.j2): each with its macros, the workflows using it and
    /// their latest eval scores.
    #[command(subcommand)]
    Patterns(commands::patterns::Command),
    /// Add to this project: `new workflow NAME --template T`.
    #[command(subcommand)]
    New(commands::templates::NewCommand),
    /// Validate the whole project and print each workflow's version hash.
    Check,
    /// Run a workflow on one input (--json) or a file of inputs (--input).
    Run(commands::run::Args),
    /// Scaffold the example (if needed), pull the embedded model and evaluate it: no key, no network.
    Quickstart(commands::quickstart::Args),
    /// Score a workflow against its dataset, compare with the baseline, apply the gates.
    Eval(commands::eval::Args),
    /// Stored eval runs: list, show, set the baseline, compare two.
    #[command(subcommand)]
    Evals(commands::evals::Command),
    /// Show recorded runs.
    #[command(subcommand)]
    Runs(commands::runs::Command),
    /// The review queue: list, claim the next item, show, approve, edit, reject, figures.
    #[command(subcommand)]
    Review(commands::review::Command),
    /// Eval datasets: grow them from reviewers' decisions.
    #[command(subcommand)]
    Datasets(commands::datasets::Command),
    /// A workflow's outcomes per week: accepted outputs, minutes saved, cost per accepted,
    /// the KPI against its target, adoption; `outcomes record` records the KPI.
    Outcomes(commands::outcomes::Args),
    /// A workflow's drift: the last 24 h and 7 d against its reference, check by check.
    Drift(commands::drift::Args),
    /// Every workflow's health on one page, with keep / fix / cut and the reasons.
    Portfolio(commands::portfolio::Args),
    /// Experiments: a variant takes a share of a workflow's runs until the numbers say keep or
    /// cut (start, status, stop); `simulate` checks the statistics that decide.
    #[command(subcommand)]
    Experiment(commands::experiment::Command),
    /// Reports: the weekly operating review.
    #[command(subcommand)]
    Report(commands::report::Command),
    /// The embedded local models: list them, pull their weights.
    #[command(subcommand)]
    Models(commands::models::Command),
    /// The AI usage policy, written from the config: render it as Markdown or HTML.
    #[command(subcommand)]
    Policy(commands::policy::Command),
    /// Move a workflow to pilot, production or retired, if its gates allow; audited.
    Promote(commands::promote::Args),
    /// Apply [retention] now: delete old runs and strip older runs' texts, as serve does.
    Retention(commands::retention::Args),
    /// The audit log: list it, verify its hash chain.
    #[command(subcommand)]
    Audit(commands::audit::Command),
    /// API keys for the server: create (shown once), list, revoke.
    #[command(subcommand)]
    Keys(commands::keys::Command),
    /// The production runtime: an OpenAI-compatible gateway and the workflow API over HTTP.
    Serve(commands::serve::Args),
    /// The dashboard that `serve` serves: print a one-time sign-in link.
    #[command(subcommand)]
    Dashboard(commands::dashboard::Command),
}

/// The server's many small per-request allocations contend on glibc malloc's arena locks across
/// tokio's worker threads; mimalloc's thread-local heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up its own: JSON lines, and trace export when asked.
    if !matches!(cli.command, Command::Serve(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("SHOPFLOOR_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = &cli.project {
        if let Err(e) = std::env::set_current_dir(dir) {
            eprintln!("error: cannot use project folder {}: {e}", dir.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    // `init` makes a project here; every other command works on the project this folder is
    // in, found as git finds a repository.
    let project = match &cli.command {
        Command::Init(_) => PathBuf::from("."),
        _ => find_project().unwrap_or_else(|| PathBuf::from(".")),
    };
    let global = commands::Global {
        project,
        database_url: cli.database_url,
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init(args) => commands::init::run(&global, args),
            Command::Check => commands::check::run(&global).await,
            Command::Run(args) => commands::run::run(&global, args).await,
            Command::Quickstart(args) => commands::quickstart::run(args).await,
            Command::Eval(args) => commands::eval::run(&global, args).await,
            Command::Evals(command) => commands::evals::run(&global, command).await,
            Command::Runs(command) => commands::runs::run(&global, command).await,
            Command::Review(command) => commands::review::run(&global, command).await,
            Command::Datasets(command) => commands::datasets::run(&global, command).await,
            Command::Outcomes(args) => commands::outcomes::run(&global, args).await,
            Command::Drift(args) => commands::drift::run(&global, args).await,
            Command::Retention(args) => commands::retention::run(&global, args).await,
            Command::Portfolio(args) => commands::portfolio::run(&global, args).await,
            Command::Report(command) => commands::report::run(&global, command).await,
            Command::Templates(command) => commands::templates::run(command),
            Command::Intake(command) => commands::intake::run(&global, command),
            Command::Patterns(command) => commands::patterns::run(&global, command).await,
            Command::New(command) => commands::templates::new(&global, command),
            Command::Experiment(command) => commands::experiment::run(&global, command).await,
            Command::Models(command) => commands::models::run(command),
            Command::Policy(command) => commands::policy::run(&global, command),
            Command::Promote(args) => commands::promote::run(&global, args).await,
            Command::Audit(command) => commands::audit::run(&global, command).await,
            Command::Keys(command) => commands::keys::run(&global, command).await,
            Command::Serve(args) => commands::serve::run(&global, args).await,
            Command::Dashboard(command) => commands::dashboard::run(&global, command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => commands::report_error(&e),
    }
}

/// The nearest folder, from the current one up, that holds `shopfloor.toml`: `.` when it is the
/// current folder, else its absolute path (so relative paths in arguments still mean what
/// they mean from here).
fn find_project() -> Option<PathBuf> {
    let here = std::env::current_dir().ok()?;
    let found = here
        .ancestors()
        .find(|dir| dir.join(shopfloor_engine::CONFIG_FILE).is_file())?;
    Some(if found == here {
        PathBuf::from(".")
    } else {
        found.to_path_buf()
    })
}
