//! The batch progress bar, drawn on stderr so that stdout stays clean for results.

use indicatif::{ProgressBar, ProgressStyle};
use shopfloor_engine::store_types::{RunRecord, RunStatus};
use shopfloor_engine::BatchObserver;

/// Draws a batch's progress; rejected lines are printed above the bar.
pub struct BatchProgress {
    bar: ProgressBar,
    workflow: String,
    input: String,
}

impl BatchProgress {
    pub fn new(workflow: &str, input: &str) -> Self {
        let bar = ProgressBar::hidden();
        Self {
            bar,
            workflow: workflow.to_string(),
            input: input.to_string(),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl BatchObserver for BatchProgress {
    fn started(&self, batch_id: &str, resumed: bool, to_run: u64, already_done: u64) {
        if resumed {
            eprintln!("resuming batch {batch_id}: {already_done} case(s) already recorded, {to_run} to run");
        } else {
            eprintln!("batch {batch_id}: {to_run} case(s)");
            eprintln!(
                "  if interrupted, finish it with: shopfloor run {} --input {} --resume {batch_id}",
                self.workflow, self.input
            );
        }
        self.bar.set_length(to_run);
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} [{elapsed_precise}, eta {eta}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        self.bar.set_style(style);
    }

    fn rejected(&self, line: u64, message: &str) {
        let text = format!("warning: {}:{line}: skipped: {message}", self.input);
        // A hidden bar (stderr is not a terminal) swallows println.
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    fn finished(&self, run: &RunRecord) {
        if run.status != RunStatus::Ok {
            let case = run
                .case_index
                .map(|c| format!("line {c}"))
                .unwrap_or_default();
            let reason = run.error.as_deref().unwrap_or("");
            self.bar.set_message(format!(
                "last problem: {case} {} {}",
                run.status.as_str(),
                shopfloor_core::output::shorten(reason, 60)
            ));
        }
        self.bar.inc(1);
    }
}
