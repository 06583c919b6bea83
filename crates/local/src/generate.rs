//! One request's generation: prompt prefill, then sampling token by token, streamed as UTF-8.

use shopfloor_providers::FinishReason;
use tokio::sync::mpsc::UnboundedSender;

use crate::json::JsonConstraint;
use crate::llama::{Cache, Model};
use crate::prompt_cache::PromptCache;
use crate::sample::{Sampler, SamplingParams};
use crate::tokenizer::{Tokenizer, Utf8Stream};
use crate::LocalError;

/// Longest context the model runs with (the length of its rotary tables).
pub(crate) const MAX_CONTEXT: usize = crate::llama::MAX_SEQ_LEN;

/// Prompt tokens fed per scheduling step: long enough for efficient matrix products, short
/// enough that a long prompt does not stall other requests. 64 read a 180-token prompt 13-21%
/// faster than 128 did; 256 and 32 were slower (`local_bench`, interleaved).
const PREFILL_CHUNK: usize = 64;

/// Positions a new context has room for beyond its prompt before its cache grows.
const CACHE_HEADROOM: usize = 256;

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
    logits: Option<Vec<f32>>,
    /// The whole prompt until it is read, to be kept in the [`PromptCache`] then.
    prompt: Option<Vec<u32>>,
}

impl Context {
    /// A fresh context that will first read `prompt`.
    pub(crate) fn new(weights: &Model, prompt: Vec<u32>) -> Self {
        Self {
            model: weights.clone(),
            cache: weights.new_cache(prompt.len() + CACHE_HEADROOM),
            prompt: Some(prompt.clone()),
            pending: prompt,
            pos: 0,
            logits: None,
        }
    }

    /// Feed the next chunk of pending tokens; true once nothing is pending. The first step
    /// starts from the longest prefix `prompts` holds; the last one keeps the prompt there.
    pub(crate) fn prefill_step(&mut self, prompts: &mut PromptCache) -> Result<bool, LocalError> {
        if self.pending.is_empty() {
            return Ok(true);
        }
        if self.pos == 0 {
            let expected = self.pending.len() + CACHE_HEADROOM;
            if let Some((shared, cache)) = prompts.lookup(&self.model, &self.pending, expected) {
                self.cache = cache;
                self.pending.drain(..shared);
                self.pos = shared;
            }
        }
        let n = chunk_len(self.pending.len());
        let chunk: Vec<u32> = self.pending.drain(..n).collect();
        self.logits = Some(self.model.forward(&chunk, self.pos, &mut self.cache)?);
        self.pos += n;
        if !self.pending.is_empty() {
            return Ok(false);
        }
        if let Some(prompt) = self.prompt.take() {
            prompts.remember(&prompt, &self.cache);
        }
        Ok(true)
    }

    /// Read one more token after everything fed so far (the inference thread reads them
    /// together, [`Context::feed_together`]).
    #[cfg(test)]
    pub(crate) fn feed(&mut self, token: u32) -> Result<(), LocalError> {
        self.logits = Some(self.model.forward(&[token], self.pos, &mut self.cache)?);
        self.pos += 1;
        Ok(())
    }

    /// One decoding step for each context, `(context, token)`, in one pass over the weights
    /// ([`Model::forward_batch`]): each ends as [`Context::feed`] would leave it, to the bit.
    pub(crate) fn feed_together(steps: &mut [(&mut Context, u32)]) -> Result<(), LocalError> {
        let Some((first, _)) = steps.first() else {
            return Ok(());
        };
        let model = first.model.clone();
        let mut inputs: Vec<(u32, &mut Cache)> = steps
            .iter_mut()
            .map(|(context, token)| (*token, &mut context.cache))
            .collect();
        let logits = model.forward_batch(&mut inputs)?;
        let vocab = logits.len() / steps.len();
        for ((context, _), row) in steps.iter_mut().zip(logits.chunks_exact(vocab)) {
            context.logits = Some(row.to_vec());
            context.pos += 1;
        }
        Ok(())
    }

    /// Next-token logits after everything fed so far.
    pub(crate) fn logits(&self) -> Result<&[f32], LocalError> {
        self.logits
            .as_deref()
            .ok_or_else(|| LocalError::Inference("no tokens fed yet".to_owned()))
    }

    /// Tokens read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The logits after each node of a tree of continuations read after everything fed so
    /// far, which stays as it is ([`Model::forward_tree`]): `[node][vocabulary]`.
    pub(crate) fn read_tree(
        &mut self,
        tokens: &[u32],
        paths: &[Vec<usize>],
    ) -> Result<Vec<f32>, LocalError> {
        self.model
            .forward_tree(tokens, paths, self.pos, &mut self.cache)
    }
}

/// How many of `pending` prompt tokens the next chunk reads: at most [`PREFILL_CHUNK`], and
/// never a lone last token (it would be read as a decoding step is, with other arithmetic, and
/// the same prompt read from a kept prefix would differ in the last bit; see
/// [`crate::prompt_cache`]).
fn chunk_len(pending: usize) -> usize {
    match pending {
        n if n <= PREFILL_CHUNK => n,
        n if n == PREFILL_CHUNK + 1 => PREFILL_CHUNK - 1,
        _ => PREFILL_CHUNK,
    }
}

/// Whether a scheduled piece of work has more to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    More,
    /// More, starting with a decoding step for [`Generation::next_token`], which the
    /// inference thread runs together with the other requests' ([`Context::feed_together`]).
    Decode,
    Finished,
}

/// A generation request in progress.
pub(crate) struct Generation {
    context: Context,
    sampler: Sampler,
    utf8: Utf8Stream,
    generated: u32,
    max_tokens: u32,
    stop_ids: Vec<u32>,
    /// Keeps the answer valid JSON of a schema, when one was asked for.
    constraint: Option<JsonConstraint>,
    events: UnboundedSender<GenEvent>,
    /// The token chosen last, until the decoding step that reads it.
    next: Option<u32>,
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
            sampler: sampling.sampler(),
            utf8: Utf8Stream::default(),
            generated: 0,
            max_tokens,
            stop_ids,
            constraint,
            events,
            next: None,
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

    /// Do one slice of work: a prompt chunk, or one new token (whose decoding step the caller
    /// runs when this returns [`Step::Decode`]).
    pub(crate) fn step(
        &mut self,
        tokenizer: &Tokenizer,
        prompts: &mut PromptCache,
    ) -> Result<Step, LocalError> {
        if !self.context.prefill_step(prompts)? {
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
                return Err(LocalError::Inference(format!(
                    "constrained decoding chose token {token}, which it refuses"
                )));
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
        self.next = Some(token);
        Ok(Step::Decode)
    }

    /// The context and the token its decoding step reads, after [`Step::Decode`].
    pub(crate) fn next_token(&mut self) -> Option<(&mut Context, u32)> {
        let token = self.next.take()?;
        Some((&mut self.context, token))
    }

    /// The next token: sampled from the logits, masked to what keeps the JSON valid.
    fn sample(&mut self) -> Result<u32, LocalError> {
        let logits = self.context.logits()?;
        let Some(constraint) = &mut self.constraint else {
            return self.sampler.sample(logits);
        };
        // Tokens that may follow the next one; `generated < max_tokens` here.
        let budget = self.max_tokens - self.generated - 1;
        let masked = constraint.mask(logits, budget).ok_or_else(|| {
            LocalError::Inference(
                "constrained decoding has no token that keeps the JSON valid".to_owned(),
            )
        })?;
        self.sampler.sample(masked)
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
