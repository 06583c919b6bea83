//! Speed of constrained choice: the time to pick among 4 labels (the example's) and among 40,
//! after a prompt the inference thread has just read (so the prompt cache leaves two tokens to
//! read and the figure is the options' scoring). `cargo bench -p shopfloor-local --bench
//! choice_bench` (threads: `SHOPFLOOR_THREADS`, default 2).

use std::time::Instant;

use shopfloor_local::LocalProvider;
use shopfloor_providers::{ChatRequest, Message, Provider, Role};

const SYSTEM: &str = "You are a support ticket router. Read the ticket and answer with exactly \
                      one word naming the queue.";
const TICKET: &str = "Ticket subject: Charged twice this month\n\nOur card was charged $480 \
                      twice on March 3 for the same Team plan invoice (INV-20431). Please refund \
                      the duplicate charge.\n\nWhich queue should handle this ticket?";

/// Forty queue names: some share first tokens, as real label sets do.
const FORTY: [&str; 40] = [
    "billing",
    "bug",
    "account",
    "other",
    "refund",
    "refund request",
    "invoice",
    "invoice error",
    "login",
    "login failure",
    "password reset",
    "two-factor",
    "api",
    "api limits",
    "api keys",
    "performance",
    "outage",
    "data export",
    "data import",
    "integrations",
    "webhooks",
    "permissions",
    "team management",
    "plan change",
    "cancellation",
    "pricing question",
    "feature request",
    "feedback",
    "security",
    "privacy",
    "legal",
    "partnership",
    "sales",
    "onboarding",
    "training",
    "documentation",
    "mobile app",
    "desktop app",
    "email delivery",
    "spam",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "2");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let provider = LocalProvider::shared("smollm2")?;
    println!(
        "shopfloor-local constrained choice, {} threads",
        provider.threads()
    );
    runtime.block_on(async {
        for labels in [&FORTY[..4], &FORTY[..]] {
            let request = request(labels);
            // The first call reads the prompt; the others find it kept.
            let first = provider.complete(&request).await?;
            let mut times = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                let answer = provider.complete(&request).await?;
                times.push(start.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(answer.text, first.text, "the same answer every time");
            }
            times.sort_by(f64::total_cmp);
            println!(
                "choice among {} labels: median {:.1} ms (best {:.1}), answer {:?} p={:.3}",
                labels.len(),
                times[times.len() / 2],
                times[0],
                first.text,
                first.choice_probability.unwrap_or(0.0)
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

fn request(labels: &[&str]) -> ChatRequest {
    ChatRequest {
        model: "smollm2".to_owned(),
        messages: vec![
            Message::new(Role::System, SYSTEM),
            Message::new(Role::User, TICKET),
        ],
        temperature: Some(0.0),
        choices: Some(labels.iter().map(|l| (*l).to_owned()).collect()),
        ..ChatRequest::default()
    }
}
