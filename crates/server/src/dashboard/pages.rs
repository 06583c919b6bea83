//! The read-only pages: portfolio, workflow, runs (and their CSV), a run, evals and their
//! comparison, the audit chain, the policy and the weekly review. Each reads what the CLI's
//! command of the same name reads, through the engine; filters live in the URL.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};
use shopfloor_core::access::Permission;
use shopfloor_core::spec::Stage;
use shopfloor_engine::{now_ms, EngineError, EvalSummary};
use shopfloor_store::{EvalCaseRecord, RunFilter, RunStatus, RunSummary};

use super::charts::{self, Point};
use super::{render, PageError, Posted, Viewer};
use crate::AppState;

/// Runs on a page of `/runs`.
const RUNS_PER_PAGE: u32 = 50;
/// Runs read per query when exporting every run a filter matches.
const CSV_CHUNK: u32 = 5_000;

/// A link of the navigation bar.
#[derive(Serialize)]
pub(crate) struct NavItem {
    href: &'static str,
    label: &'static str,
}

/// The pages this viewer may open.
pub(crate) fn nav(viewer: &Viewer) -> Vec<NavItem> {
    let items = [
        ("/", "Portfolio", Permission::ReadRuns),
        ("/runs", "Runs", Permission::ReadRuns),
        ("/evals", "Evals", Permission::ReadRuns),
        ("/review", "Review", Permission::Review),
        ("/reports/weekly", "Weekly review", Permission::ReadRuns),
        ("/audit", "Audit", Permission::ReadRuns),
        ("/policy", "Policy", Permission::ReadRuns),
    ];
    items
        .into_iter()
        .filter(|(_, _, p)| viewer.may(*p))
        .map(|(href, label, _)| NavItem { href, label })
        .collect()
}

/// What every page's frame needs.
pub(crate) fn frame(viewer: &Viewer, title: &str, active: &str) -> Value {
    context! {
        title => title,
        active => active,
        nav => nav(viewer),
        viewer => context! {
            name => viewer.principal.name.clone(),
            role => viewer.principal.role.as_str(),
        },
        csrf => viewer.csrf.clone(),
    }
}

pub(crate) async fn portfolio(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let entries = state.engine_call(state.engine.portfolio()).await?;
    let counts = state
        .store_call(state.engine.store().review_counts(None, now_ms()))
        .await?;
    let mut pending: HashMap<String, u64> = HashMap::new();
    for c in counts
        .iter()
        .filter(|c| c.status == shopfloor_core::review::ReviewStatus::Pending)
    {
        *pending.entry(c.workflow.clone()).or_default() += c.items;
    }
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let values: Vec<f64> = e
                .kpi
                .as_ref()
                .map(|k| k.values.iter().map(|v| v.value).collect())
                .unwrap_or_default();
            let spark = charts::sparkline(&values, &format!("{} KPI trend", e.workflow));
            context! {
                entry => Value::from_serialize(e),
                pending => pending.get(&e.workflow).copied().unwrap_or(0),
                spark => Value::from_safe_string(spark),
            }
        })
        .collect();
    let total_pending: u64 = pending.values().sum();
    Ok(render(
        "portfolio.html",
        context! { rows => rows, pending => total_pending, ..frame(&viewer, "Portfolio", "/") },
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct WorkflowQuery {
    /// Only this version's figures.
    #[serde(default)]
    version: Option<String>,
}

pub(crate) async fn workflow(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    crate::Query(query): crate::Query<WorkflowQuery>,
) -> Result<Response, PageError> {
    let engine = &state.engine;
    let loaded = engine.project.workflow(&name).map_err(not_found)?;
    let spec = &loaded.spec;
    let outcomes = state.engine_call(engine.outcomes(&name, None)).await?;
    let drift = state.engine_call(engine.drift(&name, now_ms())).await?;
    let evals = state
        .store_call(engine.store().list_evals(Some(&name), 20))
        .await?;
    let baseline = state.store_call(engine.store().baseline(&name)).await?;
    let next_stage = match spec.stage {
        Stage::Draft => Some(Stage::Pilot),
        Stage::Pilot => Some(Stage::Production),
        Stage::Production | Stage::Retired => None,
    };
    let blockers = match next_stage {
        Some(to) => {
            state
                .engine_call(engine.promotion_blockers(&name, to))
                .await?
        }
        None => Vec::new(),
    };
    let versions: Vec<String> = {
        let mut seen = Vec::new();
        for week in &outcomes.weeks {
            for v in &week.versions {
                if !seen.contains(&v.version) {
                    seen.push(v.version.clone());
                }
            }
        }
        seen
    };
    let selected = query.version.filter(|v| versions.contains(v));
    // One row per week: the version's own figures when one is selected, and no value at all
    // where it had no runs (a gap, not a zero).
    let weekly: Vec<(String, Option<shopfloor_engine::OutcomeFigures>)> = outcomes
        .weeks
        .iter()
        .map(|w| {
            let figures = match &selected {
                Some(v) => w
                    .versions
                    .iter()
                    .find(|x| &x.version == v)
                    .map(|x| x.figures.clone()),
                None => Some(w.figures.clone()),
            };
            (w.week.clone(), figures.filter(|f| f.runs > 0))
        })
        .collect();
    let series = |f: &dyn Fn(&shopfloor_engine::OutcomeFigures) -> Option<f64>| -> Vec<(String, Option<f64>)> {
        weekly
            .iter()
            .map(|(week, figures)| (week.clone(), figures.as_ref().and_then(f)))
            .collect()
    };
    let charts = context! {
        volume => Value::from_safe_string(charts::bars(&series(&|f| Some(f.runs as f64)), "runs per week", " runs")),
        acceptance => Value::from_safe_string(charts::bars(&series(&|f| f.acceptance_rate.map(|r| r * 100.0)), "acceptance per week", "%")),
        cost => Value::from_safe_string(charts::bars(&series(&|f| f.cost_per_accepted_usd), "cost per accepted output per week", " USD")),
        saved => Value::from_safe_string(charts::bars(&series(&|f| Some(f.minutes_saved)), "minutes saved per week", " min")),
    };
    let kpi_chart = outcomes.kpi.as_ref().map(|k| {
        let points: Vec<Point> = k
            .values
            .iter()
            .map(|v| Point {
                label: shopfloor_core::calendar::utc_date(v.at_ms),
                value: v.value,
            })
            .collect();
        Value::from_safe_string(charts::kpi_chart(
            &points,
            k.baseline,
            k.target,
            &format!("{} over time", k.name),
        ))
    });
    let eval_rows: Vec<Value> = evals
        .iter()
        .map(|e| {
            let summary: Option<EvalSummary> = e
                .summary
                .clone()
                .and_then(|s| serde_json::from_value(s).ok());
            context! {
                eval => Value::from_serialize(e),
                summary => summary.map(|s| Value::from_serialize(&s)),
                baseline => baseline.as_deref() == Some(e.id.as_str()),
            }
        })
        .collect();
    let config = std::fs::read_to_string(
        engine
            .project
            .root
            .join(shopfloor_engine::WORKFLOWS_DIR)
            .join(format!("{name}.toml")),
    )
    .unwrap_or_else(|e| format!("# the workflow file cannot be read: {e}"));
    Ok(render(
        "workflow.html",
        context! {
            name => name,
            spec => Value::from_serialize(spec),
            version => loaded.version.clone(),
            outcomes => Value::from_serialize(&outcomes),
            weekly => Value::from_serialize(&weekly),
            versions => versions,
            selected => selected,
            charts => charts,
            kpi_chart => kpi_chart,
            drift => Value::from_serialize(&drift),
            evals => eval_rows,
            next_stage => next_stage.map(|s| s.as_str()),
            blockers => blockers,
            may_promote => viewer.may(Permission::Promote),
            config => config,
            ..frame(&viewer, &format!("{} · workflow", spec.name), "/")
        },
    ))
}

fn not_found(e: EngineError) -> PageError {
    PageError::not_found(e.to_string())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PromoteForm {
    to: String,
}

/// `POST /workflows/NAME/promote`: move it on a stage, or show why not.
pub(crate) async fn promote(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Posted(viewer, form): Posted<PromoteForm>,
) -> Result<Response, PageError> {
    let to = Stage::parse(&form.to).ok_or_else(|| {
        PageError::bad_request(format!(
            "unknown stage \"{}\"; expected draft, pilot, production or retired",
            form.to
        ))
    })?;
    let promoted = state
        .engine_call(state.engine.promote(&name, to, &viewer.principal.name))
        .await;
    match promoted {
        Ok(_) => Ok(Redirect::to(&format!(
            "/workflows/{}?promoted={}",
            super::view::url_encode(&name),
            to.as_str()
        ))
        .into_response()),
        Err(e) => Err(PageError::new(StatusCode::CONFLICT, e.message).with_viewer(viewer)),
    }
}

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
    state.engine.flush().await;
    let mut rows = state
        .store_call(state.engine.store().list_runs(&filter))
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
    state.engine.flush().await;
    let mut out =
        String::from("id,created_at,workflow,version,status,model,latency_ms,cost_usd,batch_id\n");
    loop {
        let chunk: Vec<RunSummary> = state
            .store_call(state.engine.store().list_runs(&filter))
            .await?;
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

fn csv_response(body: String, file: &str) -> Response {
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
    state.engine.flush().await;
    let record = state
        .store_call(state.engine.store().get_run(&id))
        .await?
        .ok_or_else(|| {
            PageError::not_found(format!("no run with id {id}")).with_viewer(viewer.clone())
        })?;
    let review = match state.engine_call(state.engine.review_show(&id)).await {
        Ok(view) => Some(view),
        Err(e) if e.status == StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e.into()),
    };
    // A held output is shown only to reviewers, and only as the review queue shows it.
    let held = record.status == RunStatus::Held;
    let output_visible = !held || viewer.may(Permission::Review);
    Ok(render(
        "run.html",
        context! {
            run => Value::from_serialize(&record),
            held => held,
            output_visible => output_visible,
            review => review.map(|r| Value::from_serialize(&r)),
            ..frame(&viewer, &format!("Run {id}"), "/runs")
        },
    ))
}

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
    let store = state.engine.store();
    let evals = state
        .store_call(store.list_evals(workflow.as_deref(), 100))
        .await?;
    let mut baselines: HashMap<String, Option<String>> = HashMap::new();
    for e in &evals {
        if !baselines.contains_key(&e.workflow) {
            let b = state.store_call(store.baseline(&e.workflow)).await?;
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
        .store_call(state.engine.store().get_eval(&id))
        .await?
        .ok_or_else(|| {
            PageError::not_found(format!("no eval with id {id}")).with_viewer(viewer.clone())
        })?;
    let summary: Option<EvalSummary> = record
        .summary
        .clone()
        .and_then(|s| serde_json::from_value(s).ok());
    let cases = state.engine_call(state.engine.all_eval_cases(&id)).await?;
    let baseline = state
        .store_call(state.engine.store().baseline(&record.workflow))
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
        output => case.output.as_ref().map(|o| o.to_string()).unwrap_or_else(|| format!("({})", case.status.as_str())),
    }
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
    let store = state.engine.store();
    let (Some(left), Some(right)) = (
        state.store_call(store.get_eval(&a)).await?,
        state.store_call(store.get_eval(&b)).await?,
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
        .engine_call(state.engine.all_eval_cases(&a))
        .await?
        .into_iter()
        .map(|c| (c.case_id.clone(), c))
        .collect();
    let after = state.engine_call(state.engine.all_eval_cases(&b)).await?;
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
                delta => match (was, is) {
                    (Some(false), true) => "fixed",
                    (Some(true), false) => "broken",
                    (None, _) => "new",
                    _ => "",
                },
            });
        }
    }
    if query.format.as_deref() == Some("csv") {
        let mut out = String::from("case,expected,a_output,a_passed,b_output,b_passed,change\n");
        for case in &after {
            let old = before.get(&case.case_id);
            let show = |c: &EvalCaseRecord| {
                c.output
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| format!("({})", c.status.as_str()))
            };
            csv_line(
                &mut out,
                &[
                    case.case_id.clone(),
                    case.expected.to_string(),
                    old.map(show).unwrap_or_default(),
                    old.map(|o| case_passed(o).to_string()).unwrap_or_default(),
                    show(case),
                    case_passed(case).to_string(),
                    match (old.map(case_passed), case_passed(case)) {
                        (Some(false), true) => "fixed".into(),
                        (Some(true), false) => "broken".into(),
                        (None, _) => "new".into(),
                        _ => String::new(),
                    },
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
    let summary = |r: &shopfloor_store::EvalRecord| -> Option<Value> {
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

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    /// Entries after this sequence number.
    #[serde(default)]
    after: Option<u64>,
    /// Verify the whole chain.
    #[serde(default)]
    verify: Option<String>,
}

/// Audit entries shown on a page at most.
const AUDIT_PER_PAGE: usize = 200;

pub(crate) async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    crate::Query(query): crate::Query<AuditQuery>,
) -> Result<Response, PageError> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let (action, actor, subject) = (
        given(&query.action),
        given(&query.actor),
        given(&query.subject),
    );
    let store = state.engine.store();
    let mut after = query.after.unwrap_or(0);
    let mut entries = Vec::new();
    let mut more = false;
    'pages: loop {
        let page = state.store_call(store.audit_entries(after, 500)).await?;
        let Some(last) = page.last() else { break };
        let last_seq = last.seq;
        for entry in page {
            let keep = action.as_deref().is_none_or(|a| entry.action.as_str() == a)
                && actor.as_deref().is_none_or(|a| entry.actor == a)
                && subject.as_deref().is_none_or(|s| entry.subject == s);
            if keep {
                if entries.len() == AUDIT_PER_PAGE {
                    more = true;
                    break 'pages;
                }
                entries.push(entry);
            }
        }
        after = last_seq;
    }
    let next = more.then(|| entries.last().map(|e| e.seq)).flatten();
    let verified = if query.verify.is_some() {
        Some(
            match state.engine_call(state.engine.verify_audit(None)).await? {
                Ok(head) => context! { ok => true, head => head.map(|h| h.to_string()) },
                Err(broken) => context! { ok => false, seq => broken.seq, reason => broken.reason },
            },
        )
    } else {
        None
    };
    let filters: Vec<(&str, String)> = [
        ("action", &action),
        ("actor", &actor),
        ("subject", &subject),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect();
    let filter_query = filters
        .iter()
        .map(|(k, v)| format!("{k}={}", super::view::url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(render(
        "audit.html",
        context! {
            entries => Value::from_serialize(&entries),
            next => next,
            verified => verified,
            action => action,
            actor => actor,
            subject => subject,
            filters => filter_query,
            actions => shopfloor_store::AuditAction::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            ..frame(&viewer, "Audit log", "/audit")
        },
    ))
}

pub(crate) async fn policy(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let project = &state.engine.project;
    let workflows: Vec<_> = project.workflows.values().map(|w| w.spec.clone()).collect();
    let today = shopfloor_core::calendar::utc_date(now_ms());
    let document = shopfloor_core::policy_doc::build(&project.config, &workflows, &today);
    Ok(render(
        "document.html",
        context! {
            document => Value::from_safe_string(document.to_html_body()),
            ..frame(&viewer, "AI usage policy", "/policy")
        },
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct WeeklyQuery {
    /// `YYYY-Www`; default: the week before this one.
    #[serde(default)]
    week: Option<String>,
}

pub(crate) async fn weekly(
    State(state): State<AppState>,
    viewer: Viewer,
    crate::Query(query): crate::Query<WeeklyQuery>,
) -> Result<Response, PageError> {
    let last_week = shopfloor_core::calendar::iso_week(now_ms() - 7 * 86_400_000);
    let week = query.week.filter(|w| !w.is_empty()).unwrap_or(last_week);
    let Some(start) = shopfloor_core::calendar::parse_iso_week(&week) else {
        return Err(PageError::bad_request(format!(
            "week = \"{week}\" is not an ISO week; expected YYYY-Www, e.g. 2026-W49"
        ))
        .with_viewer(viewer));
    };
    let document = state.engine_call(state.engine.weekly_report(&week)).await?;
    let week_of = |ms: i64| shopfloor_core::calendar::iso_week(ms);
    Ok(render(
        "document.html",
        context! {
            document => Value::from_safe_string(document.to_html_body()),
            week => week.clone(),
            previous => week_of(start - 7 * 86_400_000),
            next => week_of(start + 7 * 86_400_000),
            ..frame(&viewer, &format!("Weekly review {week}"), "/reports/weekly")
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
