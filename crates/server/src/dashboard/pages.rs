//! The read-only pages: portfolio, workflow, runs (and their CSV), a run, evals and their
//! comparison, the audit chain, the policy and the weekly review. Each reads what the CLI's
//! command of the same name reads, through the engine; filters live in the URL.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};
use shopfloor_core::access::Permission;
use shopfloor_core::spec::Stage;
use shopfloor_engine::{now_ms, EngineError, EvalSummary};

use super::charts::{self, Point};
use super::{render, PageError, Posted, Viewer};
use crate::AppState;

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
    // `portfolio` wrote the recorder's runs through; the counts need not do it again.
    let entries = state.engine_call(state.engine.portfolio()).await?;
    let counts = state
        .engine_call(state.engine.records().review_counts(now_ms()))
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

/// The per-day series span this many days, today included.
const DAYS_SHOWN: u32 = 28;

/// The per-day charts of one version (or all of them), with no bar where a day had no runs;
/// `None` when no day in the span has any.
fn daily_charts(days: &[shopfloor_engine::OutcomeDay], version: Option<&str>) -> Option<Value> {
    let rows: Vec<(String, Option<shopfloor_engine::DayFigures>)> = days
        .iter()
        .map(|d| {
            let figures = match version {
                Some(v) => d
                    .versions
                    .iter()
                    .find(|x| x.version == v)
                    .map(|x| x.figures.clone()),
                None => Some(d.figures.clone()),
            };
            (d.day.clone(), figures.filter(|f| f.runs > 0))
        })
        .collect();
    if rows.iter().all(|(_, f)| f.is_none()) {
        return None;
    }
    let chart =
        |f: &dyn Fn(&shopfloor_engine::DayFigures) -> Option<f64>, label: &str, unit: &str| {
            let points: Vec<(String, Option<f64>)> = rows
                .iter()
                .map(|(day, figures)| (day.clone(), figures.as_ref().and_then(f)))
                .collect();
            Value::from_safe_string(charts::bars(&points, label, unit))
        };
    Some(context! {
        volume => chart(&|f| Some(f.runs as f64), "runs per day", " runs"),
        latency => chart(&|f| f.mean_latency_ms, "mean latency per day", " ms"),
        cost => chart(&|f| Some(f.cost_usd), "model cost per day", " USD"),
        invalid => chart(&|f| f.invalid_rate.map(|r| r * 100.0), "invalid outputs per day", "%"),
        acceptance => chart(&|f| f.acceptance_rate.map(|r| r * 100.0), "acceptance per day", "%"),
        from => days.first().map(|d| d.day.clone()),
        to => days.last().map(|d| d.day.clone()),
    })
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
    // The page's reads are independent: they go to the store at once.
    let (outcomes, drift, evals, baseline) = tokio::try_join!(
        state.engine_call(engine.outcomes(&name, None)),
        state.engine_call(engine.drift(&name, now_ms())),
        state.engine_call(engine.records().evals(Some(&name), 20)),
        state.engine_call(engine.records().baseline(&name)),
    )?;
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
    let days = state
        .engine_call(engine.outcome_days(&name, DAYS_SHOWN))
        .await?;
    let daily = daily_charts(&days, selected.as_deref());
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
    let experiments: Vec<Value> = state
        .engine_call(engine.experiment_status(&name))
        .await?
        .iter()
        .map(experiment_panel)
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
            daily => daily,
            kpi_chart => kpi_chart,
            drift => Value::from_serialize(&drift),
            experiments => experiments,
            evals => eval_rows,
            next_stage => next_stage.map(|s| s.as_str()),
            blockers => blockers,
            may_promote => viewer.may(Permission::Promote),
            config => config,
            ..frame(&viewer, &format!("{} · workflow", spec.name), "/")
        },
    ))
}

/// An experiment as the workflow page shows it: each arm's counts and every metric's value
/// in words, the recommendation, the halt and the decision.
fn experiment_panel(status: &shopfloor_engine::ExperimentStatus) -> Value {
    use shopfloor_core::experiment::format_value;
    let r = &status.record;
    let show =
        |metric, value: Option<f64>| value.map_or("–".to_string(), |v| format_value(metric, v));
    let arm = |name: &str, f: &shopfloor_core::experiment::ArmFigures| {
        context! { name => name, runs => f.runs, reviewed => f.reviewed, accepted => f.accepted,
        invalid => f.invalid }
    };
    context! {
        id => r.id.clone(),
        variant => r.variant.clone(),
        state => r.state.as_str(),
        hypothesis => r.hypothesis.clone(),
        metric => r.metric.as_str(),
        share => format!("{:.0}%", r.share * 100.0),
        guardrails => r.guardrails.iter().map(|g| g.text()).collect::<Vec<_>>(),
        started => format!("{} by {}", shopfloor_core::calendar::utc_datetime(r.started_at_ms), r.started_by),
        arms => vec![arm("control", &status.figures.control), arm(&r.variant, &status.figures.variant)],
        values => status.values.iter().map(|v| context! {
            metric => v.metric.as_str(),
            decides => v.metric == r.metric,
            control => show(v.metric, v.control),
            variant => show(v.metric, v.variant),
        }).collect::<Vec<_>>(),
        recommendation => status.recommendation.as_ref().map(|rec| context! {
            verdict => rec.verdict.as_str(), reason => rec.reason.clone() }),
        halted => r.halted_reason.clone(),
        decision => r.decision.clone(),
        decided_by => r.ended_by.clone(),
        note => r.note.clone(),
    }
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
    let mut after = query.after.unwrap_or(0);
    let mut entries = Vec::new();
    let mut more = false;
    'pages: loop {
        let page = state
            .engine_call(state.engine.records().audit_entries(after, 500))
            .await?;
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
            actions => shopfloor_engine::store_types::AuditAction::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
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
