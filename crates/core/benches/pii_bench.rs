//! Throughput of PII detection and redaction over a realistic mixed megabyte of text.
//!
//! `cargo bench -p shopfloor-core --bench pii_bench` prints MB/s for `detect` and for `redact`
//! (which detects, replaces and records) with every kind enabled.

use std::hint::black_box;
use std::time::Instant;

use shopfloor_core::pii::{detect, redact, PiiKind, Redactions};

/// Support-ticket-like lines: mostly prose, numbers that are not PII, and some PII.
const LINES: &[&str] = &[
    "Hi team, customer reports that order #A-10293 (ORD-2024-000123) arrived damaged on 2024-03-15.",
    "Please refund $1,234.56 to the card ending 1111; full number 4111 1111 1111 1111 was given on the phone.",
    "Reach her at jane.doe@example.com or +44 20 7946 0958, office (555) 123-4567.",
    "Tracking 1Z999AA10123456784 shows delivery attempted; driver app v1.2.3 on Windows 10.0.19045.",
    "Bank transfer to DE89 3704 0044 0532 0130 00 failed, amount 1.234,56 € will be retried tomorrow.",
    "The request id 550e8400-e29b-41d4-a716-446655440000 failed at commit da39a3ee5e6b4b0d3255bfef95601890afd80709.",
    "Login from 192.168.1.10 and 2001:db8::1 flagged; user pasted key sk-proj-4f9Xk2LmQ8rT1vWz7YbN3cD5eF6gH0jK by mistake.",
    "Thanks for your patience. We escalated the ticket to tier two and will update you within 48 hours.",
    "The customer asked whether the warranty covers accidental damage; policy section 4.2 says it does not.",
    "SSN on the form was 123-45-6789, which should never have been collected; please delete the attachment.",
    "Meeting moved to 15/03/2024 at 10:30, room 0301; agenda: Q1 numbers, churn, the new onboarding flow.",
];

fn corpus(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 256);
    for line in LINES.iter().cycle() {
        if text.len() >= bytes {
            break;
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn measure(name: &str, unit: &str, text: &str, mut work: impl FnMut(&str) -> usize) {
    // One warm-up pass compiles the lazily built regexes.
    black_box(work(text));
    let rounds = 10;
    let started = Instant::now();
    let mut found = 0;
    for _ in 0..rounds {
        found = black_box(work(black_box(text)));
    }
    let seconds = started.elapsed().as_secs_f64();
    let megabytes = (text.len() * rounds) as f64 / 1_000_000.0;
    println!(
        "{name}: {:.1} MB/s ({found} {unit} per {:.2} MB pass)",
        megabytes / seconds,
        text.len() as f64 / 1_000_000.0
    );
}

fn main() {
    let text = corpus(1_000_000);
    measure("detect", "findings", &text, |t| {
        detect(t, &PiiKind::ALL).len()
    });
    measure("detect+redact", "distinct values", &text, |t| {
        let mut mapping = Redactions::new();
        let redacted = redact(t, &PiiKind::ALL, &mut mapping);
        black_box(redacted.len());
        mapping.len()
    });
}
