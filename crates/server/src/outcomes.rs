//! The outcome API: a workflow's outcomes as `shopfloor outcomes` prints them, and the KPI
//! values the business records (`shopfloor outcomes record`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use shopfloor_core::calendar::parse_date;
use shopfloor_engine::NewKpiValue;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::{json_response, AppState, Json, Query};

#[derive(Debug, Deserialize)]
pub(crate) struct SinceQuery {
    /// `YYYY-MM-DD`: only runs from that day on.
    #[serde(default)]
    since: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KpiBody {
    value: f64,
    /// `YYYY-MM-DD`: when it was measured; default now.
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

fn day(field: &'static str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|t| {
        parse_date(t).ok_or_else(|| {
            ApiError::bad_request(format!("\"{t}\" is not a date; expected YYYY-MM-DD"))
                .param(field)
        })
    })
    .transpose()
}

/// `GET /v1/workflows/{name}/outcomes?since=YYYY-MM-DD`.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<SinceQuery>,
) -> Result<Response, ApiError> {
    let since = day("since", query.since.as_deref())?;
    let report = state
        .engine_call(state.engine.outcomes(&name, since))
        .await?;
    Ok(json_response(StatusCode::OK, &json!(report)))
}

/// `POST /v1/workflows/{name}/outcomes` `{"value": 18, "at": "2026-12-01", "note": "…"}`:
/// record a KPI value; the key's name is who recorded it.
pub(crate) async fn record(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Principal,
    Json(body): Json<KpiBody>,
) -> Result<Response, ApiError> {
    let at_ms = day("at", body.at.as_deref())?;
    let value = NewKpiValue {
        value: body.value,
        at_ms,
        note: body.note,
        recorded_by: principal.name.clone(),
    };
    let recorded = state
        .engine_call(state.engine.record_kpi(&name, value))
        .await?;
    Ok(json_response(StatusCode::CREATED, &json!(recorded)))
}
