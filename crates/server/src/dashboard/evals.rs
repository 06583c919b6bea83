//! `/evals`, one eval, and two evals compared case by case (with a CSV).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use minijinja::{context, Value};
use serde::Deserialize;
use shopfloor_engine::store_types::{EvalCaseRecord, RunStatus};
use shopfloor_engine::EvalSummary;

use super::{render, PageError, Viewer};
use crate::AppState;

use super::pages::frame;
use super::runs::{csv_line, csv_response};

#[derive(Debug, Deserialize)]
pub(crate) struct EvalsQuery {
    #[serde(default)]
    workflow: Option<String>,
}

pub(crate) async fn evals(
    State(state): State<AppState>,
    viewer: Viewer,
    crate::Query(query): crate::Query<EvalsQuery>,
) -> Result<Response, PageError> {
    let workflow = query.workflow.filter(|w| !w.is_empty());
    let evals = state
        .engine_call(state.engine.records().evals(workflow.as_deref(), 100))
        .await?;
    let mut baselines: HashMap<String, Option<String>> = HashMap::new();
    for e in &evals {
        if !baselines.contains_key(&e.workflow) {
            let b = state
                .engine_call(state.engine.records().baseline(&e.workflow))
                .await?;
            baselines.insert(e.workflow.clone(), b);
        }
    }
    let rows: Vec<Value> = evals
        .iter()
        .map(|e| {
            let summary: Option<EvalSummary> = e
                .summary
                .clone()
                .and_then(|s| serde_json::from_value(s).ok());
            let baseline = baselines.get(&e.workflow).cloned().flatten();
            context! {
                eval => Value::from_serialize(e),
                summary => summary.map(|s| Value::from_serialize(&s)),
                is_baseline => baseline.as_deref() == Some(e.id.as_str()),
                baseline => baseline,
            }
        })
        .collect();
    let workflows: Vec<String> = state.engine.project.workflows.keys().cloned().collect();
    Ok(render(
        "evals.html",
        context! { evals => rows, workflow => workflow, workflows => workflows, ..frame(&viewer, "Evals", "/evals") },
    ))
}

pub(crate) async fn eval(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let record = state
        .engine_call(state.engine.records().eval(&id))
        .await?
        .ok_or_else(|| {
            PageError::not_found(format!("no eval with id {id}")).with_viewer(viewer.clone())
        })?;
    let summary: Option<EvalSummary> = record
        .summary
        .clone()
        .and_then(|s| serde_json::from_value(s).ok());
    let cases = state
        .engine_call(state.engine.records().all_eval_cases(&id))
        .await?;
    let baseline = state
        .engine_call(state.engine.records().baseline(&record.workflow))
        .await?;
    Ok(render(
        "eval.html",
        context! {
            eval => Value::from_serialize(&record),
            summary => summary.map(|s| Value::from_serialize(&s)),
            cases => cases.iter().map(case_row).collect::<Vec<_>>(),
            baseline => baseline.filter(|b| b != &id),
            ..frame(&viewer, &format!("Eval {id}"), "/evals")
        },
    ))
}

fn case_row(case: &EvalCaseRecord) -> Value {
    context! {
        case => Value::from_serialize(case),
        passed => case_passed(case),
        output => shown_output(case),
    }
}

/// A case's output as one line, or its status in brackets when it has none.
fn shown_output(case: &EvalCaseRecord) -> String {
    case.output
        .as_ref()
        .map(|o| o.to_string())
        .unwrap_or_else(|| format!("({})", case.status.as_str()))
}

/// How a case moved from one eval to the next: passed before (if it was there) and now.
fn delta(was: Option<bool>, is: bool) -> &'static str {
    match (was, is) {
        (Some(false), true) => "fixed",
        (Some(true), false) => "broken",
        (None, _) => "new",
        _ => "",
    }
}

/// Evals of the workflow shown in a case's history.
const CASE_HISTORY: u32 = 10;

/// `GET /evals/ID/cases/CASE`: one case of an eval: its input, expected answer, output (and
/// the model's raw text), each scorer's verdict with its reason, and the same case in the
/// workflow's recent evals, newest first.
pub(crate) async fn case(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, case_id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let not_found = |viewer: &Viewer| {
        PageError::not_found(format!("eval {id} has no case {case_id}")).with_viewer(viewer.clone())
    };
    let record = state
        .engine_call(state.engine.records().eval(&id))
        .await?
        .ok_or_else(|| not_found(&viewer))?;
    let find = |cases: Vec<EvalCaseRecord>| cases.into_iter().find(|c| c.case_id == case_id);
    let case = find(
        state
            .engine_call(state.engine.records().all_eval_cases(&id))
            .await?,
    )
    .ok_or_else(|| not_found(&viewer))?;
    // An eval's runs are recorded before its summary exists: no write-through needed.
    let run = state
        .engine_call(state.engine.records().run_record(&case.run_id))
        .await?;
    let mut history = Vec::new();
    for other in state
        .engine_call(
            state
                .engine
                .records()
                .evals(Some(&record.workflow), CASE_HISTORY),
        )
        .await?
    {
        let found = if other.id == id {
            Some(case.clone())
        } else {
            find(
                state
                    .engine_call(state.engine.records().all_eval_cases(&other.id))
                    .await?,
            )
        };
        history.push(context! {
            eval => Value::from_serialize(&other),
            row => found.as_ref().map(case_row),
            current => other.id == id,
        });
    }
    Ok(render(
        "eval_case.html",
        context! {
            eval => Value::from_serialize(&record),
            row => case_row(&case),
            input => run.map(|r| Value::from_serialize(&r.input)),
            history => history,
            ..frame(&viewer, &format!("Case {case_id}"), "/evals")
        },
    ))
}

/// Every scorer passed the case.
fn case_passed(case: &EvalCaseRecord) -> bool {
    case.status == RunStatus::Ok && case.scores.values().all(|s| s.passed)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompareQuery {
    /// `all`, `failures` (failed in either) or `changed` (output or verdict differs).
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

pub(crate) async fn compare(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((a, b)): Path<(String, String)>,
    crate::Query(query): crate::Query<CompareQuery>,
) -> Result<Response, PageError> {
    let (Some(left), Some(right)) = (
        state.engine_call(state.engine.records().eval(&a)).await?,
        state.engine_call(state.engine.records().eval(&b)).await?,
    ) else {
        return Err(
            PageError::not_found(format!("both evals must exist: {a}, {b}")).with_viewer(viewer),
        );
    };
    let mode = query.mode.as_deref().unwrap_or("all");
    if !matches!(mode, "all" | "failures" | "changed") {
        return Err(PageError::bad_request(format!(
            "mode = \"{mode}\"; expected all, failures or changed"
        )));
    }
    let before: HashMap<String, EvalCaseRecord> = state
        .engine_call(state.engine.records().all_eval_cases(&a))
        .await?
        .into_iter()
        .map(|c| (c.case_id.clone(), c))
        .collect();
    let after = state
        .engine_call(state.engine.records().all_eval_cases(&b))
        .await?;
    let mut rows = Vec::new();
    let (mut changed, mut fixed, mut broken) = (0, 0, 0);
    for case in &after {
        let old = before.get(&case.case_id);
        let was = old.map(case_passed);
        let is = case_passed(case);
        let differs = old.is_none_or(|o| o.output != case.output || o.scores != case.scores);
        changed += usize::from(differs);
        fixed += usize::from(was == Some(false) && is);
        broken += usize::from(was == Some(true) && !is);
        let keep = match mode {
            "failures" => !is || was == Some(false),
            "changed" => differs,
            _ => true,
        };
        if keep {
            rows.push(context! {
                id => case.case_id.clone(),
                expected => case.expected.to_string(),
                a => old.map(case_row),
                b => case_row(case),
                differs => differs,
                delta => delta(was, is),
            });
        }
    }
    if query.format.as_deref() == Some("csv") {
        let mut out = String::from("case,expected,a_output,a_passed,b_output,b_passed,change\n");
        for case in &after {
            let old = before.get(&case.case_id);
            csv_line(
                &mut out,
                &[
                    case.case_id.clone(),
                    case.expected.to_string(),
                    old.map(shown_output).unwrap_or_default(),
                    old.map(|o| case_passed(o).to_string()).unwrap_or_default(),
                    shown_output(case),
                    case_passed(case).to_string(),
                    delta(old.map(case_passed), case_passed(case)).to_string(),
                ],
            );
        }
        return Ok(csv_response(
            out,
            &format!(
                "compare-{}-{}.csv",
                &a[..a.len().min(8)],
                &b[..b.len().min(8)]
            ),
        ));
    }
    let summary = |r: &shopfloor_engine::store_types::EvalRecord| -> Option<Value> {
        r.summary
            .clone()
            .and_then(|s| serde_json::from_value::<EvalSummary>(s).ok())
            .map(|s| Value::from_serialize(&s))
    };
    Ok(render(
        "compare.html",
        context! {
            a => Value::from_serialize(&left),
            b => Value::from_serialize(&right),
            a_summary => summary(&left),
            b_summary => summary(&right),
            rows => rows,
            mode => mode,
            changed => changed,
            fixed => fixed,
            broken => broken,
            shared => after.iter().filter(|c| before.contains_key(&c.case_id)).count(),
            ..frame(&viewer, "Compare evals", "/evals")
        },
    ))
}
