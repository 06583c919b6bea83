//! The review queue in the browser: opening `/review` claims the next item; an item shows
//! its input, output, confidence and the decisions so far, with approve, edit (a form fitted
//! to the output contract) and reject. The keyboard drives it (see `assets/dashboard.js`).
//! Decisions go through the same engine call as the API and the CLI.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{context, Value};
use serde::Deserialize;
use serde_json::Value as Json;
use shopfloor_core::review::ReviewStatus;
use shopfloor_core::spec::OutputContract;
use shopfloor_engine::DecisionRequest;
use shopfloor_store::ReviewFilter;

use super::pages::frame;
use super::view::url_encode;
use super::{render, PageError, Posted, Viewer};
use crate::reviews::reviewer;
use crate::AppState;

/// Items listed beside the one open (and walked with `j` / `k`).
const QUEUE_SHOWN: u32 = 50;

#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    #[serde(default)]
    workflow: Option<String>,
    /// The run just decided, to say so.
    #[serde(default)]
    done: Option<String>,
}

/// `GET /review`: claim the oldest pending item this reviewer may decide and open it.
pub(crate) async fn next(
    State(state): State<AppState>,
    viewer: Viewer,
    crate::Query(query): crate::Query<NextQuery>,
) -> Result<Response, PageError> {
    let workflow = query.workflow.filter(|w| !w.is_empty());
    let claimed = state
        .engine_call(
            state
                .engine
                .review_next(workflow.as_deref(), &reviewer(&viewer.principal)),
        )
        .await?;
    if let Some(view) = claimed {
        let mut to = format!("/review/{}", url_encode(&view.item.run_id));
        if let Some(done) = &query.done {
            to.push_str(&format!("?done={}", url_encode(done)));
        }
        return Ok(Redirect::to(&to).into_response());
    }
    let queue = queue(&state, workflow.as_deref()).await?;
    Ok(render(
        "review.html",
        context! {
            item => Value::UNDEFINED,
            queue => queue,
            done => query.done,
            workflow => workflow,
            ..frame(&viewer, "Review queue", "/review")
        },
    ))
}

async fn queue(state: &AppState, workflow: Option<&str>) -> Result<Value, PageError> {
    let items = state
        .engine_call(state.engine.reviews(&ReviewFilter {
            workflow: workflow.map(str::to_string),
            status: Some(ReviewStatus::Pending),
            limit: Some(QUEUE_SHOWN),
        }))
        .await?;
    Ok(Value::from_serialize(&items))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ItemQuery {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /review/RUN_ID`: claim the item (when free) and show it.
pub(crate) async fn item(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(run_id): Path<String>,
    crate::Query(query): crate::Query<ItemQuery>,
) -> Result<Response, PageError> {
    let engine = &state.engine;
    let me = reviewer(&viewer.principal);
    // Claim it when it is pending and free; otherwise show it as it stands.
    let (view, notice) = match state.engine_call(engine.review_claim(&run_id, &me)).await {
        Ok(view) => (view, None),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return Err(PageError::not_found(e.message).with_viewer(viewer))
        }
        Err(e) => (
            state.engine_call(engine.review_show(&run_id)).await?,
            Some(e.message),
        ),
    };
    let workflow = engine.project.workflow(&view.item.workflow).ok();
    let (editor, labels, reasons) = match &workflow {
        Some(w) => {
            let editor = match &w.spec.output.contract {
                OutputContract::Labels(_) => "labels",
                OutputContract::Json(_) => "json",
                OutputContract::Text { .. } => "text",
            };
            let labels = match &w.spec.output.contract {
                OutputContract::Labels(labels) => labels.clone(),
                _ => Vec::new(),
            };
            (editor, labels, w.spec.review.reasons.clone())
        }
        None => ("text", Vec::new(), Vec::new()),
    };
    let schema = workflow
        .as_ref()
        .and_then(|w| match &w.spec.output.contract {
            OutputContract::Json(schema) => serde_json::to_string_pretty(schema).ok(),
            _ => None,
        });
    let output_text = view.item.output.as_ref().map(edit_text).unwrap_or_default();
    let diffs: Vec<Value> = view
        .decisions
        .iter()
        .map(|d| match (&view.item.output, &d.output) {
            (Some(before), Some(after)) => {
                Value::from_serialize(line_diff(&edit_text(before), &edit_text(after)))
            }
            _ => Value::UNDEFINED,
        })
        .collect();
    let decidable = view.item.status == ReviewStatus::Pending && notice.is_none();
    let queue = queue(&state, None).await?;
    Ok(render(
        "review.html",
        context! {
            item => Value::from_serialize(&view.item),
            run => Value::from_serialize(&view.run),
            decisions => Value::from_serialize(&view.decisions),
            diffs => diffs,
            queue => queue,
            editor => editor,
            labels => labels,
            reasons => reasons,
            schema => schema,
            output_text => output_text,
            decidable => decidable,
            notice => notice,
            done => query.done,
            ..frame(&viewer, "Review", "/review")
        },
    ))
}

/// An output as a reviewer edits it: a label or text as itself, JSON pretty-printed.
fn edit_text(output: &Json) -> String {
    match output {
        Json::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// A line of a diff: `" "` kept, `"-"` removed, `"+"` added.
#[derive(Debug, PartialEq, serde::Serialize)]
pub(crate) struct DiffLine {
    pub op: &'static str,
    pub text: String,
}

/// The lines of `before` and `after`, by their longest common subsequence (outputs are
/// short: at most a few hundred lines).
pub(crate) fn line_diff(before: &str, after: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    if a.len() * b.len() > 1_000_000 {
        let mut out: Vec<DiffLine> = a
            .iter()
            .map(|l| DiffLine {
                op: "-",
                text: l.to_string(),
            })
            .collect();
        out.extend(b.iter().map(|l| DiffLine {
            op: "+",
            text: l.to_string(),
        }));
        return out;
    }
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(DiffLine {
                op: " ",
                text: a[i].to_string(),
            });
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(DiffLine {
                op: "-",
                text: a[i].to_string(),
            });
            i += 1;
        } else {
            out.push(DiffLine {
                op: "+",
                text: b[j].to_string(),
            });
            j += 1;
        }
    }
    out
}

#[derive(Debug, Deserialize)]
pub(crate) struct NoteForm {
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EditForm {
    output: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RejectForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: Option<String>,
}

fn note(text: Option<String>) -> Option<String> {
    text.map(|n| n.trim().to_string()).filter(|n| !n.is_empty())
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Posted(viewer, form): Posted<NoteForm>,
) -> Result<Response, PageError> {
    decide(
        &state,
        &viewer,
        &run_id,
        DecisionRequest::Approve {
            note: note(form.note),
        },
    )
    .await
}

pub(crate) async fn edit(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Posted(viewer, form): Posted<EditForm>,
) -> Result<Response, PageError> {
    let item = state.engine_call(state.engine.review_show(&run_id)).await?;
    let json_contract = state
        .engine
        .project
        .workflow(&item.item.workflow)
        .is_ok_and(|w| matches!(w.spec.output.contract, OutputContract::Json(_)));
    let output = if json_contract {
        serde_json::from_str(&form.output).map_err(|e| {
            PageError::bad_request(format!("the corrected output is not JSON: {e}"))
                .with_viewer(viewer.clone())
        })?
    } else {
        Json::String(form.output.trim().to_string())
    };
    decide(
        &state,
        &viewer,
        &run_id,
        DecisionRequest::Edit {
            output,
            note: note(form.note),
        },
    )
    .await
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Posted(viewer, form): Posted<RejectForm>,
) -> Result<Response, PageError> {
    decide(
        &state,
        &viewer,
        &run_id,
        DecisionRequest::Reject {
            reason: form.reason,
            note: note(form.note),
        },
    )
    .await
}

/// Decide, then open the next item.
async fn decide(
    state: &AppState,
    viewer: &Viewer,
    run_id: &str,
    request: DecisionRequest,
) -> Result<Response, PageError> {
    state
        .engine_call(
            state
                .engine
                .review_decide(run_id, &reviewer(&viewer.principal), request),
        )
        .await
        .map_err(|e| PageError::from(e).with_viewer(viewer.clone()))?;
    Ok(Redirect::to(&format!("/review?done={}", url_encode(run_id))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_is_shown_line_by_line() {
        let diff = line_diff(
            "{\n  \"a\": 1,\n  \"b\": 2\n}",
            "{\n  \"a\": 1,\n  \"b\": 3\n}",
        );
        let ops: String = diff.iter().map(|d| d.op).collect();
        assert_eq!(ops, "  -+ ");
        assert_eq!(diff[2].text, "  \"b\": 2");
        assert_eq!(diff[3].text, "  \"b\": 3");
        assert_eq!(line_diff("bug", "bug").len(), 1);
    }
}
