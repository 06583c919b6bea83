//! Lifecycle gates: when a workflow may move to a stage, and the edit that moves it.
//!
//! draft → pilot → production → retired. A promotion is refused with every reason at once;
//! the facts that need the store (the last eval, the reviewers) are gathered by the caller.

use toml::de::DeTable;

use crate::spec::{RiskTier, Stage, Workflow};

/// The last eval of a workflow, as far as the gates care.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalFact {
    pub id: String,
    /// The workflow version the eval ran.
    pub version: String,
    /// `Some(true)` when it finished and passed its gates.
    pub passed: Option<bool>,
}

/// What the gates need to know beyond the workflow file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromotionFacts {
    /// The workflow's current version hash.
    pub version: String,
    /// The newest eval of this workflow on the current version, if any.
    pub last_eval: Option<EvalFact>,
    /// Live API keys whose role may review outputs.
    pub reviewers: usize,
}

/// Why `workflow` may not move to `to`; empty when it may.
pub fn promotion_blockers(workflow: &Workflow, to: Stage, facts: &PromotionFacts) -> Vec<String> {
    let mut blockers = Vec::new();
    let from = workflow.stage;
    if from == to {
        blockers.push(format!("it is already in {}", to.as_str()));
        return blockers;
    }
    match to {
        Stage::Draft => blockers.push(
            "a workflow cannot be promoted back to draft; edit `stage` in its file instead".into(),
        ),
        Stage::Retired => {}
        Stage::Pilot | Stage::Production => {
            if from == Stage::Retired {
                blockers.push(
                    "it is retired; a retired workflow does not come back — copy it under a new \
                     name"
                        .into(),
                );
            }
            if to == Stage::Production && from == Stage::Draft {
                blockers.push("it is in draft; promote it to pilot first".into());
            }
            if workflow.owner.as_deref().is_none_or(str::is_empty) {
                blockers.push("it has no owner: set `owner` to the accountable person".into());
            }
            if workflow.outcome.is_none() {
                blockers.push(
                    "it has no outcome: add [outcome] with the KPI it is measured against".into(),
                );
            }
            if to == Stage::Production {
                blockers.extend(production_blockers(workflow, facts));
            }
        }
    }
    blockers
}

fn production_blockers(workflow: &Workflow, facts: &PromotionFacts) -> Vec<String> {
    let mut blockers = Vec::new();
    let short = |v: &str| v.chars().take(12).collect::<String>();
    match &facts.last_eval {
        None => blockers.push(format!(
            "no eval has run on the current version {} (one that ran the whole dataset to the end): run `shopfloor eval {}`",
            short(&facts.version),
            workflow.name
        )),
        Some(eval) if eval.version != facts.version => blockers.push(format!(
            "the last eval ({}) ran version {}, older than the current version {}: run \
             `shopfloor eval {}`",
            eval.id,
            short(&eval.version),
            short(&facts.version),
            workflow.name
        )),
        Some(eval) => match eval.passed {
            Some(true) => {}
            Some(false) => blockers.push(format!(
                "the last eval on the current version ({}) failed its gates",
                eval.id
            )),
            None => blockers.push(format!(
                "the last eval on the current version ({}) had no gates to pass: add [eval] gate",
                eval.id
            )),
        },
    }
    if workflow.risk == RiskTier::High && facts.reviewers == 0 {
        blockers.push(
            "it is high risk, so every output is held for review, but no live API key may \
             review: create one with `shopfloor keys create --role reviewer`"
                .into(),
        );
    }
    blockers
}

/// `text` (a workflow file) with its top-level `stage` set to `to`, everything else kept as
/// written. Adds the key before the first table when the file has none.
pub fn set_stage(text: &str, to: Stage) -> Result<String, String> {
    let value = format!("\"{}\"", to.as_str());
    let doc = DeTable::parse(text).map_err(|e| format!("not valid TOML: {e}"))?;
    if let Some(stage) = doc.get_ref().get("stage") {
        let span = stage.span();
        return Ok(format!(
            "{}{value}{}",
            &text[..span.start],
            &text[span.end..]
        ));
    }
    let line = format!("stage = {value}\n");
    let first_table = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(0))
        .filter(|&start| text[start..].trim_start().starts_with('['))
        .min();
    Ok(match first_table {
        Some(at) => format!("{}{line}\n{}", &text[..at], &text[at..]),
        None if text.is_empty() || text.ends_with('\n') => format!("{text}{line}"),
        None => format!("{text}\n{line}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_workflow;

    const WORKFLOW: &str = r#"description = "Route tickets"
owner = "ana@example.com"
stage = "draft"   # moves with promote
risk = "low"
data_class = "internal"

[outcome]
kpi = "minutes to first response"
minutes_saved_per_accepted = 3

[input]
schema = { type = "object", properties = { text = { type = "string" } }, required = ["text"] }

[prompt]
user = "{{ text }}"

[output]
labels = ["a", "b"]

[route]
models = ["local"]
"#;

    fn workflow(text: &str) -> Workflow {
        let (workflow, diagnostics) = parse_workflow("triage", "workflows/triage.toml", text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        workflow.unwrap()
    }

    fn passing(version: &str) -> PromotionFacts {
        PromotionFacts {
            version: version.into(),
            last_eval: Some(EvalFact {
                id: "ev1".into(),
                version: version.into(),
                passed: Some(true),
            }),
            reviewers: 0,
        }
    }

    #[test]
    fn draft_to_pilot_needs_owner_and_outcome() {
        let ok = workflow(WORKFLOW);
        assert!(promotion_blockers(&ok, Stage::Pilot, &PromotionFacts::default()).is_empty());
        let bare = workflow(
            &WORKFLOW
                .replace("owner = \"ana@example.com\"\n", "")
                .replace(
                "[outcome]\nkpi = \"minutes to first response\"\nminutes_saved_per_accepted = 3\n",
                "",
            ),
        );
        let blockers = promotion_blockers(&bare, Stage::Pilot, &PromotionFacts::default());
        assert_eq!(blockers.len(), 2, "{blockers:?}");
        assert!(blockers[0].contains("no owner"));
        assert!(blockers[1].contains("no outcome"));
    }

    #[test]
    fn production_needs_a_passing_eval_on_the_current_version() {
        let pilot = workflow(&WORKFLOW.replace("\"draft\"", "\"pilot\""));
        assert!(promotion_blockers(&pilot, Stage::Production, &passing("v2")).is_empty());

        let none = PromotionFacts {
            version: "v2".into(),
            ..PromotionFacts::default()
        };
        let blockers = promotion_blockers(&pilot, Stage::Production, &none);
        assert!(blockers[0].contains("no eval has run"), "{blockers:?}");

        let mut stale = passing("v2");
        stale.last_eval.as_mut().unwrap().version = "v1".into();
        let blockers = promotion_blockers(&pilot, Stage::Production, &stale);
        assert!(
            blockers[0].contains("older than the current version"),
            "{blockers:?}"
        );

        let mut failed = passing("v2");
        failed.last_eval.as_mut().unwrap().passed = Some(false);
        let blockers = promotion_blockers(&pilot, Stage::Production, &failed);
        assert!(blockers[0].contains("failed its gates"), "{blockers:?}");
    }

    #[test]
    fn production_is_not_reached_from_draft_and_high_risk_needs_a_reviewer() {
        let draft = workflow(WORKFLOW);
        let blockers = promotion_blockers(&draft, Stage::Production, &passing("v1"));
        assert_eq!(blockers, vec!["it is in draft; promote it to pilot first"]);

        let high = workflow(
            &WORKFLOW
                .replace("\"draft\"", "\"pilot\"")
                .replace("risk = \"low\"", "risk = \"high\""),
        );
        let blockers = promotion_blockers(&high, Stage::Production, &passing("v1"));
        assert!(
            blockers[0].contains("no live API key may review"),
            "{blockers:?}"
        );
        let mut reviewed = passing("v1");
        reviewed.reviewers = 1;
        assert!(promotion_blockers(&high, Stage::Production, &reviewed).is_empty());
    }

    #[test]
    fn retiring_is_always_allowed_and_a_retired_workflow_stays_retired() {
        let draft = workflow(WORKFLOW);
        assert!(promotion_blockers(&draft, Stage::Retired, &PromotionFacts::default()).is_empty());
        let retired = workflow(&WORKFLOW.replace("\"draft\"", "\"retired\""));
        let blockers = promotion_blockers(&retired, Stage::Pilot, &PromotionFacts::default());
        assert!(blockers[0].contains("retired"), "{blockers:?}");
        let blockers = promotion_blockers(&retired, Stage::Retired, &PromotionFacts::default());
        assert_eq!(blockers, vec!["it is already in retired"]);
    }

    #[test]
    fn set_stage_replaces_only_the_value() {
        let edited = set_stage(WORKFLOW, Stage::Pilot).unwrap();
        assert_eq!(
            edited,
            WORKFLOW.replace("stage = \"draft\"", "stage = \"pilot\"")
        );
        assert!(edited.contains("# moves with promote"));
        assert_eq!(workflow(&edited).stage, Stage::Pilot);
    }

    #[test]
    fn set_stage_adds_the_key_before_the_first_table() {
        let without = WORKFLOW.replace("stage = \"draft\"   # moves with promote\n", "");
        let edited = set_stage(&without, Stage::Pilot).unwrap();
        assert_eq!(workflow(&edited).stage, Stage::Pilot);
        assert!(edited.find("stage = \"pilot\"").unwrap() < edited.find("[outcome]").unwrap());
        assert_eq!(
            set_stage("a = 1", Stage::Retired).unwrap(),
            "a = 1\nstage = \"retired\"\n"
        );
        assert!(set_stage("a = [", Stage::Pilot).is_err());
    }
}
