//! The review API: the same engine calls as `shopfloor review`, for reviewers' tools and the
//! dashboard. The reviewer is the key's name; a reviewer may not decide a run their own key
//! requested.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use shopfloor_core::review::ReviewStatus;

use shopfloor_engine::store_types::ReviewFilter;
use shopfloor_engine::{DecisionRequest, Reviewer};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::{json_response, AppState, Json, Query};

/// Items returned by `GET /v1/reviews` unless `limit` says otherwise, and at most.
const DEFAULT_ITEMS: u32 = 100;
const MAX_ITEMS: u32 = 1_000;

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    workflow: Option<String>,
    /// `pending` (default), `approved`, `edited`, `rejected` or `all`.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WorkflowQuery {
    #[serde(default)]
    workflow: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditBody {
    output: Value,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectBody {
    reason: String,
    #[serde(default)]
    note: Option<String>,
}

pub(crate) fn reviewer(principal: &Principal) -> Reviewer {
    Reviewer {
        name: principal.name.clone(),
        key_id: Some(principal.key_id.clone()),
    }
}

/// `GET /v1/reviews?workflow=&status=&limit=`: items, oldest first.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let status = match query.status.as_deref().unwrap_or("pending") {
        "all" => None,
        text => Some(ReviewStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown status \"{text}\"; expected one of: {}, all",
                ReviewStatus::expected()
            ))
            .param("status")
        })?),
    };
    let filter = ReviewFilter {
        workflow: query.workflow,
        status,
        limit: Some(query.limit.unwrap_or(DEFAULT_ITEMS).min(MAX_ITEMS)),
    };
    let items = state.engine_call(state.engine.reviews(&filter)).await?;
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

/// `POST /v1/reviews/next?workflow=`: claim the oldest pending item this reviewer may decide;
/// 204 when there is none.
pub(crate) async fn next(
    State(state): State<AppState>,
    Query(query): Query<WorkflowQuery>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let claimed = state
        .engine_call(
            state
                .engine
                .review_next(query.workflow.as_deref(), &reviewer(&principal)),
        )
        .await?;
    Ok(match claimed {
        Some(view) => json_response(StatusCode::OK, &json!(view)),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `GET /v1/reviews/{run_id}`: the item, its run and its decisions.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    let view = state.engine_call(state.engine.review_show(&run_id)).await?;
    Ok(json_response(StatusCode::OK, &json!(view)))
}

/// `POST /v1/reviews/{run_id}/claim`.
pub(crate) async fn claim(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let view = state
        .engine_call(state.engine.review_claim(&run_id, &reviewer(&principal)))
        .await?;
    Ok(json_response(StatusCode::OK, &json!(view)))
}

/// `POST /v1/reviews/{run_id}/approve` with `{"note": …}` (optional).
pub(crate) async fn approve(
    state: State<AppState>,
    Path(run_id): Path<String>,
    principal: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: an approval needs nothing but the item.
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<NoteBody>(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
            .note
    };
    decide(state, run_id, principal, DecisionRequest::Approve { note }).await
}

/// `POST /v1/reviews/{run_id}/edit` with `{"output": …, "note": …}`.
pub(crate) async fn edit(
    state: State<AppState>,
    Path(run_id): Path<String>,
    principal: Principal,
    Json(body): Json<EditBody>,
) -> Result<Response, ApiError> {
    let request = DecisionRequest::Edit {
        output: body.output,
        note: body.note,
    };
    decide(state, run_id, principal, request).await
}

/// `POST /v1/reviews/{run_id}/reject` with `{"reason": …, "note": …}`.
pub(crate) async fn reject(
    state: State<AppState>,
    Path(run_id): Path<String>,
    principal: Principal,
    Json(body): Json<RejectBody>,
) -> Result<Response, ApiError> {
    let request = DecisionRequest::Reject {
        reason: body.reason,
        note: body.note,
    };
    decide(state, run_id, principal, request).await
}

async fn decide(
    State(state): State<AppState>,
    run_id: String,
    principal: Principal,
    request: DecisionRequest,
) -> Result<Response, ApiError> {
    let item = state
        .engine_call(
            state
                .engine
                .review_decide(&run_id, &reviewer(&principal), request),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &json!(item)))
}

/// `GET /v1/reviews/stats?workflow=`.
pub(crate) async fn stats(
    State(state): State<AppState>,
    Query(query): Query<WorkflowQuery>,
) -> Result<Response, ApiError> {
    let stats = state
        .engine_call(state.engine.review_stats(query.workflow.as_deref()))
        .await?;
    Ok(json_response(StatusCode::OK, &json!(stats)))
}
