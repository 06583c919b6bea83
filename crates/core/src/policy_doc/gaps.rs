//! The open points of a policy: what a reader should know is missing or risky in the config.

use super::{external, owner, Text};
use crate::spec::{
    DataClass, ExternalAction, ProjectConfig, RiskTier, Stage, StoreAction, Workflow,
};

/// What a reader of the policy should know is missing or risky.
pub(super) fn gaps(config: &ProjectConfig, workflows: &[Workflow]) -> Vec<Text> {
    let mut gaps = Vec::new();
    let outside = external(config);
    match &config.pii {
        None => gaps.push(
            Text::new()
                .plain("No personal-data detection is configured (")
                .code("[policy.pii]")
                .plain(" is absent): personal data reaches models outside the premises and the database as is."),
        ),
        Some(p) if p.detect.is_empty() => gaps.push(
            Text::new()
                .code("[policy.pii] detect")
                .plain(" is empty: no personal data is detected, redacted or blocked."),
        ),
        Some(p) => {
            if p.on_external == ExternalAction::Allow && !outside.is_empty() {
                gaps.push(
                    Text::new()
                        .plain("Personal data is sent as is to models outside the premises (")
                        .code("on_external = \"allow\"")
                        .plain(")."),
                );
            }
            if p.on_store == StoreAction::Allow {
                gaps.push(
                    Text::new()
                        .plain("The database keeps personal data as is (")
                        .code("on_store = \"allow\"")
                        .plain(")."),
                );
            }
        }
    }
    for m in &outside {
        if m.data_classes.contains(&DataClass::Restricted) {
            gaps.push(
                Text::new()
                    .plain("Model ")
                    .code(&m.name)
                    .plain(" may see restricted data but is not on premises."),
            );
        }
    }
    for w in workflows {
        if owner(w).is_none() {
            gaps.push(
                Text::new()
                    .plain("Workflow ")
                    .code(w.name.as_str())
                    .plain(" has no owner; it cannot be promoted out of draft."),
            );
        }
        if w.risk == RiskTier::Medium && w.review.sample_rate == 0.0 {
            gaps.push(
                Text::new()
                    .plain("Medium-risk workflow ")
                    .code(w.name.as_str())
                    .plain(" samples no outputs for review (")
                    .code("[review] sample_rate")
                    .plain(" is 0)."),
            );
        }
        let gated = w
            .eval
            .as_ref()
            .is_some_and(|e| !e.gate.is_empty() || !e.max_regression.is_empty());
        if matches!(w.stage, Stage::Pilot | Stage::Production) && !gated {
            gaps.push(
                Text::new()
                    .plain("Workflow ")
                    .code(w.name.as_str())
                    .plain(format!(" is in {} but has no eval gate.", w.stage.as_str())),
            );
        }
    }
    gaps
}
