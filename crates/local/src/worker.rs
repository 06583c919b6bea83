//! The inference thread: one per loaded model, interleaving requests fairly.
//!
//! Every request gets its own KV cache; the thread runs them in rounds, one slice of each per
//! round (a prompt chunk, choosing one new token, or a pass over a choice's labels), so a long
//! answer never starves a short one. The requests that chose a token in a round then read it in
//! one decoding pass together (`Context::feed_together`): the weights, which a decoding step
//! spends its time reading, are read once for all of them, and each still computes exactly what
//! it would alone. A request whose caller has gone (timeout, disconnect) is dropped before its
//! next slice, which frees its cache.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use crate::choice::ChoiceScoring;
use crate::generate::{Context, Generation, Step};
use crate::prompt_cache::PromptCache;
use crate::tokenizer::Tokenizer;
use crate::LocalError;

/// Work handed to the inference thread.
pub(crate) enum Job {
    Generate(Box<Generation>),
    Choose(Box<ChoiceScoring>),
}

impl Job {
    fn abandoned(&self) -> bool {
        match self {
            Job::Generate(g) => g.abandoned(),
            Job::Choose(c) => c.abandoned(),
        }
    }

    fn step(
        &mut self,
        tokenizer: &Tokenizer,
        prompts: &mut PromptCache,
    ) -> Result<Step, LocalError> {
        match self {
            Job::Generate(g) => g.step(tokenizer, prompts),
            Job::Choose(c) => c.step(prompts),
        }
    }

    fn fail(&mut self, error: LocalError) {
        match self {
            Job::Generate(g) => g.fail(error),
            Job::Choose(c) => c.fail(error),
        }
    }
}

/// Handle to a running inference thread.
pub(crate) struct Worker {
    jobs: mpsc::Sender<Job>,
    /// Jobs queued or running; a job leaves when it finishes, fails or is abandoned.
    active: Arc<AtomicUsize>,
}

impl Worker {
    /// Start the inference thread; `threads` bounds the compute threads it uses.
    pub(crate) fn spawn(
        tokenizer: std::sync::Arc<Tokenizer>,
        threads: usize,
    ) -> Result<Self, LocalError> {
        let (jobs, inbox) = mpsc::channel();
        let active = Arc::new(AtomicUsize::new(0));
        let counter = active.clone();
        // The matrix products and attention run on the current rayon pool; a pool of our own
        // keeps them to `threads` whatever else in the process uses rayon's global pool.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("shopfloor-local-{i}"))
            .build()
            .map_err(|e| LocalError::Inference(format!("cannot start threads: {e}")))?;
        std::thread::Builder::new()
            .name("shopfloor-local".to_owned())
            .spawn(move || pool.install(move || run(&tokenizer, &inbox, &counter)))
            .map_err(|e| {
                LocalError::Inference(format!("cannot start the inference thread: {e}"))
            })?;
        Ok(Self { jobs, active })
    }

    /// Queue a job behind the ones already running.
    pub(crate) fn submit(&self, job: Job) -> Result<(), LocalError> {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.jobs.send(job).map_err(|_| {
            self.active.fetch_sub(1, Ordering::SeqCst);
            LocalError::WorkerGone
        })
    }

    /// Requests queued or running right now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

fn run(tokenizer: &Tokenizer, inbox: &mpsc::Receiver<Job>, active: &AtomicUsize) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    // Only this thread reads prompts, so only it keeps their caches.
    let mut prompts = PromptCache::default();
    let done = |job: Job| {
        // Frees the job's KV cache.
        drop(job);
        active.fetch_sub(1, Ordering::SeqCst);
    };
    loop {
        if queue.is_empty() {
            match inbox.recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => return,
            }
        }
        queue.extend(inbox.try_iter());
        // One round: a slice of every job, then one decoding pass for those that asked for it.
        let mut next = VecDeque::with_capacity(queue.len());
        let mut decoding = Vec::new();
        while let Some(mut job) = queue.pop_front() {
            if job.abandoned() {
                done(job);
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| job.step(tokenizer, &mut prompts))) {
                Ok(Ok(Step::More)) => next.push_back(job),
                Ok(Ok(Step::Decode)) => decoding.push(job),
                Ok(Ok(Step::Finished)) => done(job),
                Ok(Err(e)) => {
                    job.fail(e);
                    done(job);
                }
                Err(_) => {
                    job.fail(panicked());
                    done(job);
                }
            }
        }
        match catch_unwind(AssertUnwindSafe(|| decode_together(&mut decoding))) {
            Ok(Ok(())) => next.extend(decoding),
            Ok(Err(e)) => {
                let message = e.to_string();
                for mut job in decoding {
                    job.fail(LocalError::Inference(message.clone()));
                    done(job);
                }
            }
            Err(_) => {
                for mut job in decoding {
                    job.fail(panicked());
                    done(job);
                }
            }
        }
        queue = next;
    }
}

fn panicked() -> LocalError {
    LocalError::Inference("the model panicked".to_owned())
}

/// The decoding steps the jobs asked for, in one pass.
fn decode_together(jobs: &mut [Job]) -> Result<(), LocalError> {
    let mut steps: Vec<(&mut Context, u32)> = jobs
        .iter_mut()
        .filter_map(|job| match job {
            Job::Generate(g) => g.next_token(),
            Job::Choose(_) => None,
        })
        .collect();
    Context::feed_together(&mut steps)
}
