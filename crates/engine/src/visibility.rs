//! What of a run each audience sees: the one rule every path that shows a run follows (the
//! API's run reads, the dashboard's run page, `shopfloor runs show`, batch results, webhooks).
//!
//! Callers and readers see the released output only. The model's own answer of a run that review
//! held, rejected or corrected is for roles with the review permission: a rejected answer was
//! judged unfit to hand out, and a corrected one was overridden for a reason.

use serde::Serialize;
use serde_json::Value;
use shopfloor_core::access::{Permission, Role};
use shopfloor_core::review::ReviewStatus;
use shopfloor_store::{AttemptOutcome, ReviewDecisionRecord, ReviewItem, RunRecord, RunStatus};

use crate::{Engine, EngineError};

/// Who looks at a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Callers and readers: the released output only.
    Reader,
    /// Roles with the review permission: the model's own answer too.
    Reviewer,
}

impl Audience {
    /// The audience a role belongs to.
    pub fn of(role: Role) -> Self {
        if role.allows(Permission::Review) {
            Audience::Reviewer
        } else {
            Audience::Reader
        }
    }
}

/// Why the model's own answer is not (or not only) what was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// Waiting for a reviewer: nothing is released yet.
    Held,
    /// A reviewer rejected it: nothing is released.
    Rejected,
    /// A reviewer replaced it: the correction is released.
    Corrected,
}

impl Withheld {
    /// The name used on the wire and in the database (`held`, `rejected`, `corrected`).
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::Held => "held",
            Withheld::Rejected => "rejected",
            Withheld::Corrected => "corrected",
        }
    }

    /// What a person reads in place of the model's answer.
    pub fn describe(self) -> &'static str {
        match self {
            Withheld::Held => "held for review: not released yet",
            Withheld::Rejected => "rejected by review: not released",
            Withheld::Corrected => "released as corrected by review",
        }
    }
}

/// What an attempt that broke the output contract says to a reader, in place of the message
/// that quotes the answer.
const CONTRACT_BROKEN: &str = "the answer broke the output contract";

/// A run as one audience may see it.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The record, with what this audience may not see taken out.
    pub run: RunRecord,
    /// The output handed to callers: `None` while held, once rejected, and when there is none.
    pub released: Option<Value>,
    /// Why the model's answer is not what was released, if review stepped in.
    pub withheld: Option<Withheld>,
    /// Whether the model's own answer was taken out for this audience.
    pub answer_hidden: bool,
    /// Its review item and the decisions on it, when the run went to review.
    pub review: Option<(ReviewItem, Vec<ReviewDecisionRecord>)>,
}

/// The output a caller may see: none while the run is held for review or once it is rejected;
/// a reviewer's correction once it is corrected.
pub fn released_output(run: &RunRecord) -> Option<&Value> {
    match run.status {
        RunStatus::Held | RunStatus::Rejected => None,
        _ => run.output.as_ref(),
    }
}

/// `run` as `audience` may see it, with its review item and decisions if it went to review.
fn view(
    mut run: RunRecord,
    review: Option<(ReviewItem, Vec<ReviewDecisionRecord>)>,
    audience: Audience,
) -> RunView {
    let corrected = review
        .as_ref()
        .is_some_and(|(item, _)| item.status == ReviewStatus::Edited);
    let withheld = match run.status {
        RunStatus::Held => Some(Withheld::Held),
        RunStatus::Rejected => Some(Withheld::Rejected),
        _ if corrected => Some(Withheld::Corrected),
        _ => None,
    };
    let released = released_output(&run).cloned();
    let answer_hidden = withheld.is_some() && audience == Audience::Reader;
    if answer_hidden {
        run.raw_output = None;
        run.output = released.clone();
        for attempt in &mut run.attempts {
            attempt.raw_output = None;
            if attempt.outcome == AttemptOutcome::Invalid {
                attempt.error = Some(CONTRACT_BROKEN.to_owned());
            }
        }
    }
    RunView {
        run,
        released,
        withheld,
        answer_hidden,
        review,
    }
}

impl crate::Records {
    /// Run `id` as `audience` may see it, or `None` if there is no such run.
    pub async fn run_view(
        &self,
        id: &str,
        audience: Audience,
    ) -> Result<Option<RunView>, EngineError> {
        let store = self.store();
        let Some(run) = store.get_run(id).await? else {
            return Ok(None);
        };
        let review = match run.review {
            Some(_) => match store.get_review(id).await? {
                Some(item) => Some((item, store.review_decisions(Some(id), None).await?)),
                None => None,
            },
            None => None,
        };
        Ok(Some(view(run, review, audience)))
    }
}

impl Engine {
    /// Run `id` as `audience` may see it, or `None` if there is no such run. A run that ended a
    /// moment ago may still be queued for the recorder: the queue is written before giving up.
    pub async fn run_view(
        &self,
        id: &str,
        audience: Audience,
    ) -> Result<Option<RunView>, EngineError> {
        if let Some(view) = self.records.run_view(id, audience).await? {
            return Ok(Some(view));
        }
        self.read().await.run_view(id, audience).await
    }
}
