//! `/runs` (filters in the URL, pages by cursor), its CSV of every match, and one run.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};
use shopfloor_core::access::Permission;
use shopfloor_engine::store_types::{RunFilter, RunStatus, RunSummary};

use super::{render, PageError, Viewer};
use crate::AppState;

use super::pages::frame;

/// Runs on a page of `/runs`.
const RUNS_PER_PAGE: u32 = 50;
/// Runs read per query when exporting every run a filter matches.
const CSV_CHUNK: u32 = 5_000;

/// The filters of `/runs`, as the URL carries them.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RunsQuery {
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    caller: Option<String>,
    /// `YYYY-MM-DD`, from the start of that day (UTC).
    #[serde(default)]
    since: Option<String>,
    /// `YYYY-MM-DD`, to the end of that day (UTC).
    #[serde(default)]
    until: Option<String>,
    /// The next page: runs older than `AT_MS.ID`.
    #[serde(default)]
    before: Option<String>,
}

impl RunsQuery {
    fn filter(&self) -> Result<RunFilter, PageError> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let status = match given(&self.status) {
            Some(s) => Some(RunStatus::parse(&s).ok_or_else(|| {
                PageError::bad_request(format!(
                    "unknown status \"{s}\"; expected ok, invalid, failed, refused or held"
                ))
            })?),
            None => None,
        };
        let day = |field: &str, v: &Option<String>| -> Result<Option<i64>, PageError> {
            given(v)
                .map(|d| {
                    shopfloor_core::calendar::parse_date(&d).ok_or_else(|| {
                        PageError::bad_request(format!(
                            "{field} = \"{d}\" is not a date; expected YYYY-MM-DD"
                        ))
                    })
                })
                .transpose()
        };
        let before = match given(&self.before) {
            Some(b) => {
                let (at, id) = b
                    .split_once('.')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
                    .ok_or_else(|| {
                        PageError::bad_request(
                            "before must be AT_MS.RUN_ID, as the next-page link gives",
                        )
                    })?;
                Some((at, id))
            }
            None => None,
        };
        Ok(RunFilter {
            workflow: given(&self.workflow),
            status,
            model: given(&self.model),
            version: given(&self.version),
            caller: given(&self.caller),
            since_ms: day("since", &self.since)?,
            until_ms: day("until", &self.until)?.map(|d| d + 86_400_000),
            before,
            ..Default::default()
        })
    }

    /// The query string of these filters (without the page), for links.
    fn query_string(&self) -> String {
        let pairs = [
            ("workflow", &self.workflow),
            ("status", &self.status),
            ("model", &self.model),
            ("version", &self.version),
            ("caller", &self.caller),
            ("since", &self.since),
            ("until", &self.until),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={}", super::view::url_encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

pub(crate) async fn runs(
    State(state): State<AppState>,
    viewer: Viewer,
    crate::Query(query): crate::Query<RunsQuery>,
) -> Result<Response, PageError> {
    let mut filter = query.filter()?;
    filter.limit = Some(RUNS_PER_PAGE + 1);
    let mut rows = state
        .engine_call(async { state.engine.read().await.runs(&filter).await })
        .await?;
    let more = rows.len() > RUNS_PER_PAGE as usize;
    rows.truncate(RUNS_PER_PAGE as usize);
    let next = more
        .then(|| rows.last())
        .flatten()
        .map(|last| format!("{}.{}", last.created_at_ms, last.id));
    let workflows: Vec<String> = state.engine.project.workflows.keys().cloned().collect();
    let filters = query.query_string();
    Ok(render(
        "runs.html",
        context! {
            runs => Value::from_serialize(&rows),
            query => Value::from_serialize(&query),
            filters => filters,
            next => next,
            workflows => workflows,
            statuses => RunStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ..frame(&viewer, "Runs", "/runs")
        },
    ))
}

/// `GET /runs.csv`: every run the filter matches, not only a page, read in chunks.
pub(crate) async fn runs_csv(
    State(state): State<AppState>,
    crate::Query(query): crate::Query<RunsQuery>,
) -> Result<Response, PageError> {
    let mut filter = query.filter()?;
    filter.limit = Some(CSV_CHUNK);
    let mut out =
        String::from("id,created_at,workflow,version,status,model,latency_ms,cost_usd,batch_id\n");
    // Written-through once: the export reads what was recorded when it started.
    let records = state.engine.read().await;
    loop {
        let chunk: Vec<RunSummary> = state.engine_call(records.runs(&filter)).await?;
        for r in &chunk {
            let cells = [
                r.id.clone(),
                shopfloor_core::calendar::utc_datetime(r.created_at_ms),
                r.workflow.clone(),
                r.version.clone(),
                r.status.as_str().to_string(),
                r.model.clone().unwrap_or_default(),
                r.latency_ms.to_string(),
                format!("{:.6}", r.cost_usd),
                r.batch_id.clone().unwrap_or_default(),
            ];
            csv_line(&mut out, &cells);
        }
        match chunk.last() {
            Some(last) if chunk.len() == CSV_CHUNK as usize => {
                filter.before = Some((last.created_at_ms, last.id.clone()));
            }
            _ => break,
        }
    }
    Ok(csv_response(out, "runs.csv"))
}

/// One RFC 4180 line: a cell with a comma, quote or line break is quoted, quotes doubled. A
/// cell that a spreadsheet would run as a formula is prefixed with `'`.
pub(crate) fn csv_line(out: &mut String, cells: &[String]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = if cell.starts_with(['=', '+', '-', '@']) && cell.parse::<f64>().is_err() {
            format!("'{cell}")
        } else {
            cell.clone()
        };
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

pub(crate) fn csv_response(body: String, file: &str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

pub(crate) async fn run(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let audience = shopfloor_engine::Audience::of(viewer.principal.role);
    let view = state
        .engine_call(state.engine.run_view(&id, audience))
        .await?
        .ok_or_else(|| {
            PageError::not_found(format!("no run with id {id}")).with_viewer(viewer.clone())
        })?;
    // Only what the page shows of the item: its own copy of the answer stays out.
    let review = view.review.as_ref().map(|(item, decisions)| {
        context! {
            item => context! {
                reason => item.reason.as_str(),
                status => item.status.as_str(),
                decisions => item.decisions,
                approvals_required => item.approvals_required,
            },
            decisions => Value::from_serialize(decisions),
        }
    });
    Ok(render(
        "run.html",
        context! {
            run => Value::from_serialize(&view.run),
            released => Value::from_serialize(&view.released),
            withheld => view.withheld.map(|w| w.as_str()),
            withheld_text => view.withheld.map(|w| w.describe()),
            answer_hidden => view.answer_hidden,
            review => review,
            may_review => viewer.may(Permission::Review),
            ..frame(&viewer, &format!("Run {id}"), "/runs")
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        let mut out = String::new();
        csv_line(
            &mut out,
            &[
                "a,b".into(),
                "say \"hi\"".into(),
                "=HYPERLINK(1)".into(),
                "-0.5".into(),
                "plain".into(),
            ],
        );
        assert_eq!(
            out,
            "\"a,b\",\"say \"\"hi\"\"\",'=HYPERLINK(1),-0.5,plain\r\n"
        );
    }

    #[test]
    fn run_filters_come_from_the_url() {
        let query = RunsQuery {
            workflow: Some("triage".into()),
            status: Some("held".into()),
            since: Some("2026-01-02".into()),
            until: Some("2026-01-02".into()),
            before: Some("1700.abc".into()),
            ..Default::default()
        };
        let filter = query.filter().unwrap();
        assert_eq!(filter.status, Some(RunStatus::Held));
        let day = shopfloor_core::calendar::parse_date("2026-01-02").unwrap();
        assert_eq!(
            (filter.since_ms, filter.until_ms),
            (Some(day), Some(day + 86_400_000))
        );
        assert_eq!(filter.before, Some((1700, "abc".into())));
        assert_eq!(
            query.query_string(),
            "workflow=triage&status=held&since=2026-01-02&until=2026-01-02"
        );
        let bad = RunsQuery {
            status: Some("nope".into()),
            ..Default::default()
        };
        assert!(bad.filter().is_err());
    }
}
