//! Constrained choice: which of a few fixed answers the model finds most likely.
//!
//! Each option is scored by the total log-probability of its tokens followed by `<|im_end|>`
//! after the prompt. Ending on `<|im_end|>` makes the score mean "answers exactly this" rather
//! than "starts with this", which would always favour `bug` over `bugs`.
//!
//! The prompt is read once. The options' tokens (all but each one's last, which is only scored)
//! form a trie, and the trie is read in one tree pass after the prompt
//! ([`Model::forward_tree`]): each node attends to the prompt and its own ancestors, so a prefix
//! the options share is read once, and every node's logits come out of the same pass rather than
//! a pass per option and token. A large trie is read a group of first-token subtrees at a time,
//! each group one slice of the inference thread's work.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::oneshot;

use crate::generate::{Context, Step};
use crate::llama::Model;
use crate::prompt_cache::PromptCache;
use crate::LocalError;

/// Trie nodes read in one pass, unless a single first token's subtree has more.
const NODES_PER_PASS: usize = 128;

/// The winning option.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChoiceOutcome {
    pub(crate) index: usize,
    /// The winner's share of probability among the options (softmax of the scores).
    pub(crate) probability: f64,
}

/// The options' tokens as a trie of the tokens that are read (every token but each option's
/// last), and what is scored after each node.
struct Trie {
    tokens: Vec<u32>,
    /// Each node's path from its root, itself last.
    paths: Vec<Vec<usize>>,
    /// Each option's nodes, in order: option `o`'s token `i + 1` is scored after node
    /// `nodes[o][i]`, and its first token after the prompt.
    nodes: Vec<Vec<usize>>,
    /// Groups of nodes read together: whole subtrees of first tokens, parents before children.
    passes: Vec<Vec<usize>>,
}

impl Trie {
    fn new(options: &[Vec<u32>]) -> Self {
        let mut trie = Trie {
            tokens: Vec::new(),
            paths: Vec::new(),
            nodes: Vec::with_capacity(options.len()),
            passes: Vec::new(),
        };
        let mut children: HashMap<(Option<usize>, u32), usize> = HashMap::new();
        for option in options {
            let mut parent = None;
            let mut nodes = Vec::with_capacity(option.len().saturating_sub(1));
            for &token in option.iter().take(option.len().saturating_sub(1)) {
                let node = *children.entry((parent, token)).or_insert_with(|| {
                    let node = trie.tokens.len();
                    let mut path = parent.map_or_else(Vec::new, |p| trie.paths[p].clone());
                    path.push(node);
                    trie.tokens.push(token);
                    trie.paths.push(path);
                    node
                });
                nodes.push(node);
                parent = Some(node);
            }
            trie.nodes.push(nodes);
        }
        // Each root's nodes (a node's root is the first node on its path) in creation order,
        // which puts parents before children; roots in the order they were made.
        let mut subtrees: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (node, path) in trie.paths.iter().enumerate() {
            subtrees.entry(path[0]).or_default().push(node);
        }
        for subtree in subtrees.into_values() {
            match trie.passes.last_mut() {
                Some(pass) if pass.len() + subtree.len() <= NODES_PER_PASS => pass.extend(subtree),
                _ => trie.passes.push(subtree),
            }
        }
        trie
    }
}

/// A constrained-choice request in progress.
pub(crate) struct ChoiceScoring {
    context: Context,
    /// Each option's tokens, ending with the end-of-turn token.
    options: Vec<Vec<u32>>,
    trie: Trie,
    /// Log-probabilities of the first token after the prompt.
    first: Option<LogSoftmax>,
    /// Per trie node, the log-probabilities of the tokens scored after it, once read.
    after: Vec<Vec<(u32, f64)>>,
    /// Trie passes read so far.
    passes_read: usize,
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
        let trie = Trie::new(&options);
        Self {
            context: Context::new(weights, prompt),
            first: None,
            after: vec![Vec::new(); trie.tokens.len()],
            trie,
            options,
            passes_read: 0,
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

    /// Do one slice of work: a prompt chunk, or one pass over (part of) the trie.
    pub(crate) fn step(&mut self, prompts: &mut PromptCache) -> Result<Step, LocalError> {
        if !self.context.prefill_step(prompts)? {
            return Ok(Step::More);
        }
        if self.first.is_none() {
            self.first = Some(LogSoftmax::of(self.context.logits()?));
        }
        if let Some(pass) = self.trie.passes.get(self.passes_read) {
            self.read(pass.clone())?;
            self.passes_read += 1;
            if self.passes_read < self.trie.passes.len() {
                return Ok(Step::More);
            }
        }
        Ok(self.finish())
    }

    /// Read the trie nodes `pass` in one tree pass and keep what is scored after each.
    fn read(&mut self, pass: Vec<usize>) -> Result<(), LocalError> {
        let local: HashMap<usize, usize> = pass.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let tokens: Vec<u32> = pass.iter().map(|&n| self.trie.tokens[n]).collect();
        let paths: Vec<Vec<usize>> = pass
            .iter()
            .map(|&n| self.trie.paths[n].iter().map(|p| local[p]).collect())
            .collect();
        let logits = self.context.read_tree(&tokens, &paths)?;
        let vocab = logits.len() / pass.len();
        for (option, nodes) in self.options.iter().zip(&self.trie.nodes) {
            for (i, node) in nodes.iter().enumerate() {
                let Some(&at) = local.get(node) else { continue };
                let next = option[i + 1];
                let scored = &mut self.after[*node];
                if scored.iter().all(|(t, _)| *t != next) {
                    let row = &logits[at * vocab..(at + 1) * vocab];
                    scored.push((next, LogSoftmax::of(row).lookup(row, next)));
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Step {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Ok(pick(&self.scores())));
        }
        Step::Finished
    }

    /// Each option's total log-probability, once the prompt and every trie pass are read.
    fn scores(&self) -> Vec<f64> {
        let (Some(first), Ok(logits)) = (&self.first, self.context.logits()) else {
            return vec![f64::NEG_INFINITY; self.options.len()];
        };
        self.options
            .iter()
            .zip(&self.trie.nodes)
            .map(|(option, nodes)| {
                let start = option.first().map_or(0.0, |&t| first.lookup(logits, t));
                nodes
                    .iter()
                    .zip(&option[1..])
                    .fold(start, |score, (node, next)| {
                        let after = self.after[*node].iter().find(|(t, _)| t == next);
                        score + after.map_or(f64::NEG_INFINITY, |(_, lp)| *lp)
                    })
            })
            .collect()
    }
}

/// What turns a row of logits into log-probabilities: its maximum and the log of its sum of
/// exponentials (taken in `f64`).
struct LogSoftmax {
    max: f32,
    log_sum: f32,
}

impl LogSoftmax {
    fn of(logits: &[f32]) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = logits
            .iter()
            .map(|&l| f64::from(l - max).exp())
            .sum::<f64>()
            .ln() as f32;
        Self { max, log_sum }
    }

    /// The log-probability of `token` in `logits` (the row this was taken of).
    fn lookup(&self, logits: &[f32], token: u32) -> f64 {
        logits.get(token as usize).map_or(f64::NEG_INFINITY, |&l| {
            f64::from(l - self.max - self.log_sum)
        })
    }
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

    /// Shared prefixes are one node; each option's last token is scored, never read; whole
    /// first-token subtrees stay in one pass, parents before children.
    #[test]
    fn options_share_their_prefixes_in_the_trie() {
        let end = 2;
        let options = [
            vec![10, 11, end],
            vec![10, 12, end],
            vec![10, end],
            vec![20, end],
            vec![end],
        ];
        let trie = Trie::new(&options);
        assert_eq!(trie.tokens, [10, 11, 12, 20]);
        assert_eq!(trie.paths, [vec![0], vec![0, 1], vec![0, 2], vec![3]]);
        assert_eq!(
            trie.nodes,
            [vec![0, 1], vec![0, 2], vec![0], vec![3], vec![]]
        );
        assert_eq!(trie.passes, [vec![0, 1, 2, 3]]);

        // 100 options of three read tokens under each of two first tokens: 201 nodes a root,
        // more than a pass holds, so each root is a pass of its own.
        let many: Vec<Vec<u32>> = (0..200u32)
            .map(|i| vec![1 + i / 100, 100 + i, 1000 + i, end])
            .collect();
        let trie = Trie::new(&many);
        assert_eq!(trie.tokens.len(), 2 + 200 + 200);
        assert_eq!(trie.passes.len(), 2);
        for pass in &trie.passes {
            assert_eq!(pass.len(), 201);
            for (i, node) in pass.iter().enumerate() {
                let path = &trie.paths[*node];
                assert!(path.iter().all(|p| pass[..=i].contains(p)));
            }
        }
    }

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
