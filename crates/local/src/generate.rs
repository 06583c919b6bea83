//! One request's generation: prompt prefill, then sampling token by token, streamed as UTF-8.

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use shopfloor_providers::FinishReason;
use tokio::sync::mpsc::UnboundedSender;

use crate::json::JsonConstraint;
use crate::model::{Cache, Model};
use crate::tokenizer::{Tokenizer, Utf8Stream};
use crate::LocalError;

/// Longest context the model runs with (candle precomputes rotary tables up to this length).
pub(crate) const MAX_CONTEXT: usize = crate::llama::MAX_SEQ_LEN;

/// Prompt tokens fed per scheduling step: long enough for efficient matrix products, short
/// enough that a long prompt does not stall other requests for seconds.
const PREFILL_CHUNK: usize = 128;

/// Positions a new context has room for beyond its prompt before its cache grows.
const CACHE_HEADROOM: usize = 256;

/// How one request samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SamplingParams {
    pub(crate) temperature: f64,
    pub(crate) top_p: Option<f64>,
    pub(crate) seed: u64,
}

impl SamplingParams {
    pub(crate) fn processor(self) -> LogitsProcessor {
        let sampling = if self.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match self.top_p {
                Some(p) if p > 0.0 && p < 1.0 => Sampling::TopP {
                    p,
                    temperature: self.temperature,
                },
                _ => Sampling::All {
                    temperature: self.temperature,
                },
            }
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }
}

/// What a generation reports back to the waiting request.
#[derive(Debug)]
pub(crate) enum GenEvent {
    Delta(String),
    Done {
        completion_tokens: u32,
        finish_reason: FinishReason,
    },
    Failed(LocalError),
}

/// A sequence's own KV cache and position; the weights are shared, not copied.
pub(crate) struct Context {
    model: Model,
    cache: Cache,
    pending: Vec<u32>,
    pos: usize,
    logits: Option<Tensor>,
}

impl Context {
    /// A fresh context that will first read `prompt`.
    pub(crate) fn new(weights: &Model, prompt: Vec<u32>) -> Self {
        Self {
            model: weights.clone(),
            cache: weights.new_cache(prompt.len() + CACHE_HEADROOM),
            pending: prompt,
            pos: 0,
            logits: None,
        }
    }

    /// Feed the next chunk of pending tokens; true once nothing is pending.
    pub(crate) fn prefill_step(&mut self) -> candle_core::Result<bool> {
        if self.pending.is_empty() {
            return Ok(true);
        }
        let n = self.pending.len().min(PREFILL_CHUNK);
        let chunk: Vec<u32> = self.pending.drain(..n).collect();
        self.logits = Some(self.model.forward(&chunk, self.pos, &mut self.cache)?);
        self.pos += n;
        Ok(self.pending.is_empty())
    }

    /// Read one more token after everything fed so far.
    pub(crate) fn feed(&mut self, token: u32) -> candle_core::Result<()> {
        self.logits = Some(self.model.forward(&[token], self.pos, &mut self.cache)?);
        self.pos += 1;
        Ok(())
    }

    /// Next-token logits after everything fed so far.
    pub(crate) fn logits(&self) -> candle_core::Result<&Tensor> {
        self.logits
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("no tokens fed yet".into()))
    }

    /// Tokens read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// A copy that shares the cache read so far and then goes its own way.
    pub(crate) fn branch(&self) -> Self {
        Self {
            model: self.model.clone(),
            cache: self.cache.clone(),
            pending: self.pending.clone(),
            pos: self.pos,
            logits: self.logits.clone(),
        }
    }
}

/// Whether a scheduled piece of work has more to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    More,
    Finished,
}

/// A generation request in progress.
pub(crate) struct Generation {
    context: Context,
    processor: LogitsProcessor,
    utf8: Utf8Stream,
    generated: u32,
    max_tokens: u32,
    stop_ids: Vec<u32>,
    /// Keeps the answer valid JSON of a schema, when one was asked for.
    constraint: Option<JsonConstraint>,
    events: UnboundedSender<GenEvent>,
}

impl Generation {
    /// Start a generation of at most `max_tokens` after `prompt`.
    pub(crate) fn new(
        weights: &Model,
        prompt: Vec<u32>,
        max_tokens: u32,
        sampling: SamplingParams,
        stop_ids: Vec<u32>,
        constraint: Option<JsonConstraint>,
        events: UnboundedSender<GenEvent>,
    ) -> Self {
        Self {
            context: Context::new(weights, prompt),
            processor: sampling.processor(),
            utf8: Utf8Stream::default(),
            generated: 0,
            max_tokens,
            stop_ids,
            constraint,
            events,
        }
    }

    /// Whoever asked has stopped listening (timeout, disconnect).
    pub(crate) fn abandoned(&self) -> bool {
        self.events.is_closed()
    }

    /// Tell the requester it failed.
    pub(crate) fn fail(&self, error: LocalError) {
        let _ = self.events.send(GenEvent::Failed(error));
    }

    /// Do one slice of work: a prompt chunk, or one new token.
    pub(crate) fn step(&mut self, tokenizer: &Tokenizer) -> candle_core::Result<Step> {
        if !self.context.prefill_step()? {
            return Ok(Step::More);
        }
        if self.generated >= self.max_tokens || self.context.position() >= MAX_CONTEXT {
            return Ok(self.finish(FinishReason::Length));
        }
        let token = self.sample()?;
        if self.stop_ids.contains(&token) {
            return Ok(self.finish(FinishReason::Stop));
        }
        self.generated += 1;
        let bytes = tokenizer.bytes(token);
        if let Some(constraint) = &mut self.constraint {
            if !constraint.advance(bytes) {
                candle_core::bail!("constrained decoding chose token {token}, which it refuses");
            }
        }
        let text = self.utf8.push(bytes);
        if !text.is_empty() {
            let _ = self.events.send(GenEvent::Delta(text));
        }
        if self.generated >= self.max_tokens {
            // No need to compute logits that nobody will sample.
            return Ok(self.finish(FinishReason::Length));
        }
        if self
            .constraint
            .as_ref()
            .is_some_and(JsonConstraint::complete)
        {
            // The JSON is whole and nothing may follow: no need to ask for an end token.
            return Ok(self.finish(FinishReason::Stop));
        }
        self.context.feed(token)?;
        Ok(Step::More)
    }

    /// The next token: sampled from the logits, masked to what keeps the JSON valid.
    fn sample(&mut self) -> candle_core::Result<u32> {
        let logits = self.context.logits()?;
        let Some(constraint) = &mut self.constraint else {
            return self.processor.sample(logits);
        };
        // Tokens that may follow the next one; `generated < max_tokens` here.
        let budget = self.max_tokens - self.generated - 1;
        let logits: Vec<f32> = logits.to_vec1()?;
        let masked = constraint.mask(&logits, budget).ok_or_else(|| {
            candle_core::Error::Msg(
                "constrained decoding has no token that keeps the JSON valid".into(),
            )
        })?;
        self.processor
            .sample(&Tensor::from_slice(masked, masked.len(), &Device::Cpu)?)
    }

    fn finish(&mut self, finish_reason: FinishReason) -> Step {
        let rest = self.utf8.finish();
        if !rest.is_empty() {
            let _ = self.events.send(GenEvent::Delta(rest));
        }
        let _ = self.events.send(GenEvent::Done {
            completion_tokens: self.generated,
            finish_reason,
        });
        Step::Finished
    }
}
