//! One call to one model, the same steps for a workflow run, the eval judge and the gateway's
//! chat, stream and embeddings paths:
//!
//! 1. [`Runner::spec`]: the model looked up by its name in `shopfloor.toml`;
//! 2. [`Runner::clear`]: the outbound policy ([`crate::outbound::Guard`]: data class, personal
//!    data) applied to what would leave, and the request addressed to the model;
//! 3. [`Cleared::connect`]: the model's provider built;
//! 4. [`Ready::send`]: the attempt loop ([`Attempts`]: timeout, retries, backoff), its failure
//!    named after the model.
//!
//! A step that stops the call before the model is reached records why in the run's attempts,
//! so that they say what happened to every model of a route. What is fitted to a provider's
//! capabilities, which model comes next, and what an answer must look like stay with the caller:
//! a workflow adapts its request to the provider, a gateway client is told what cannot be sent.

use std::future::Future;
use std::sync::Arc;

use shopfloor_core::pii::Redactions;
use shopfloor_core::spec::{DataClass, ModelSpec};
use shopfloor_providers::{ChatRequest, ChatResponse, Provider, ProviderError};
use shopfloor_store::{AttemptRecord, ErrorKind};

use crate::attempt::{self, Answered, Attempts, CallFailure, Timed};
use crate::models::ModelPool;
use crate::runner::Runner;
use crate::trace;

/// How a call asks its model: for a whole answer ([`Complete`]) or for the start of a stream. A
/// trait rather than a closure, so that the futures stay `Send` for the server's tasks.
pub(crate) trait Ask {
    type Answer: Answered;

    fn ask<'a>(
        provider: &'a dyn Provider,
        request: &'a ChatRequest,
    ) -> impl Future<Output = Result<Self::Answer, ProviderError>> + Send + 'a;
}

/// A whole answer.
pub(crate) struct Complete;

impl Ask for Complete {
    type Answer = ChatResponse;

    fn ask<'a>(
        provider: &'a dyn Provider,
        request: &'a ChatRequest,
    ) -> impl Future<Output = Result<Self::Answer, ProviderError>> + Send + 'a {
        provider.complete(request)
    }
}

/// A request the policy let through to one model, its provider not built yet.
pub(crate) struct Cleared<'a> {
    pub spec: &'a ModelSpec,
    /// Addressed to the model, with what leaves redacted where the policy says so.
    pub request: ChatRequest,
    /// Whether the request carries placeholders, to be restored in the answer.
    pub redacting: bool,
}

/// A model ready to be called: its provider and the request for it.
#[derive(Clone)]
pub(crate) struct Ready<'a> {
    pub spec: &'a ModelSpec,
    pub provider: Arc<dyn Provider>,
    pub request: ChatRequest,
    pub redacting: bool,
}

impl Runner {
    /// The model named `name` in `shopfloor.toml`.
    pub(crate) fn spec(&self, name: &str) -> Result<&ModelSpec, CallFailure> {
        self.config.models.get(name).ok_or_else(|| {
            CallFailure::new(ErrorKind::Unavailable, format!("unknown model \"{name}\""))
        })
    }

    /// `request` (its model left unset) for `spec`, about data of `data_class`, with the outbound
    /// policy applied to its messages, assistant prefix and extras. Placeholders are taken from
    /// and added to `redactions`, one mapping for every message and attempt of a run. A refusal
    /// is recorded in `log` as an attempt that never reached the model.
    pub(crate) fn clear<'a>(
        &self,
        spec: &'a ModelSpec,
        data_class: DataClass,
        mut request: ChatRequest,
        redactions: &mut Redactions,
        log: &mut Vec<AttemptRecord>,
    ) -> Result<Cleared<'a>, CallFailure> {
        let redacting = self
            .guard()
            .check(
                spec,
                data_class,
                &mut request.messages,
                &mut request.assistant_prefix,
                &mut request.extras,
                redactions,
            )
            .inspect_err(|refusal| attempt::not_called(log, spec, refusal))?;
        request.model = spec.model.clone();
        Ok(Cleared {
            spec,
            request,
            redacting,
        })
    }
}

impl<'a> Cleared<'a> {
    /// The model's provider, from `models`; a provider that cannot be built (a key variable
    /// unset) is recorded in `log` as an attempt that never reached the model.
    pub(crate) fn connect(
        self,
        models: &ModelPool,
        log: &mut Vec<AttemptRecord>,
    ) -> Result<Ready<'a>, CallFailure> {
        let provider = models
            .provider(self.spec)
            .map_err(|e| CallFailure::from_provider(&self.spec.name, &e))
            .inspect_err(|failure| attempt::not_called(log, self.spec, failure))?;
        Ok(Ready {
            spec: self.spec,
            provider,
            request: self.request,
            redacting: self.redacting,
        })
    }
}

impl Ready<'_> {
    /// Send the request through `attempts` until the model answers `A` or fails for good. Each
    /// failed attempt is appended to `log`; the answer is the caller's to record, since only
    /// the caller knows whether it meets its contract.
    pub(crate) async fn send<A: Ask>(
        &self,
        attempts: &mut Attempts<'_>,
        log: &mut Vec<AttemptRecord>,
    ) -> Result<Timed<A::Answer>, CallFailure> {
        let (provider, sent) = (&*self.provider, &self.request);
        attempts
            .call(log, move || async move {
                A::ask(provider, &trace::traced(sent)).await
            })
            .await
            .map_err(|e| CallFailure::from_provider(&self.spec.name, &e))
    }
}
