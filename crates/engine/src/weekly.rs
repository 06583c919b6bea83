//! The weekly operating review: what changed this week (versions, promotions, evals and
//! baselines), each workflow this week against last with keep / fix / cut, the wins and the
//! risks — one document, rendered to Markdown or to one HTML page with its charts inline. The
//! same database and week give the same bytes: nothing in it reads the clock.

use shopfloor_core::calendar::{iso_week, parse_iso_week, utc_date};
use shopfloor_core::policy_doc::{Bars, Block, PolicyDocument, Section, Table, Text};
use shopfloor_store::{AuditAction, Window};

use crate::audit_detail::{read, ExperimentHalted, ExperimentStarted, ExperimentStopped};
use crate::portfolio::{HealthFlag, PortfolioEntry};
use crate::{Engine, EngineError};

const DAY_MS: i64 = 86_400_000;
/// Audit entries and evals read for one week, at most.
const WEEK_LIMIT: u32 = 5_000;

/// The last ISO week that has ended before `now_ms`: the one whose review is due.
fn ended_week(now_ms: i64) -> String {
    iso_week(now_ms - 7 * DAY_MS)
}

impl Engine {
    /// Queue the review of the last week that has ended before `now_ms` for `[monitoring]
    /// weekly_webhook`, to be sent by the delivery pass. The event's id is the week: a week
    /// already queued (by this replica, another one, or before a restart) is not built again,
    /// and two replicas that build it at once still queue it once. Returns the week, or `None`
    /// without a weekly webhook.
    pub async fn queue_weekly_review(&self, now_ms: i64) -> Result<Option<String>, EngineError> {
        let Some(hook) = self.project.config.monitoring.weekly_webhook.clone() else {
            return Ok(None);
        };
        let week = ended_week(now_ms);
        let id = format!("weekly_{week}");
        if self.store.has_event(&id).await? {
            return Ok(Some(week));
        }
        let report = self.weekly_report(&week).await?;
        let kind = shopfloor_store::EventKind::WeeklyReview;
        let body = serde_json::json!({
            "id": id,
            "type": kind.as_str(),
            "created_at_ms": now_ms,
            "data": {"week": week, "markdown": report.to_markdown()},
        });
        let event = shopfloor_store::OutboxEvent::due_now(
            id,
            kind,
            "",
            None,
            &hook,
            body.to_string(),
            now_ms,
        );
        self.store.enqueue_events(&[event]).await?;
        Ok(Some(week))
    }

    /// The review of ISO week `week` (e.g. `2026-W49`).
    pub async fn weekly_report(&self, week: &str) -> Result<PolicyDocument, EngineError> {
        let monday = parse_iso_week(week).ok_or_else(|| {
            EngineError::InvalidInput(format!(
                "\"{week}\" is not an ISO week; expected YYYY-Www, e.g. 2026-W49"
            ))
        })?;
        self.flush().await;
        let window = Window {
            from_ms: monday,
            to_ms: monday + 7 * DAY_MS,
        };
        let entries = self.portfolio_entries(window.to_ms).await?;
        let audit = self.store.audit_in(window, WEEK_LIMIT).await?;
        let evals: Vec<_> = self
            .store
            .list_evals(None, WEEK_LIMIT)
            .await?
            .into_iter()
            .filter(|e| e.created_at_ms >= window.from_ms && e.created_at_ms < window.to_ms)
            .collect();
        let reviewers = self.store.reviewer_counts(window).await?;
        let teams = self.team_savings(window).await?;

        let mut changed: Vec<Text> = Vec::new();
        for entry in &audit {
            match entry.action {
                AuditAction::WorkflowVersion => changed.push(
                    Text::new()
                        .plain("New version of ")
                        .code(entry.subject.as_str())
                        .plain(": ")
                        .code(entry.version_seen().map_or("?".into(), |d| d.version)),
                ),
                AuditAction::WorkflowPromote => {
                    let (from, to) = entry
                        .promotion()
                        .map_or(("?", "?"), |p| (p.from.as_str(), p.to.as_str()));
                    changed.push(
                        Text::new()
                            .code(entry.subject.as_str())
                            .plain(format!(" promoted from {from} to {to} by {}", entry.actor)),
                    )
                }
                AuditAction::BaselineSet => changed.push(
                    Text::new()
                        .plain("New baseline for ")
                        .code(entry.subject.as_str())
                        .plain(format!(" set by {}", entry.actor)),
                ),
                _ => {}
            }
        }
        for eval in &evals {
            let verdict = match eval.passed {
                Some(true) => "passed its gates",
                Some(false) => "failed its gates",
                None => "has no verdict",
            };
            changed.push(
                Text::new()
                    .plain("Eval ")
                    .code(eval.id.as_str())
                    .plain(" of ")
                    .code(eval.workflow.as_str())
                    .plain(" version ")
                    .code(eval.version.as_str())
                    .plain(format!(" {verdict} ({} cases)", eval.total_cases)),
            );
        }
        if changed.is_empty() {
            changed.push("Nothing: no new version, promotion, eval or baseline.".into());
        }

        let mut wins: Vec<Text> = entries
            .iter()
            .filter(|e| e.kpi.as_ref().is_some_and(|k| k.target_reached))
            .map(|e| {
                let kpi = e.kpi.as_ref().expect("filtered on a KPI");
                Text::new().code(e.workflow.as_str()).plain(format!(
                    " reached its target: {} at {} (target {})",
                    kpi.name,
                    kpi.latest.as_ref().map_or(0.0, |l| l.value),
                    kpi.target.unwrap_or(0.0)
                ))
            })
            .collect();
        let saved: f64 = entries.iter().map(|e| e.this_week.minutes_saved).sum();
        if saved > 0.0 {
            wins.push(Text::from(format!(
                "{:.0} minutes saved across workflows ({:.1} hours)",
                saved,
                saved / 60.0
            )));
        }
        for (reviewer, n) in reviewers.iter().take(3) {
            wins.push(Text::from(format!("{reviewer} decided {n} review item(s)")));
        }
        if wins.is_empty() {
            wins.push("None recorded this week.".into());
        }

        let mut risks: Vec<Text> = Vec::new();
        for e in &entries {
            for flagged in e.flags.iter().filter(|f| f.flag != HealthFlag::NoOwner) {
                risks.push(
                    Text::new()
                        .code(e.workflow.as_str())
                        .plain(format!(": {}", flagged.reason)),
                );
            }
        }
        let refusals = audit
            .iter()
            .filter(|e| e.action == AuditAction::PolicyRefuse)
            .count();
        if refusals > 0 {
            risks.push(Text::from(format!(
                "{refusals} run(s) refused by the data policy"
            )));
        }
        if risks.is_empty() {
            risks.push("None flagged.".into());
        }
        let experiments = experiment_lines(&audit, &self.live_experiments().await?);

        let sunday = window.to_ms - DAY_MS;
        Ok(PolicyDocument {
            title: format!("Weekly operating review, {}", iso_week(monday)),
            generated: Text::from(format!(
                "{} to {}, from the shopfloor database. This week is compared with the 7 days before it.",
                utc_date(monday),
                utc_date(sunday)
            )),
            sections: vec![
                Section {
                    id: "changed",
                    heading: "What changed".into(),
                    blocks: vec![Block::List(changed)],
                },
                Section {
                    id: "workflows",
                    heading: "Workflows, this week against last".into(),
                    blocks: workflow_blocks(&entries),
                },
                Section {
                    id: "teams",
                    heading: "Time saved per team".into(),
                    blocks: team_blocks(&teams),
                },
                Section {
                    id: "wins",
                    heading: "Wins".into(),
                    blocks: vec![Block::List(wins)],
                },
                Section {
                    id: "risks",
                    heading: "Risks".into(),
                    blocks: vec![Block::List(risks)],
                },
                Section {
                    id: "experiments",
                    heading: "Experiments and decisions due".into(),
                    blocks: vec![Block::List(experiments)],
                },
            ],
            gaps: Vec::new(),
        })
    }
}

/// Experiments started, halted and decided this week, and each live one with what its
/// numbers recommend: a decision is due when they say keep or cut, or a guardrail halted it.
fn experiment_lines(
    audit: &[shopfloor_store::AuditEntry],
    live: &[crate::ExperimentStatus],
) -> Vec<Text> {
    let mut lines: Vec<Text> = Vec::new();
    for entry in audit {
        let about = |variant: &str| {
            Text::new()
                .code(entry.subject.as_str())
                .plain(": variant ")
                .code(variant)
        };
        let line = match entry.action {
            AuditAction::ExperimentStart => read::<ExperimentStarted>(entry).map(|d| {
                Text::new()
                    .code(entry.subject.as_str())
                    .plain(": experiment of variant ")
                    .code(d.variant)
                    .plain(format!(
                        " started by {} (hypothesis: {})",
                        entry.actor, d.hypothesis
                    ))
            }),
            AuditAction::ExperimentHalt => read::<ExperimentHalted>(entry)
                .map(|d| about(&d.variant).plain(format!(" halted: {}", d.reason))),
            AuditAction::ExperimentStop => read::<ExperimentStopped>(entry).map(|d| {
                let note = d.note.map(|n| format!(" ({n})")).unwrap_or_default();
                about(&d.variant).plain(format!(
                    " decided: {} by {}{note}; hypothesis: {}",
                    d.decision, entry.actor, d.hypothesis
                ))
            }),
            _ => continue,
        };
        // An entry that does not read as its action's particulars is shown as altered, not
        // skipped: the chain's verification says more.
        lines.push(line.unwrap_or_else(|| {
            Text::new().code(entry.subject.as_str()).plain(format!(
                ": audit entry {} ({}) has particulars that do not read as one",
                entry.seq, entry.action
            ))
        }));
    }
    for status in live {
        let r = &status.record;
        let due = match (&r.halted_reason, &status.recommendation) {
            (Some(reason), _) => format!("decision due: halted by {reason}"),
            (None, Some(rec)) if rec.verdict != shopfloor_core::experiment::Verdict::Continue => {
                format!(
                    "decision due: the numbers say {} — {}",
                    rec.verdict, rec.reason
                )
            }
            (None, Some(rec)) => format!("running: {}", rec.reason),
            (None, None) => "running".to_string(),
        };
        lines.push(
            Text::new()
                .code(r.workflow.as_str())
                .plain(": variant ")
                .code(r.variant.as_str())
                .plain(format!(" on {}, {due}", r.metric)),
        );
    }
    if lines.is_empty() {
        lines.push("No experiment running, started or decided.".into());
    }
    lines
}

/// The table of workflows and the chart of minutes saved.
/// One team's accepted outputs in a week, over every workflow, and the minutes they saved.
#[derive(Debug, Clone, Default, PartialEq)]
struct TeamSaving {
    accepted: u64,
    minutes: f64,
}

impl Engine {
    /// Each caller team's accepted outputs in `window` and the minutes they saved (accepted ×
    /// the workflow's `minutes_saved_per_accepted`), most minutes first; `None` is no team.
    async fn team_savings(
        &self,
        window: Window,
    ) -> Result<Vec<(Option<String>, TeamSaving)>, EngineError> {
        let mut teams: std::collections::BTreeMap<Option<String>, TeamSaving> = Default::default();
        for (name, workflow) in &self.project.workflows {
            let minutes = workflow
                .spec
                .outcome
                .as_ref()
                .map_or(0.0, |o| o.minutes_saved_per_accepted);
            for t in self.store.team_runs(name, window).await? {
                let saving = teams.entry(t.team).or_default();
                saving.accepted += t.accepted;
                saving.minutes += t.accepted as f64 * minutes;
            }
        }
        let mut teams: Vec<_> = teams.into_iter().filter(|(_, s)| s.accepted > 0).collect();
        teams.sort_by(|a, b| {
            b.1.minutes
                .total_cmp(&a.1.minutes)
                .then_with(|| a.0.cmp(&b.0))
        });
        Ok(teams)
    }
}

fn team_blocks(teams: &[(Option<String>, TeamSaving)]) -> Vec<Block> {
    if teams.is_empty() {
        return vec![Block::List(vec!["No accepted outputs this week.".into()])];
    }
    let rows = teams
        .iter()
        .map(|(team, saving)| {
            vec![
                match team {
                    Some(team) => Text::new().code(team.as_str()),
                    None => Text::from("no team (the CLI, or keys without one)"),
                },
                Text::from(saving.accepted.to_string()),
                Text::from(format!("{:.0}", saving.minutes)),
            ]
        })
        .collect();
    vec![
        Block::Paragraph(
            "Accepted outputs of every workflow by the caller's team, and the minutes they \
             saved before reviewers' time (which is not split by team)."
                .into(),
        ),
        Block::Table(Table {
            header: vec![
                "Team".into(),
                "Accepted outputs".into(),
                "Minutes saved".into(),
            ],
            rows,
        }),
    ]
}

fn workflow_blocks(entries: &[PortfolioEntry]) -> Vec<Block> {
    let pct = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.0}%", r * 100.0));
    let money = |c: Option<f64>| c.map_or("-".to_string(), |c| format!("${c:.4}"));
    let rows = entries
        .iter()
        .map(|e| {
            let (now, before) = (&e.this_week, &e.last_week);
            let kpi = e.kpi.as_ref().map_or("-".to_string(), |k| {
                let latest = k
                    .latest
                    .as_ref()
                    .map_or("-".to_string(), |l| l.value.to_string());
                match k.target {
                    Some(t) => format!("{latest} (target {t})"),
                    None => latest,
                }
            });
            let mut why = e.suggestion.as_str().to_string();
            if let Some(first) = e.reasons.first() {
                why = format!("{why}: {first}");
            }
            vec![
                Text::new().code(e.workflow.as_str()),
                Text::from(e.stage.as_str()),
                Text::from(format!("{} ({})", now.runs, before.runs)),
                Text::from(format!(
                    "{} ({})",
                    pct(now.acceptance_rate),
                    pct(before.acceptance_rate)
                )),
                Text::from(format!(
                    "{:.0} ({:.0})",
                    now.minutes_saved, before.minutes_saved
                )),
                Text::from(format!(
                    "{} ({})",
                    money(now.cost_per_accepted_usd),
                    money(before.cost_per_accepted_usd)
                )),
                Text::from(kpi),
                Text::from(why),
            ]
        })
        .collect();
    vec![
        Block::Paragraph("Each figure is this week's, last week's in brackets.".into()),
        Block::Table(Table {
            header: [
                "Workflow",
                "Stage",
                "Runs",
                "Acceptance",
                "Minutes saved",
                "Cost per accepted",
                "KPI",
                "Suggestion",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        }),
        Block::Bars(Bars {
            caption: "Minutes saved this week".into(),
            bars: entries
                .iter()
                .map(|e| {
                    let m = e.this_week.minutes_saved;
                    (e.workflow.clone(), m, format!("{m:.0} min"))
                })
                .collect(),
        }),
    ]
}
