//! The review queue in the browser. Opening a page never changes anything: `/review` lists the
//! queue, and a reviewer takes the next item with a button (`Enter`), which claims it by a form
//! post; an item's page shows its input, output, confidence and the decisions so far, with
//! approve, edit (a form fitted to the output contract) and reject, and a claim button when no
//! one holds it. A decision claims the next item and opens it, so the keyboard goes from one to
//! the next (see `assets/dashboard.js`). Decisions go through the same engine call as the API
//! and the CLI.
//!
//! Claims are posts, not page views: a GET that claimed (as before) let any link, prefetch or
//! crawler reserve an item in a reviewer's name.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{context, Value};
use serde::Deserialize;
use serde_json::Value as Json;
use shopfloor_core::review::ReviewStatus;
use shopfloor_core::spec::OutputContract;
use shopfloor_engine::store_types::ReviewFilter;
use shopfloor_engine::DecisionRequest;

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
    /// Taking the next item found none this reviewer may decide.
    #[serde(default)]
    none: Option<bool>,
}

/// `GET /review`: the queue, with a button that takes the next item. Claims nothing.
pub(crate) async fn queue_page(
    State(state): State<AppState>,
    viewer: Viewer,
    crate::Query(query): crate::Query<NextQuery>,
) -> Result<Response, PageError> {
    let workflow = query.workflow.filter(|w| !w.is_empty());
    let queue = queue(&state, workflow.as_deref()).await?;
    Ok(render(
        "review.html",
        context! {
            item => Value::UNDEFINED,
            queue => queue,
            done => query.done,
            none_left => query.none,
            workflow => workflow,
            ..frame(&viewer, "Review queue", "/review")
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextForm {
    #[serde(default)]
    workflow: Option<String>,
}

/// `POST /review/next`: claim the oldest pending item this reviewer may decide and open it;
/// back to the queue, saying so, when there is none.
pub(crate) async fn take_next(
    State(state): State<AppState>,
    Posted(viewer, form): Posted<NextForm>,
) -> Result<Response, PageError> {
    let workflow = form.workflow.filter(|w| !w.is_empty());
    next_item(&state, &viewer, workflow.as_deref(), None).await
}

/// Claim the next item and redirect to it (`done`: the run just decided, to say so).
async fn next_item(
    state: &AppState,
    viewer: &Viewer,
    workflow: Option<&str>,
    done: Option<&str>,
) -> Result<Response, PageError> {
    let claimed = state
        .engine_call(
            state
                .engine
                .review_next(workflow, &reviewer(&viewer.principal)),
        )
        .await
        .map_err(|e| PageError::from(e).with_viewer(viewer.clone()))?;
    let mut query = Vec::new();
    if let Some(done) = done {
        query.push(format!("done={}", url_encode(done)));
    }
    let to = match claimed {
        Some(view) => format!("/review/{}", url_encode(&view.item.run_id)),
        None => {
            query.push("none=true".to_string());
            if let Some(workflow) = workflow {
                query.push(format!("workflow={}", url_encode(workflow)));
            }
            "/review".to_string()
        }
    };
    let to = if query.is_empty() {
        to
    } else {
        format!("{to}?{}", query.join("&"))
    };
    Ok(Redirect::to(&to).into_response())
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

/// `GET /review/RUN_ID`: the item as it stands. Claims nothing: the claim button (or taking
/// the next item) does.
pub(crate) async fn item(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(run_id): Path<String>,
    crate::Query(query): crate::Query<ItemQuery>,
) -> Result<Response, PageError> {
    let engine = &state.engine;
    let me = reviewer(&viewer.principal);
    let view = match state.engine_call(engine.review_show(&run_id)).await {
        Ok(view) => view,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return Err(PageError::not_found(e.message).with_viewer(viewer))
        }
        Err(e) => return Err(PageError::from(e).with_viewer(viewer)),
    };
    let now = shopfloor_engine::now_ms();
    let pending = view.item.status == ReviewStatus::Pending;
    let notice = view
        .item
        .claimed_by_other(&me.name, now)
        .filter(|_| pending)
        .map(|holder| {
            format!("{holder} is reviewing this item; it opens to others when their claim lapses.")
        });
    let claimable = pending && view.item.holder(now).is_none();
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
            claimable => claimable,
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

/// `POST /review/RUN_ID/claim`: hold the item for this reviewer (the workflow's
/// `reservation_minutes`), then show it.
pub(crate) async fn claim(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Posted(viewer, _): Posted<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    state
        .engine_call(
            state
                .engine
                .review_claim(&run_id, &reviewer(&viewer.principal)),
        )
        .await
        .map_err(|e| PageError::from(e).with_viewer(viewer.clone()))?;
    Ok(Redirect::to(&format!("/review/{}", url_encode(&run_id))).into_response())
}

/// Decide, then claim the next item and open it.
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
    next_item(state, viewer, None, Some(run_id)).await
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
