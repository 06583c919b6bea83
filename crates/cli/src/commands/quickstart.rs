//! `shopfloor quickstart [DIR]`: from nothing to an evaluated workflow on the embedded model.

use std::path::PathBuf;
use std::process::ExitCode;

use shopfloor_engine::store_types::RunStatus;
use shopfloor_engine::{Engine, EngineOptions, EvalRequest, CONFIG_FILE};

#[derive(clap::Args)]
pub struct Args {
    /// The project folder; the example is scaffolded there if it has no shopfloor.toml.
    #[arg(default_value = "shopfloor-demo")]
    dir: PathBuf,
    /// Evaluate only the first N cases of the example dataset.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.dir.join(CONFIG_FILE).exists() {
        super::init::scaffold(&args.dir, false)?;
        eprintln!("created the example project in {}", args.dir.display());
    } else {
        eprintln!("using the project in {}", args.dir.display());
    }
    let engine = Engine::open(EngineOptions {
        project_dir: args.dir.clone(),
        ..EngineOptions::default()
    })
    .await?;
    let workflow = "ticket-triage";
    super::models::ensure_pulled(&engine.local_models_for(workflow, None)?)?;
    let request = EvalRequest {
        workflow: workflow.to_string(),
        concurrency: 2,
        limit: args.limit,
        ..EvalRequest::default()
    };
    let summary = super::eval::evaluate(&engine, &request).await;
    // A few live runs, so that the dashboard's runs and outcomes have something to show.
    let (mut ran, mut held) = (0, 0);
    if summary.is_ok() {
        for (subject, body) in SAMPLE_TICKETS {
            let input = serde_json::json!({"subject": subject, "body": body});
            match engine.run_one(workflow, input, None).await {
                Ok(run) => {
                    ran += 1;
                    held += usize::from(run.status == RunStatus::Held);
                }
                Err(e) => eprintln!("a sample run failed: {e}"),
            }
        }
    }
    engine.close().await;
    let summary = summary?;
    println!();
    super::eval::print_scorecard(&summary);
    let dir = args.dir.display();
    println!(
        "\nThat is a real eval of a real (tiny, CPU-only) model. Next:\n\
         \x20 cd {dir}\n\
         \x20 cat GUIDE.md                                  # what the files are\n\
         \x20 shopfloor evals baseline {id}   # make this eval the baseline\n\
         \x20 $EDITOR workflows/ticket-triage.toml          # change the prompt, then:\n\
         \x20 shopfloor eval ticket-triage --gate           # compared with the baseline; exit 1 if a gate fails\n\
         \x20 shopfloor run ticket-triage --json '{{\"subject\": \"Refund\", \"body\": \"I was charged twice\"}}'\n\
         \x20 shopfloor runs list\n\n\
         The dashboard shows this eval and the {ran} sample run(s) it just made{waiting}:\n\
         \x20 shopfloor -C {dir} serve                       # then, in another terminal:\n\
         \x20 shopfloor -C {dir} dashboard link              # open the URL it prints",
        id = summary.eval_id,
        waiting = match held {
            0 => String::new(),
            1 => ", one of them held for review".to_string(),
            n => format!(", {n} of them held for review"),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Tickets the quickstart runs after its eval; the example holds `account` answers, so the
/// third waits in the review queue (the quickstart test checks it does).
const SAMPLE_TICKETS: [(&str, &str); 3] = [
    (
        "Refund",
        "I was charged twice for my subscription this month",
    ),
    (
        "App crashes",
        "The app shows an error when I open the reports page",
    ),
    (
        "Locked out",
        "I cannot log in, the password reset mail never arrives",
    ),
];
