//! `shopfloor check`: validate everything, print each workflow's version.

use std::process::ExitCode;

use shopfloor_engine::{Project, Records};

use super::Global;

pub async fn run(global: &Global) -> anyhow::Result<ExitCode> {
    let project = Project::load(&global.project)?;
    println!(
        "{:<28} {:<11} {:<7} {:<13} {:<13} route",
        "workflow", "stage", "risk", "data class", "version"
    );
    for (name, workflow) in &project.workflows {
        let spec = &workflow.spec;
        let route: Vec<&str> = spec.route.models.iter().map(|m| m.value.as_str()).collect();
        println!(
            "{:<28} {:<11} {:<7} {:<13} {:<13} {}",
            name,
            spec.stage.as_str(),
            spec.risk.as_str(),
            spec.data_class.as_str(),
            workflow.version,
            route.join(" → ")
        );
    }
    let with_variants: Vec<&str> = project
        .workflows
        .iter()
        .filter(|(_, w)| !w.spec.variants.is_empty())
        .map(|(name, _)| name.as_str())
        .collect();
    if !with_variants.is_empty() {
        // Which variants may take traffic is in the store: their versions' last evals. Only
        // read there (no engine: `check` records nothing), and not a failure when it is out
        // of reach: the project is still valid.
        match Records::open(&global.project, global.database_url.as_deref()).await {
            Ok(records) => list_variants(&project, &records, &with_variants).await?,
            Err(e) => println!(
                "\nwhich variants may take traffic is unknown: the database cannot be opened ({e})"
            ),
        }
    }
    println!(
        "ok: {} model(s), {} workflow(s){}, no problems",
        project.config.models.len(),
        project.workflows.len(),
        if !with_variants.is_empty() {
            format!(", {} with variants", with_variants.len())
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Each variant of `workflows` with its version and whether it may take traffic.
async fn list_variants(
    project: &Project,
    records: &Records,
    workflows: &[&str],
) -> anyhow::Result<()> {
    println!(
        "\n{:<28} {:<20} {:<13} experiment",
        "workflow", "variant", "version"
    );
    for workflow in workflows {
        for v in records.variant_statuses(project, workflow).await? {
            println!(
                "{:<28} {:<20} {:<13} {}: {}",
                workflow,
                v.name,
                v.version,
                if v.eligible { "eligible" } else { "not yet" },
                v.reason(workflow)
            );
        }
    }
    Ok(())
}
