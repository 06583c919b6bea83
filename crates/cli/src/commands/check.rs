//! `shopfloor check`: validate everything, print each workflow's version.

use std::process::ExitCode;

use shopfloor_engine::Project;

use super::Global;

pub fn run(global: &Global) -> anyhow::Result<ExitCode> {
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
    println!(
        "ok: {} model(s), {} workflow(s), no problems",
        project.config.models.len(),
        project.workflows.len()
    );
    Ok(ExitCode::SUCCESS)
}
