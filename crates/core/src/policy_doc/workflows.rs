//! The sections about workflows: the review path per risk tier, the list of workflows with
//! their owners and routes, and the lifecycle with each workflow's promotion gates.

use super::wording::{code_list, number, percent};
use super::{Block, Section, Table, Text};
use crate::access::{Permission, Role};
use crate::spec::{RiskTier, SlaAction, Workflow};

pub(super) fn review(workflows: &[Workflow]) -> Section {
    let of_tier = |tier: RiskTier| -> Vec<&Workflow> {
        workflows.iter().filter(|w| w.risk == tier).collect()
    };
    let names = |list: &[&Workflow]| code_list(list.iter().map(|w| w.name.as_str()), "none");
    let medium = of_tier(RiskTier::Medium);
    let mut medium_cell = Text::new();
    if medium.is_empty() {
        medium_cell = medium_cell.plain("none");
    }
    for (i, w) in medium.iter().enumerate() {
        if i > 0 {
            medium_cell = medium_cell.plain(", ");
        }
        medium_cell = medium_cell
            .code(w.name.as_str())
            .plain(format!(" ({} sampled)", percent(w.review.sample_rate)));
    }
    let reviewers: Vec<&str> = Role::CHOICES
        .iter()
        .filter(|(_, r)| r.allows(Permission::Review))
        .map(|(n, _)| *n)
        .collect();
    Section {
        id: "review",
        heading: "Human review by risk tier".into(),
        blocks: vec![
            Block::Paragraph(
                "Each workflow has a risk tier: how much harm a wrong output can do. The tier decides the review path of its outputs."
                    .into(),
            ),
            Block::Table(Table {
                header: ["Risk tier", "What happens to outputs", "Workflows"]
                    .map(String::from)
                    .to_vec(),
                rows: vec![
                    vec![
                        "low".into(),
                        "Outputs go straight out; no person reviews them.".into(),
                        names(&of_tier(RiskTier::Low)),
                    ],
                    vec![
                        "medium".into(),
                        Text::new()
                            .plain("Outputs go out; a sample of them (the workflow's ")
                            .code("[review] sample_rate")
                            .plain(") is queued for review after release."),
                        medium_cell,
                    ],
                    vec![
                        "high".into(),
                        "Every output is held until a reviewer approves it; nothing goes out unreviewed."
                            .into(),
                        names(&of_tier(RiskTier::High)),
                    ],
                ],
            }),
            Block::Paragraph(
                Text::new()
                    .plain("Reviews are done by people whose role grants review: ")
                    .plain(reviewers.join(", "))
                    .plain(". Every output that breaks the workflow's output contract is recorded as invalid and never released as an answer."),
            ),
            Block::Paragraph(
                "The review path of each workflow, from its [review] table: what waits for a person, how many must approve, how long an item may wait, and why an output may be rejected. Every decision is an entry in the audit log."
                    .into(),
            ),
            Block::Table(Table {
                header: ["Workflow", "Reviewed", "Approvals", "Time limit", "Reject reasons", "Events"]
                    .map(String::from)
                    .to_vec(),
                rows: workflows.iter().map(review_path).collect(),
            }),
        ],
    }
}

/// One workflow's row of the review path table.
fn review_path(w: &Workflow) -> Vec<Text> {
    let r = &w.review;
    let mut reviewed: Vec<String> = Vec::new();
    match w.risk {
        RiskTier::High => reviewed.push("every output, held until approved".into()),
        RiskTier::Medium if r.sample_rate > 0.0 => reviewed.push(format!(
            "{} of outputs, after release",
            percent(r.sample_rate)
        )),
        _ => {}
    }
    if !r.hold_labels.is_empty() {
        reviewed.push(format!(
            "outputs labelled {}, held",
            r.hold_labels.join(" or ")
        ));
    }
    if let Some(below) = r.hold_below_confidence {
        reviewed.push(format!(
            "outputs with confidence below {}, held",
            number(below)
        ));
    }
    let reviewed = if reviewed.is_empty() {
        "none".to_string()
    } else {
        reviewed.join("; ")
    };
    let approvals = match r.approvals_required {
        1 => "one reviewer".to_string(),
        n => format!("{n} different reviewers; a reject by any ends it"),
    };
    let limit = match r.sla_minutes {
        None => "none".to_string(),
        Some(m) => match r.on_sla {
            SlaAction::Escalate => format!("{m} min, then escalated"),
            SlaAction::Reject => format!("{m} min, then rejected"),
        },
    };
    let events = match &r.webhook {
        None => Text::from("none"),
        Some(hook) => Text::new()
            .plain("decisions and overdue items sent to a webhook, signed with ")
            .code(hook.secret_env.as_str()),
    };
    vec![
        Text::new().code(w.name.as_str()),
        Text::from(reviewed.as_str()),
        Text::from(approvals.as_str()),
        Text::from(limit.as_str()),
        code_list(r.reasons.iter().map(String::as_str), "none"),
        events,
    ]
}

pub(super) fn owner(w: &Workflow) -> Option<&str> {
    w.owner.as_deref().filter(|o| !o.trim().is_empty())
}

pub(super) fn workflow_list(workflows: &[Workflow]) -> Section {
    if workflows.is_empty() {
        return Section {
            id: "workflows",
            heading: "Workflows".into(),
            blocks: vec![Block::Paragraph("No workflows are defined.".into())],
        };
    }
    let rows = workflows
        .iter()
        .map(|w| {
            vec![
                Text::new().code(w.name.as_str()),
                match owner(w) {
                    Some(o) => Text::from(o),
                    None => Text::from("none — cannot be promoted"),
                },
                Text::from(w.stage.as_str()),
                Text::from(w.risk.as_str()),
                Text::from(w.data_class.as_str()),
                route(w),
            ]
        })
        .collect();
    let purposes = workflows
        .iter()
        .map(|w| {
            let mut item = Text::new().code(w.name.as_str()).plain(": ");
            item = if w.description.trim().is_empty() {
                item.plain("no description.")
            } else {
                let description = w.description.trim();
                let stop = if description.ends_with(['.', '!', '?']) {
                    ""
                } else {
                    "."
                };
                item.plain(format!("{description}{stop}"))
            };
            match &w.outcome {
                Some(o) => {
                    let mut measure = format!(" Measured by {}", o.kpi);
                    if let Some(b) = o.baseline {
                        measure.push_str(&format!(", baseline {}", number(b)));
                    }
                    if let Some(t) = o.target {
                        measure.push_str(&format!(", target {}", number(t)));
                    }
                    item.plain(format!(
                        "{measure}; {} minutes saved per accepted output.",
                        number(o.minutes_saved_per_accepted)
                    ))
                }
                None => item.plain(" No outcome KPI is set."),
            }
        })
        .collect();
    Section {
        id: "workflows",
        heading: "Workflows".into(),
        blocks: vec![
            Block::Paragraph(
                "Every workflow in the project. Models are listed in fallback order.".into(),
            ),
            Block::Table(Table {
                header: ["Workflow", "Owner", "Stage", "Risk", "Data class", "Models"]
                    .map(String::from)
                    .to_vec(),
                rows,
            }),
            Block::Paragraph("What each workflow is for, and how its outcome is measured:".into()),
            Block::List(purposes),
        ],
    }
}

fn route(w: &Workflow) -> Text {
    let mut text = Text::new();
    for (i, m) in w.route.models.iter().enumerate() {
        if i > 0 {
            text = text.plain(" → ");
        }
        text = text.code(&m.value);
    }
    text
}

pub(super) fn lifecycle(workflows: &[Workflow]) -> Section {
    let rows = workflows
        .iter()
        .map(|w| {
            vec![
                Text::new().code(w.name.as_str()),
                Text::from(w.stage.as_str()),
                gates(w),
            ]
        })
        .collect();
    let mut blocks = vec![
        Block::Paragraph(
            "A workflow moves draft → pilot → production, and is retired when it is no longer used. Promotion is gated, and refused with every reason at once:"
                .into(),
        ),
        Block::List(vec![
            Text::new()
                .plain("leaving draft needs an owner, the person accountable for the outcome, and an ")
                .code("[outcome]")
                .plain(" with a KPI (")
                .code("shopfloor check")
                .plain(" rejects a pilot or production workflow without them);"),
            "production is reached from pilot, and needs a passing evaluation of the current version against the workflow's eval gates;".into(),
            "a high-risk workflow needs a review path (someone whose role may review) before it goes to production;".into(),
            "a retired workflow does not come back.".into(),
        ]),
        Block::Paragraph(
            "Any change to the prompt, output contract, route or model parameters makes a new version; every run and evaluation records the version it used."
                .into(),
        ),
    ];
    if !workflows.is_empty() {
        blocks.push(Block::Table(Table {
            header: ["Workflow", "Stage", "Eval gates"]
                .map(String::from)
                .to_vec(),
            rows,
        }));
    }
    Section {
        id: "lifecycle",
        heading: "Lifecycle and promotion".into(),
        blocks,
    }
}

fn gates(w: &Workflow) -> Text {
    let Some(eval) = w
        .eval
        .as_ref()
        .filter(|e| !e.gate.is_empty() || !e.max_regression.is_empty())
    else {
        return "none: cannot pass an evaluation for production".into();
    };
    let absolute = eval
        .gate
        .iter()
        .map(|(scorer, min)| (scorer, format!(" at least {}", number(*min))));
    let relative = eval.max_regression.iter().map(|(scorer, drop)| {
        (
            scorer,
            format!(" at most {} below the baseline", number(*drop)),
        )
    });
    let mut text = Text::new();
    for (i, (scorer, rule)) in absolute.chain(relative).enumerate() {
        if i > 0 {
            text = text.plain("; ");
        }
        text = text.code(scorer).plain(rule);
    }
    text
}
