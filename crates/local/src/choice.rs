//! Constrained choice: which of a few fixed answers the model finds most likely.
//!
//! Each option is scored by the total log-probability of its tokens followed by `<|im_end|>`
//! after the prompt. Ending on `<|im_end|>` makes the score mean "answers exactly this" rather
//! than "starts with this", which would always favour `bug` over `bugs`. The prompt is read once
//! and each option continues from a branch of its KV cache.

use tokio::sync::oneshot;

use crate::generate::{Context, Step};
use crate::llama::Model;
use crate::prompt_cache::PromptCache;
use crate::LocalError;

/// The winning option.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChoiceOutcome {
    pub(crate) index: usize,
    /// The winner's share of probability among the options (softmax of the scores).
    pub(crate) probability: f64,
}

/// A constrained-choice request in progress.
pub(crate) struct ChoiceScoring {
    context: Context,
    /// Log-probabilities of the first token after the prompt.
    first: Option<Vec<f32>>,
    /// Each option's tokens, ending with the end-of-turn token.
    options: Vec<Vec<u32>>,
    scores: Vec<f64>,
    reply: Option<oneshot::Sender<Result<ChoiceOutcome, LocalError>>>,
}

impl ChoiceScoring {
    /// Score `options` (token ids, each ending with the end-of-turn token) after `prompt`.
    pub(crate) fn new(
        weights: &Model,
        prompt: Vec<u32>,
        options: Vec<Vec<u32>>,
        reply: oneshot::Sender<Result<ChoiceOutcome, LocalError>>,
    ) -> Self {
        Self {
            context: Context::new(weights, prompt),
            first: None,
            scores: Vec::with_capacity(options.len()),
            options,
            reply: Some(reply),
        }
    }

    /// Whoever asked has stopped waiting.
    pub(crate) fn abandoned(&self) -> bool {
        self.reply.as_ref().is_none_or(oneshot::Sender::is_closed)
    }

    /// Tell the requester it failed.
    pub(crate) fn fail(&mut self, error: LocalError) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Err(error));
        }
    }

    /// Do one slice of work: a prompt chunk, or one option's score.
    pub(crate) fn step(&mut self, prompts: &mut PromptCache) -> Result<Step, LocalError> {
        if !self.context.prefill_step(prompts)? {
            return Ok(Step::More);
        }
        let first = match &self.first {
            Some(first) => first,
            None => self.first.insert(log_softmax(self.context.logits()?)),
        };
        let index = self.scores.len();
        let Some(option) = self.options.get(index) else {
            return Ok(self.finish());
        };
        let mut score = option.first().map_or(0.0, |&t| lookup(first, t));
        let mut branch = self.context.branch();
        for pair in option.windows(2) {
            branch.feed(pair[0])?;
            score += lookup(&log_softmax(branch.logits()?), pair[1]);
        }
        self.scores.push(score);
        if self.scores.len() == self.options.len() {
            return Ok(self.finish());
        }
        Ok(Step::More)
    }

    fn finish(&mut self) -> Step {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Ok(pick(&self.scores)));
        }
        Step::Finished
    }
}

fn lookup(log_probs: &[f32], token: u32) -> f64 {
    log_probs
        .get(token as usize)
        .map_or(f64::NEG_INFINITY, |&p| f64::from(p))
}

fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits
        .iter()
        .map(|&l| f64::from(l - max).exp())
        .sum::<f64>()
        .ln() as f32;
    logits.iter().map(|&l| l - max - log_sum).collect()
}

/// The highest score and its softmax share; ties go to the earlier option.
pub(crate) fn pick(scores: &[f64]) -> ChoiceOutcome {
    let mut index = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[index] {
            index = i;
        }
    }
    let best = scores.get(index).copied().unwrap_or(0.0);
    let total: f64 = scores.iter().map(|&s| (s - best).exp()).sum();
    let probability = if best.is_finite() && total > 0.0 {
        1.0 / total
    } else {
        0.0
    };
    ChoiceOutcome { index, probability }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_takes_the_largest_and_its_softmax_share() {
        let outcome = pick(&[(0.2f64).ln(), (0.6f64).ln(), (0.2f64).ln()]);
        assert_eq!(outcome.index, 1);
        assert!((outcome.probability - 0.6).abs() < 1e-9);
    }

    #[test]
    fn pick_survives_very_unlikely_options() {
        let outcome = pick(&[-1000.0, -2000.0]);
        assert_eq!(outcome.index, 0);
        assert!((outcome.probability - 1.0).abs() < 1e-9);
        assert_eq!(pick(&[-3.0, -3.0]).index, 0);
    }
}
