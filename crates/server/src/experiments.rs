//! The experiment API: `GET /v1/workflows/{name}/experiments` (each with its arms' figures and
//! what they recommend), `POST …/experiments` to start one, `POST …/experiments/stop` to end
//! the live one with a decision. The key's name is who started or stopped it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use shopfloor_core::experiment::{Guardrail, Metric, Verdict};
use shopfloor_engine::ExperimentStart;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::{json_response, AppState, Json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    variant: String,
    hypothesis: String,
    metric: String,
    /// `METRIC:LIMIT` each, e.g. `cost_per_accepted:1.5x`.
    #[serde(default)]
    guardrails: Vec<String>,
    #[serde(default)]
    share: Option<f64>,
    #[serde(default)]
    min_runs: Option<u64>,
    #[serde(default)]
    mde: Option<f64>,
    #[serde(default)]
    subject_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StopBody {
    /// `keep` or `cut`.
    decision: String,
    #[serde(default)]
    note: Option<String>,
}

/// `GET /v1/workflows/{name}/experiments`: newest first, guardrails checked.
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let statuses = state
        .engine_call(state.engine.experiment_status(&name))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": statuses}),
    ))
}

/// `POST /v1/workflows/{name}/experiments`.
pub(crate) async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Principal,
    Json(body): Json<StartBody>,
) -> Result<Response, ApiError> {
    let metric =
        Metric::from_text(&body.metric).map_err(|e| ApiError::bad_request(e).param("metric"))?;
    let guardrails = body
        .guardrails
        .iter()
        .map(|g| Guardrail::parse(g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::bad_request(e).param("guardrails"))?;
    let start = ExperimentStart {
        workflow: name,
        variant: body.variant,
        hypothesis: body.hypothesis,
        metric,
        guardrails,
        share: body.share,
        min_runs: body.min_runs,
        mde: body.mde,
        subject_field: body.subject_field,
    };
    let started = state
        .engine_call(state.engine.start_experiment(&principal.name, start))
        .await?;
    Ok(json_response(StatusCode::CREATED, &json!(started)))
}

/// `POST /v1/workflows/{name}/experiments/stop` `{"decision": "keep", "note": "…"}`.
pub(crate) async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Principal,
    Json(body): Json<StopBody>,
) -> Result<Response, ApiError> {
    let decision = Verdict::parse(&body.decision)
        .filter(|d| *d != Verdict::Continue)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "decision \"{}\": expected keep or cut",
                body.decision
            ))
            .param("decision")
        })?;
    let stopped = state
        .engine_call(
            state
                .engine
                .stop_experiment(&principal.name, &name, decision, body.note),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &json!(stopped)))
}
