//! The workflow API for business systems: run one input, queue a batch, read a batch's
//! progress and results, read a run.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use shopfloor_engine::store_types::{ErrorKind, RunRecord, RunStatus};
use shopfloor_engine::{failure_kind, released_output, Audience, RunFacts, RunView};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::{json_response, AppState, Json, Query, RUN_ID_HEADER};

/// Results returned by `GET /v1/batches/{id}` unless `limit` says otherwise, and at most.
const DEFAULT_RESULTS: u32 = 100;
const MAX_RESULTS: u32 = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunBody {
    input: Value,
    #[serde(default)]
    model: Option<String>,
    /// The end user, recorded on the run (default: the key's name).
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    inputs: Vec<Value>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BatchQuery {
    /// Include results (default true).
    #[serde(default)]
    results: Option<bool>,
    #[serde(default)]
    limit: Option<u32>,
    /// Results of cases after this 1-based case number (the previous page's `next_after`).
    #[serde(default)]
    after: Option<u64>,
}

/// `POST /v1/workflows/{name}/runs`: the parsed, validated output with the run id.
pub(crate) async fn run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Principal,
    Json(body): Json<RunBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let caller = principal.caller(body.user.as_deref());
    let engine = state.engine.clone();
    let task_state = state.clone();
    let run = state
        .detached(async move {
            let run = engine
                .run_workflow(
                    &name,
                    body.input,
                    body.model,
                    Some(caller),
                    body.user.as_deref(),
                )
                .await;
            if let Ok(run) = &run {
                task_state
                    .metrics
                    .run(&RunFacts::of_attempts(run), started.elapsed());
            }
            run
        })
        .await??;
    let status = match run.status {
        RunStatus::Ok => StatusCode::OK,
        RunStatus::Held => StatusCode::ACCEPTED,
        _ => return Err(run_failure(&run)),
    };
    let mut response = json_response(status, &run_result(&run));
    if let Ok(value) = run.id.parse() {
        response.headers_mut().insert(RUN_ID_HEADER, value);
    }
    Ok(response)
}

/// A run as the workflow API returns it: the output only once released.
fn run_result(run: &RunRecord) -> Value {
    json!({
        "run_id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status.as_str(),
        "pending_review": run.status == RunStatus::Held,
        "output": released_output(run),
        "error": run.error,
        "model": run.model,
        "latency_ms": run.latency_ms,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cost_usd": run.cost_usd,
    })
}

/// The error a run that produced no output answers with; it names the run.
pub(crate) fn run_failure(run: &RunRecord) -> ApiError {
    let message = run
        .error
        .clone()
        .unwrap_or_else(|| format!("the run ended {}", run.status.as_str()));
    let error = match run.status {
        RunStatus::Invalid => {
            ApiError::new(StatusCode::BAD_GATEWAY, "server_error", message).code("invalid_output")
        }
        _ => ApiError::call_failed(
            failure_kind(run).unwrap_or(ErrorKind::Upstream),
            last_model(run),
            &message,
        ),
    };
    error.run(run.id.clone())
}

/// The model a run tried last: the one its failure is about.
pub(crate) fn last_model(run: &RunRecord) -> Option<&str> {
    run.attempts
        .last()
        .map(|a| a.model.as_str())
        .or(run.model.as_deref())
}

/// An output as chat text: a label or text as is, JSON as JSON.
pub(crate) fn output_text(output: &Value) -> String {
    match output {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `POST /v1/workflows/{name}/batches`: queue many inputs; any replica's worker runs them.
pub(crate) async fn submit_batch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Principal,
    Json(body): Json<BatchBody>,
) -> Result<Response, ApiError> {
    let caller = principal.caller(body.user.as_deref());
    let batch = state
        .engine_call(state.engine.enqueue_batch(
            &name,
            body.inputs,
            body.model,
            &principal.name,
            Some(caller),
        ))
        .await?;
    state.batch_queued.notify_one();
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({
            "batch_id": batch.id,
            "workflow": batch.workflow,
            "version": batch.version,
            "status": batch.status.as_str(),
            "total": batch.total_cases,
            "done": 0,
            "url": format!("/v1/batches/{}", batch.id),
        }),
    ))
}

/// `GET /v1/batches/{id}`: progress, and the results recorded so far.
pub(crate) async fn batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<BatchQuery>,
    principal: Principal,
) -> Result<Response, ApiError> {
    if principal.own_only {
        let caller = state.engine_call(state.engine.batch_caller(&id)).await?;
        // Another key's batch is answered like a missing one, so ids cannot be probed.
        if !principal.may_see(caller.as_ref().map(|c| c.key_id.as_str())) {
            return Err(ApiError::from(shopfloor_engine::EngineError::UnknownBatch(
                id,
            )));
        }
    }
    let progress = state.engine_call(state.engine.batch_progress(&id)).await?;
    let mut body = json!({
        "batch_id": progress.batch.id,
        "workflow": progress.batch.workflow,
        "version": progress.batch.version,
        "status": progress.batch.status.as_str(),
        "total": progress.total,
        "done": progress.recorded,
        "created_at_ms": progress.batch.created_at_ms,
        "finished_at_ms": progress.batch.finished_at_ms,
    });
    if query.results.unwrap_or(true) {
        let limit = query.limit.unwrap_or(DEFAULT_RESULTS);
        if !(1..=MAX_RESULTS).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit {limit} is out of range; expected 1 to {MAX_RESULTS}"
            ))
            .param("limit"));
        }
        // Case numbers are stored as signed 64-bit integers: a larger `after` is no case at all.
        let after = query.after.unwrap_or(0);
        if after > i64::MAX as u64 {
            return Err(ApiError::bad_request(format!(
                "after {after} is out of range; expected a case number from 0 to {}",
                i64::MAX
            ))
            .param("after"));
        }
        let (results, next_after) = batch_results(&state, &id, after, limit).await?;
        body["results"] = Value::Array(results);
        body["next_after"] = json!(next_after);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// One page of a batch's results in case order, and where the next page starts.
async fn batch_results(
    state: &AppState,
    id: &str,
    after: u64,
    limit: u32,
) -> Result<(Vec<Value>, Option<u64>), ApiError> {
    // One more than the page: whether it exists says whether there is a next page.
    let mut runs = state
        .engine_call(
            state
                .engine
                .records()
                .batch_runs(id, after, limit.saturating_add(1)),
        )
        .await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next = more
        .then(|| runs.last().and_then(|r| r.case_index))
        .flatten();
    Ok((runs.iter().map(case_result).collect(), next))
}

fn case_result(run: &RunRecord) -> Value {
    json!({
        "case": run.case_index,
        "run_id": run.id,
        "status": run.status.as_str(),
        "pending_review": run.status == RunStatus::Held,
        "output": released_output(run),
        "error": run.error,
        "model": run.model,
    })
}

/// `GET /v1/runs/{id}`: one run with its attempts.
pub(crate) async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let view = state
        .engine_call(state.engine.run_view(&id, Audience::of(principal.role)))
        .await?;
    // Another key's run is answered like a missing one, so ids cannot be probed.
    let view = view
        .filter(|v| principal.may_see(v.run.caller.as_ref().map(|c| c.key_id.as_str())))
        .ok_or_else(|| ApiError::not_found(format!("no run with id {id}")))?;
    let run = &view.run;
    let attempts: Vec<Value> = run
        .attempts
        .iter()
        .map(|a| {
            json!({
                "n": a.n,
                "model": a.model,
                "provider": a.provider,
                "started_at_ms": a.started_at_ms,
                "latency_ms": a.latency_ms,
                "prompt_tokens": a.prompt_tokens,
                "completion_tokens": a.completion_tokens,
                "cost_usd": a.cost_usd,
                "outcome": a.outcome.as_str(),
                "error": a.error,
            })
        })
        .collect();
    let mut body = run_result(run);
    body["batch_id"] = json!(run.batch_id);
    body["case_index"] = json!(run.case_index);
    body["input"] = run.input.clone();
    // The model's own answer: for reviewers always, for others only where it was released.
    body["raw_output"] = json!(run.raw_output);
    body["withheld"] = json!(view.withheld);
    body["created_at_ms"] = json!(run.created_at_ms);
    body["caller"] = json!(run.caller);
    body["attempts"] = Value::Array(attempts);
    body["review"] = review_summary(&view);
    Ok(json_response(StatusCode::OK, &body))
}

/// Where a run stands in review: `null` when it never entered the queue, else its status and
/// the last decision (`decision`, `by`, `at`).
fn review_summary(view: &RunView) -> Value {
    let Some((item, decisions)) = &view.review else {
        return Value::Null;
    };
    let last = decisions.last();
    json!({
        "status": item.status,
        "reason": item.reason,
        "approvals_required": item.approvals_required,
        "decisions": decisions.len(),
        "decision": last.map(|d| d.decision),
        "by": last.map(|d| d.reviewer.as_str()),
        "at": last.map(|d| d.decided_at_ms),
        "reject_reason": last.and_then(|d| d.reason.as_deref()),
    })
}
