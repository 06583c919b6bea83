//! Throughput of PII detection and redaction over 10 MB of generated support tickets.
//!
//! `cargo bench -p shopfloor-core --bench pii_bench` prints MB/s, on one thread, for `detect`
//! and for `redact` (which detects, replaces and records) with every kind enabled, then for
//! `detect` with one kind at a time, to show where the time goes.
//!
//! The corpus is deterministic: tickets built from templates with a seeded generator, so every
//! run measures the same text. Most of it is prose and numbers that are not personal (order
//! numbers, dates, amounts, versions, tracking numbers, request ids, hashes, paths); roughly one
//! ticket in two carries some PII, each value fresh, as real tickets would.

use std::hint::black_box;
use std::time::Instant;

use shopfloor_core::pii::{detect, redact, PiiKind, Redactions};

const CORPUS_BYTES: usize = 10_000_000;
const ROUNDS: usize = 3;

/// A small seeded generator (splitmix64): the bench needs no randomness crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

const FIRST: &[&str] = &[
    "Jane", "Omar", "Li", "Sofia", "Mateo", "Amara", "Lukas", "Priya", "Noah", "Yuki", "Chloé",
];
const LAST: &[&str] = &[
    "Doe", "Haddad", "Wei", "Rossi", "García", "Okafor", "Schmidt", "Nair", "Smith", "Tanaka",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.co.uk",
    "acme-corp.de",
    "gmail.com",
    "outlook.fr",
];
const PROSE: &[&str] = &[
    "Thanks for your patience while we looked into this.",
    "We escalated the ticket to tier two and will update you within 48 hours.",
    "The customer asked whether the warranty covers accidental damage.",
    "I have tried restarting the router twice and the problem is still there.",
    "Could you please confirm the delivery address before we ship the replacement?",
    "Our records show that the subscription renews automatically every month.",
    "The agent closed the previous ticket without a resolution, which is frustrating.",
    "Please note that refunds take five to seven business days to appear.",
    "She would like to upgrade to the business plan if the discount still applies.",
    "Nothing in the logs explains the timeout, so we are asking engineering.",
];
const SUBJECTS: &[&str] = &[
    "Damaged parcel",
    "Refund not received",
    "Cannot log in",
    "Invoice question",
    "App crashes on start",
    "Change of address",
];

fn name(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(FIRST), rng.pick(LAST))
}

fn email(rng: &mut Rng) -> String {
    let user = rng.pick(FIRST).to_lowercase().replace('é', "e");
    let last = rng.pick(LAST).to_lowercase().replace('í', "i");
    format!("{user}.{last}{}@{}", rng.below(100), rng.pick(DOMAINS))
}

fn date(rng: &mut Rng) -> String {
    let (y, m, d) = (2020 + rng.below(6), 1 + rng.below(12), 1 + rng.below(28));
    match rng.below(3) {
        0 => format!("{y}-{m:02}-{d:02}"),
        1 => format!("{d:02}/{m:02}/{y}"),
        _ => format!("{d:02}.{m:02}.{y}"),
    }
}

fn order(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!("#A-{}", rng.digits(5)),
        1 => format!("ORD-2024-{}", rng.digits(6)),
        2 => format!("Order 00{}", rng.digits(6)),
        _ => format!("order number {}", rng.digits(8)),
    }
}

fn amount(rng: &mut Rng) -> String {
    let (whole, cents) = (rng.below(5000), rng.below(100));
    match rng.below(3) {
        0 => format!("${},{:03}.{cents:02}", whole / 1000 + 1, whole % 1000),
        1 => format!("{whole},{cents:02} €"),
        _ => format!("EUR {whole}.{cents:02}"),
    }
}

fn version(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("v{}.{}.{}", rng.below(5), rng.below(20), rng.below(50)),
        1 => format!("10.0.{}.{}", 19000 + rng.below(999), rng.below(9999)),
        _ => format!("{}.{}.{}", 1 + rng.below(9), rng.below(30), rng.below(300)),
    }
}

fn tracking(rng: &mut Rng) -> String {
    match rng.below(2) {
        0 => format!("1Z{}AA{}", rng.digits(3), rng.digits(11)),
        _ => format!(
            "9400 {} {} {} {} {}",
            rng.digits(4),
            rng.digits(4),
            rng.digits(4),
            rng.digits(4),
            rng.digits(2)
        ),
    }
}

/// The digit that makes `body` pass the Luhn check.
fn luhn_digit(body: &str) -> u32 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// `value` as printed in groups of four one time in two, else as one run.
fn maybe_grouped(rng: &mut Rng, value: String) -> String {
    if rng.below(2) == 0 {
        let groups: Vec<&str> = value
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        groups.join(" ")
    } else {
        value
    }
}

fn card(rng: &mut Rng) -> String {
    let body = format!("4{}", rng.digits(14));
    let number = format!("{body}{}", luhn_digit(&body));
    maybe_grouped(rng, number)
}

fn iban(rng: &mut Rng) -> String {
    let bban = rng.digits(18);
    let numeric = format!("{bban}131400"); // "DE00" moved to the end, D=13, E=14.
    let remainder = numeric
        .bytes()
        .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
    let compact = format!("DE{:02}{bban}", 98 - remainder);
    maybe_grouped(rng, compact)
}

fn phone(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => format!("+44 20 {} {}", rng.digits(4), rng.digits(4)),
        1 => format!(
            "({}) {}-{}",
            200 + rng.below(700),
            rng.digits(3),
            rng.digits(4)
        ),
        2 => format!("030 {}", rng.digits(7)),
        3 => format!("0049 30 {}", rng.digits(7)),
        _ => format!(
            "+1 {}-{}-{}",
            200 + rng.below(700),
            rng.digits(3),
            rng.digits(4)
        ),
    }
}

fn secret(rng: &mut Rng) -> String {
    const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    match rng.below(3) {
        0 => format!("sk-proj-{}", rng.chars(BASE62, 32)),
        1 => format!("AKIA{}", rng.chars(UPPER, 16)),
        _ => format!("ghp_{}", rng.chars(BASE62, 36)),
    }
}

/// One sentence: mostly prose and business numbers, sometimes a personal value.
fn sentence(rng: &mut Rng) -> String {
    match rng.below(40) {
        0..=13 => rng.pick(PROSE).to_string(),
        14..=15 => format!("My {} placed on {} has not arrived.", order(rng), date(rng)),
        16..=17 => format!(
            "Tracking {} shows no update since {}.",
            tracking(rng),
            date(rng)
        ),
        18..=19 => format!("I was charged {} twice on {}.", amount(rng), date(rng)),
        20..=21 => format!(
            "The app {} crashes on Windows {}.",
            version(rng),
            version(rng)
        ),
        22 => format!(
            "Request {:08x}-{:04x}-4{:03x}-a{:03x}-{:012x} failed at 10:{:02}:{:02} with status 502.",
            rng.next() as u32,
            rng.below(0xffff),
            rng.below(0xfff),
            rng.below(0xfff),
            rng.next() & 0xffff_ffff_ffff,
            rng.below(60),
            rng.below(60)
        ),
        23 => format!(
            "Fixed in commit {:016x}{:016x}{:08x}, see std::collections::HashMap docs.",
            rng.next(),
            rng.next(),
            rng.next() as u32
        ),
        24 => format!(
            "Invoice INV-2024-{} for {} is overdue, we ordered {} units of SKU {}-{}.",
            rng.digits(6),
            amount(rng),
            1 + rng.below(500),
            rng.chars(b"ABCDEFGHJKLMNPQRSTUVWXYZ", 3),
            rng.digits(5)
        ),
        25 => format!(
            "See https://help.example.com/articles/{}-reset-password and section {}.{}.",
            rng.digits(6),
            1 + rng.below(9),
            1 + rng.below(9)
        ),
        26 => format!("Meeting moved to {} at 10:30, room 0{}.", date(rng), rng.digits(3)),
        27 => format!("You can reach me at {}.", email(rng)),
        28 => format!("Please call me back on {}.", phone(rng)),
        29 => format!("The card I used was {}.", card(rng)),
        30 => format!("Please refund to {}.", iban(rng)),
        31 => format!("Login from {}.{}.{}.{} was flagged.", 10 + rng.below(200), rng.below(256), rng.below(256), 1 + rng.below(254)),
        32 => format!("Sorry, I pasted my key {} by mistake.", secret(rng)),
        33 => format!(
            "SSN on the form was {}-{}-{}, please delete it.",
            100 + rng.below(500),
            10 + rng.below(89),
            1000 + rng.below(8999)
        ),
        _ => format!(
            "{} {}",
            rng.pick(PROSE),
            rng.pick(PROSE)
        ),
    }
}

fn ticket(rng: &mut Rng, out: &mut String) {
    let from = if rng.below(5) < 3 {
        format!("{} <{}>", name(rng), email(rng))
    } else {
        name(rng)
    };
    out.push_str(&format!(
        "Ticket #{} | opened {} | priority P{} | {}\nFrom: {from}\nSubject: {}\n\n",
        rng.digits(6),
        date(rng),
        1 + rng.below(4),
        rng.pick(&["email", "chat", "phone"]),
        rng.pick(SUBJECTS)
    ));
    for _ in 0..1 + rng.below(3) {
        for _ in 0..2 + rng.below(4) {
            out.push_str(&sentence(rng));
            out.push(' ');
        }
        out.push('\n');
    }
    out.push_str("-- \nKind regards, support team\n\n");
}

fn corpus(bytes: usize) -> String {
    let mut rng = Rng(0x5EED);
    let mut text = String::with_capacity(bytes + 4096);
    while text.len() < bytes {
        ticket(&mut rng, &mut text);
    }
    text
}

/// Run `work` over `text` and print its throughput, the best of a few rounds after a warm-up.
fn measure(name: &str, unit: &str, text: &str, mut work: impl FnMut(&str) -> usize) {
    // Names given on the command line (`cargo bench … -- redact`) pick the measurements to run.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    // The warm-up pass also builds anything built lazily.
    let found = black_box(work(text));
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        black_box(work(black_box(text)));
        best = best.min(started.elapsed().as_secs_f64());
    }
    let megabytes = text.len() as f64 / 1_000_000.0;
    println!(
        "{name:>24}: {:7.1} MB/s ({found} {unit} in {megabytes:.1} MB)",
        megabytes / best
    );
}

fn main() {
    let text = corpus(CORPUS_BYTES);
    measure("detect", "findings", &text, |t| {
        detect(t, &PiiKind::ALL).len()
    });
    measure("detect+redact", "distinct values", &text, |t| {
        let mut mapping = Redactions::new();
        let redacted = redact(t, &PiiKind::ALL, &mut mapping);
        black_box(redacted.len());
        mapping.len()
    });
    for kind in PiiKind::ALL {
        measure(&format!("detect {kind}"), "findings", &text, |t| {
            detect(t, &[kind]).len()
        });
    }
}
