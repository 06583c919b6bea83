//! PII detection and redaction: finding personal data and secrets in text, replacing them with
//! typed placeholders before the text leaves the building, and putting them back afterwards.
//!
//! Every detector is a pure function of the text: a linear-time `regex` pass (the `regex` crate
//! never backtracks) that proposes candidates, then a cheap validation of each candidate
//! (checksums, ranges, boundaries). Candidates are deliberately strict, because a redactor that
//! mangles order numbers, dates, versions and amounts makes the model's answer worse for nothing.
//!
//! What is detected, and what is deliberately left alone:
//! - `email`: `local@domain.tld` with an alphabetic TLD; `icon@2x.png`-style image names are not.
//! - `phone`: `+CC …` with 8–15 digits (E.164); US `(555) 123-4567`, `555-123-4567`,
//!   `555.123.4567`, `1-555-123-4567`; national trunk-prefix forms such as UK `020 7946 0958`,
//!   DE `030 123456` / `030/123456`, FR `01 23 45 67 89`. A separator is required in national
//!   forms, so bare digit runs (order numbers) stay; dates never match because a trunk prefix
//!   needs three digits before the first separator.
//! - `credit_card`: 13–19 digits, bare or grouped by one kind of separator (space or dash), first
//!   digit 2–6 (Visa, Mastercard, Amex, Discover, JCB, UnionPay, Diners) and a valid Luhn sum.
//! - `iban`: a known country code, that country's exact length, a valid mod-97 checksum; with or
//!   without spaces between groups; upper case only.
//! - `ssn`: `AAA-GG-SSSS` (dashes only: bare nine-digit runs are too often something else) with
//!   area 000, 666 and 900–999, group 00 and serial 0000 excluded.
//! - `ip`: IPv4 with octets ≤ 255 and no leading zeros, not part of a longer dotted run (so the
//!   version `10.0.19045.2965` stays); IPv6 as `std` parses it, including `::` forms and an
//!   embedded IPv4, but only when it holds at least one decimal digit, so that code such as
//!   `dead::beef` stays.
//! - `secret`: API keys by prefix (`sk-`/`sk-ant-`, `AKIA`/`ASIA`, `ghp_`/`gho_`/`ghu_`/`ghs_`/
//!   `ghr_`, `github_pat_`, `xoxb-`/`xoxp-`/`xoxa-`/`xoxr-`/`xoxs-`), JWTs whose header decodes
//!   to a JSON object with `"alg"`, PEM private-key blocks (to the end of the text when the END
//!   line is missing), and unprefixed high-entropy tokens (see [`secret`] for the calibration).
//!   Hex-only tokens — UUIDs, git SHAs, content hashes — are identifiers, not credentials, and are
//!   left alone; a hex-only API key is therefore only caught when it carries a known prefix.
//!
//! Overlaps: findings that overlap are merged into one finding covering all of them, so that no
//! fragment of a detected value stays in the clear (a `+44 …` phone number whose greedy digits run
//! into a card number next to it becomes one redaction). The merged finding takes the kind of the
//! longest candidate (a JWT over the high-entropy tokens inside it, an IBAN over the phone-shaped
//! digits inside it); at equal length the more specific detector names it, in the order prefixed
//! secret, card, IBAN, SSN, email, IP, phone, entropy token.

mod boundary;
mod email;
mod financial;
mod network;
mod phone;
mod redact;
mod secret;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::str::FromStr;

pub use redact::{redact, restore, Redactions};

/// A kind of personal data or secret that can be detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    /// An email address.
    Email,
    /// A phone number, international or in a common national format.
    Phone,
    /// A payment card number that passes the Luhn check.
    Card,
    /// An IBAN that passes the mod-97 check.
    Iban,
    /// A US social security number in a valid range.
    Ssn,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An API key, token, private key or other high-entropy credential.
    Secret,
}

impl PiiKind {
    /// Every kind, in the order summaries list them.
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::Ip,
        PiiKind::Secret,
    ];

    /// Parse the name used in `[policy.pii] detect = [...]`.
    pub fn parse(name: &str) -> Result<Self, UnknownPiiKind> {
        PiiKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownPiiKind(name.to_string()))
    }

    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Card => "credit_card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::Ip => "ip",
            PiiKind::Secret => "secret",
        }
    }

    /// The tag inside this kind's placeholders, as in `[EMAIL_1]`.
    pub fn tag(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::Phone => "PHONE",
            PiiKind::Card => "CARD",
            PiiKind::Iban => "IBAN",
            PiiKind::Ssn => "SSN",
            PiiKind::Ip => "IP",
            PiiKind::Secret => "SECRET",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        PiiKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl FromStr for PiiKind {
    type Err = UnknownPiiKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        PiiKind::parse(name)
    }
}

impl std::fmt::Display for PiiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for PiiKind {
    // The config name, as written in `[policy.pii] detect`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A PII kind name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PII kind `{0}`: expected one of email, phone, credit_card, iban, ssn, ip, secret")]
pub struct UnknownPiiKind(pub String);

/// One detected value: its kind and where it lies in the text (byte offsets, on char boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was found.
    pub kind: PiiKind,
    /// Byte range of the value in the text it was found in.
    pub range: Range<usize>,
}

/// How specific a detector is; lower wins ties between overlapping findings of equal length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    PrefixedSecret,
    Card,
    Iban,
    Ssn,
    Email,
    Ip,
    Phone,
    EntropySecret,
}

/// A finding before overlaps are resolved.
#[derive(Debug, Clone)]
struct Candidate {
    rank: Rank,
    finding: Finding,
}

impl Candidate {
    fn new(kind: PiiKind, rank: Rank, range: Range<usize>) -> Self {
        Candidate {
            rank,
            finding: Finding { kind, range },
        }
    }
}

/// Find every value of the given kinds in `text`: non-overlapping, sorted by position.
pub fn detect(text: &str, kinds: &[PiiKind]) -> Vec<Finding> {
    let mut candidates = Vec::new();
    let mut wanted = [false; PiiKind::ALL.len()];
    for kind in kinds {
        wanted[kind.index()] = true;
    }
    for kind in PiiKind::ALL.into_iter().filter(|k| wanted[k.index()]) {
        match kind {
            PiiKind::Email => email::find(text, &mut candidates),
            PiiKind::Phone => phone::find(text, &mut candidates),
            PiiKind::Card => financial::find_cards(text, &mut candidates),
            PiiKind::Iban => financial::find_ibans(text, &mut candidates),
            PiiKind::Ssn => financial::find_ssns(text, &mut candidates),
            PiiKind::Ip => network::find(text, &mut candidates),
            PiiKind::Secret => secret::find(text, &mut candidates),
        }
    }
    resolve_overlaps(candidates)
}

/// Merge overlapping candidates into one finding that covers them all, so that no part of a
/// detected value is left in the clear; it takes the kind of the longest candidate in the group,
/// the more specific one on a tie.
fn resolve_overlaps(mut candidates: Vec<Candidate>) -> Vec<Finding> {
    candidates.retain(|c| c.finding.range.start < c.finding.range.end);
    candidates.sort_by_key(|c| c.finding.range.start);
    let mut findings: Vec<Finding> = Vec::with_capacity(candidates.len());
    let mut winner: Option<Candidate> = None;
    for candidate in candidates {
        let range = candidate.finding.range.clone();
        match findings.last_mut() {
            Some(last) if range.start < last.range.end => {
                last.range.end = last.range.end.max(range.end);
                if winner.as_ref().is_some_and(|w| beats(&candidate, w)) {
                    last.kind = candidate.finding.kind;
                    winner = Some(candidate);
                }
            }
            _ => {
                findings.push(candidate.finding.clone());
                winner = Some(candidate);
            }
        }
    }
    findings
}

/// True when `a` should name a merged group rather than `b`: longer, then more specific.
fn beats(a: &Candidate, b: &Candidate) -> bool {
    let len = |c: &Candidate| c.finding.range.end - c.finding.range.start;
    (len(a), std::cmp::Reverse(a.rank)) > (len(b), std::cmp::Reverse(b.rank))
}

/// How many findings of each kind, in [`PiiKind::ALL`] order, kinds with none left out.
pub fn summarize(findings: &[Finding]) -> Vec<(PiiKind, usize)> {
    let mut counts = [0usize; PiiKind::ALL.len()];
    for finding in findings {
        counts[finding.kind.index()] += 1;
    }
    PiiKind::ALL
        .into_iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .collect()
}
