//! The inference thread: one per loaded model, interleaving requests fairly.
//!
//! Every request gets its own KV cache; the thread runs them round-robin one slice at a time
//! (a prompt chunk, one new token, or one choice option), so a long answer never starves a short
//! one and concurrent requests compute exactly what they would alone. A request whose caller has
//! gone (timeout, disconnect) is dropped before its next slice, which frees its cache.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use crate::choice::ChoiceScoring;
use crate::generate::{Generation, Step};
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
    loop {
        if queue.is_empty() {
            match inbox.recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => return,
            }
        }
        queue.extend(inbox.try_iter());
        let Some(mut job) = queue.pop_front() else {
            continue;
        };
        if !job.abandoned() {
            match catch_unwind(AssertUnwindSafe(|| job.step(tokenizer, &mut prompts))) {
                Ok(Ok(Step::More)) => {
                    queue.push_back(job);
                    continue;
                }
                Ok(Ok(Step::Finished)) => {}
                Ok(Err(e)) => job.fail(e),
                Err(_) => job.fail(LocalError::Inference("the model panicked".to_owned())),
            }
        }
        // Frees the job's KV cache.
        drop(job);
        active.fetch_sub(1, Ordering::SeqCst);
    }
}
