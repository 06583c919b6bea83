//! `shopfloor patterns list`: the project's prompt patterns (`patterns/*.j2`), the macros each
//! defines, the workflows whose templates import it, and those workflows' latest eval scores —
//! so the pattern that holds up spreads.

use std::process::ExitCode;

use serde_json::{json, Value};
use shopfloor_engine::{Project, Records};

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Every pattern with its macros, the workflows using it and their latest eval scores.
    #[command(
        after_help = "A pattern is a file of minijinja macros under patterns/, e.g. \
patterns/classify.j2 with {% macro classify(labels, text) %}…{% endmacro %}. A workflow's \
template imports it by path: {% from \"patterns/classify.j2\" import classify %}. A workflow's \
version covers the text of every pattern it imports, so changing a pattern makes a new \
version of each workflow that uses it."
    )]
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    let Command::List { json } = command;
    let project = Project::load(&global.project)?;
    // Scores are read from the store only (nothing is recorded); out of reach, they are left out.
    let records = Records::open(&global.project, global.database_url.as_deref())
        .await
        .ok();
    let mut list = Vec::new();
    for path in project.patterns.paths() {
        let mut users = Vec::new();
        for (name, workflow) in &project.workflows {
            if !workflow.templates.patterns_used().contains_key(path) {
                continue;
            }
            let eval = match &records {
                Some(records) => latest_eval(records, name, &workflow.version).await?,
                None => Value::Null,
            };
            users.push(json!({"workflow": name, "version": workflow.version, "last_eval": eval}));
        }
        list.push(json!({
            "pattern": path,
            "macros": project.patterns.macros(path),
            "workflows": users,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no patterns: write minijinja macros under patterns/NAME.j2 (see --help)");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &list {
        let macros: Vec<&str> = p["macros"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{}  macros: {}",
            p["pattern"].as_str().unwrap_or(""),
            macros.join(", ")
        );
        let users = p["workflows"].as_array().cloned().unwrap_or_default();
        if users.is_empty() {
            println!("  used by no workflow");
        }
        for u in users {
            let scores = match u["last_eval"]["scores"].as_array() {
                Some(scores) => scores
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {:.3}",
                            s["scorer"].as_str().unwrap_or("?"),
                            s["mean"].as_f64().unwrap_or(f64::NAN)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "no eval of this version yet".into(),
            };
            println!(
                "  {} (version {}): {scores}",
                u["workflow"].as_str().unwrap_or(""),
                u["version"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The last complete eval of `workflow` at `version`: its id, whether it passed, its scores.
async fn latest_eval(records: &Records, workflow: &str, version: &str) -> anyhow::Result<Value> {
    Ok(match records.last_complete_eval(workflow, version).await? {
        Some(e) => json!({
            "id": e.id,
            "passed": e.passed,
            "scores": e.summary.as_ref().map(|s| s["scores"].clone()).unwrap_or(Value::Null),
        }),
        None => Value::Null,
    })
}
