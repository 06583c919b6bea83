//! `POST /v1/embeddings`: texts to vectors on a model of `kind = "embedding"`, under the same
//! policy (data class, personal data bound outside the building), attempt loop and recording
//! as a chat call. There are no fallbacks: another model's vectors live in another space,
//! and mixing them silently would corrupt whatever index the caller builds.

use std::time::Instant;

use serde_json::json;
use shopfloor_core::pii::Redactions;
use shopfloor_core::spec::ModelUse;
use shopfloor_providers::{
    ChatRequest, EmbeddingRequest, EmbeddingResponse, Message, Role, Unsupported, Usage,
};
use shopfloor_store::{Caller, ErrorKind, RunStatus};
use tracing::Instrument;

use super::{gateway_version, GatewayError, RunFacts, GATEWAY_WORKFLOW};
use crate::attempt::{self, Answered, CallFailure, Ending};
use crate::runner::new_run;
use crate::trace;
use crate::Engine;

/// An embeddings call as a gateway client sent it.
#[derive(Debug, Clone, Default)]
pub struct EmbedRequest {
    /// A model name from `shopfloor.toml`, of `kind = "embedding"`.
    pub model: String,
    /// The texts, in order: one vector each comes back.
    pub input: Vec<String>,
    /// A shorter vector, for models that can give one.
    pub dimensions: Option<u32>,
    pub caller: Option<Caller>,
}

/// The vectors, one per input text, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedAnswer {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read (0 when its provider did not say).
    pub prompt_tokens: u32,
    /// The name (in `shopfloor.toml`) of the model that answered.
    pub model: String,
}

/// A finished embeddings call: the vectors or why not, and the recorded run.
#[derive(Debug, Clone)]
pub struct EmbedOutcome {
    pub result: Result<EmbedAnswer, GatewayError>,
    pub run: RunFacts,
}

impl Answered for EmbeddingResponse {
    fn usage(&self) -> Option<Usage> {
        self.prompt_tokens.map(|prompt_tokens| Usage {
            prompt_tokens,
            completion_tokens: 0,
        })
    }
}

impl Engine {
    /// Embed `request.input` on the named embedding model, and record the call as a gateway
    /// run: its texts as the store policy keeps them, the count and length of the vectors as
    /// its output (the vectors themselves are the caller's).
    pub async fn gateway_embed(&self, request: EmbedRequest) -> EmbedOutcome {
        self.embed_recorded(request)
            .instrument(trace::run_span(GATEWAY_WORKFLOW))
            .await
    }

    async fn embed_recorded(&self, request: EmbedRequest) -> EmbedOutcome {
        let started = Instant::now();
        let spec = self.project.config.models.get(&request.model);
        let mut run = new_run(
            shopfloor_store::RunOrigin::Gateway,
            GATEWAY_WORKFLOW,
            &gateway_version(spec),
            json!({
                "endpoint": "embeddings",
                "model": request.model,
                "input": request.input,
                "dimensions": request.dimensions,
            }),
            None,
            request.caller.clone(),
        );
        let mut upstream = std::time::Duration::ZERO;
        let result = self
            .embed_on(&request, &mut run.attempts, &mut upstream)
            .await;
        match &result {
            Ok(answer) => {
                run.status = RunStatus::Ok;
                run.model = Some(answer.model.clone());
                run.output = Some(json!({
                    "vectors": answer.vectors.len(),
                    "dimensions": answer.vectors.first().map_or(0, Vec::len),
                }));
            }
            Err(error) => error.record_on(&mut run),
        }
        attempt::finish_totals(&mut run, started);
        trace::record_run(&tracing::Span::current(), &run);
        let facts = RunFacts::of(&run, upstream);
        self.record(run).await;
        EmbedOutcome { result, run: facts }
    }

    async fn embed_on(
        &self,
        request: &EmbedRequest,
        log: &mut Vec<shopfloor_store::AttemptRecord>,
        upstream: &mut std::time::Duration,
    ) -> Result<EmbedAnswer, GatewayError> {
        let config = &self.project.config;
        let Some(spec) = config.models.get(&request.model) else {
            return Err(GatewayError::UnknownModel {
                name: request.model.clone(),
                known: config
                    .models
                    .values()
                    .filter(|m| m.kind == ModelUse::Embedding)
                    .map(|m| m.name.clone())
                    .collect(),
            });
        };
        let unsupported = |param: &str, reason: String| GatewayError::Unsupported {
            model: spec.name.clone(),
            unsupported: Unsupported {
                param: param.to_string(),
                reason,
            },
        };
        if spec.kind != ModelUse::Embedding {
            return Err(unsupported(
                "model",
                "it is a chat model; embeddings need a model with kind = \"embedding\" in shopfloor.toml"
                    .to_string(),
            ));
        }
        // The same pipeline as every text bound for a model: the texts go through the guard
        // as the messages of a chat would (data class, then redaction or refusal). Vectors
        // carry no placeholders to restore.
        let texts = ChatRequest {
            messages: request
                .input
                .iter()
                .map(|text| Message::new(Role::User, text.clone()))
                .collect(),
            ..ChatRequest::default()
        };
        let runner = &self.runner;
        let model = runner
            .clear(
                spec,
                config.gateway.data_class,
                texts,
                &mut Redactions::new(),
                log,
            )
            .and_then(|cleared| cleared.connect(&runner.models, log))
            .map_err(GatewayError::Failed)?;
        let provider = model.provider;
        let sent = EmbeddingRequest {
            model: spec.model.clone(),
            input: model
                .request
                .messages
                .into_iter()
                .map(|m| m.content)
                .collect(),
            dimensions: request.dimensions,
            traceparent: None,
        };
        if let Some(refused) = provider.unsupported_embedding(&sent) {
            return Err(unsupported(&refused.param, refused.reason));
        }
        let mut attempts = self.attempts(spec);
        let (provider, sent) = (&*provider, &sent);
        let result = attempts
            .call(log, move || async move {
                let mut traced = sent.clone();
                traced.traceparent = trace::traceparent(&tracing::Span::current());
                provider.embed(&traced).await
            })
            .await;
        *upstream += attempts.upstream();
        let answer =
            result.map_err(|e| GatewayError::Failed(CallFailure::from_provider(&spec.name, &e)))?;
        let response = answer.value;
        let miscounted = (response.vectors.len() != sent.input.len()).then(|| {
            CallFailure::new(
                ErrorKind::Upstream,
                format!(
                    "model \"{}\" answered {} vectors for {} texts",
                    spec.name,
                    response.vectors.len(),
                    sent.input.len()
                ),
            )
        });
        log.push(attempt::answered(
            log.len(),
            spec,
            answer.started_at_ms,
            answer.latency,
            response.usage().unwrap_or_default(),
            "",
            miscounted.as_ref().map_or(Ending::Valid, Ending::BrokenOff),
        ));
        if let Some(failure) = miscounted {
            return Err(GatewayError::Failed(failure));
        }
        Ok(EmbedAnswer {
            prompt_tokens: response.prompt_tokens.unwrap_or(0),
            vectors: response.vectors,
            model: spec.name.clone(),
        })
    }
}
