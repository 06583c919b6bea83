//! PII detection and redaction: finding personal data and secrets in text, replacing them with
//! typed placeholders before the text leaves the building, and putting them back afterwards.
//!
//! Every detector is a pure function of the text, in linear time and without regular
//! expressions: one scan finds where numbers start (eight bytes at a time, so prose is skipped
//! almost for free) and every numeric detector starts from those anchors; secrets come from one
//! scan over long runs of token characters that probes instead of reading every byte; emails,
//! IPv6 addresses and placeholders start from a `memchr` for `@`, `:` and `[`. Each candidate is
//! matched by hand and then validated cheaply (checksums, ranges, boundaries), with no allocation
//! per candidate. Candidates are deliberately strict, because a redactor that mangles order
//! numbers, dates, versions and amounts makes the model's answer worse for nothing.
//!
//! What is detected, and what is deliberately left alone:
//! - `email`: `local@domain.tld` with an alphabetic TLD; `icon@2x.png`-style image names are not.
//! - `phone`: `+CC …` with 8–15 digits (E.164), and the same written with `00` instead of `+`
//!   (`0044 20 7946 0958`) when the code after `00` is an assigned country code followed by a
//!   separator, so that `Order 00123456` stays; US `(555) 123-4567`, `555-123-4567`,
//!   `555.123.4567`, `1-555-123-4567`; national trunk-prefix forms such as UK `020 7946 0958`,
//!   DE `030 123456` / `030/123456`, FR `01 23 45 67 89`. A separator is required in national
//!   forms, so bare digit runs (order numbers) stay; dates never match because a trunk prefix
//!   needs three digits before the first separator.
//! - `credit_card`: 13–19 digits, bare or grouped by one kind of separator (space or dash), first
//!   digit 2–6 (Visa, Mastercard, Amex, Discover, JCB, UnionPay, Diners) and a valid Luhn sum.
//! - `iban`: a known country code, that country's exact length, a valid mod-97 checksum; with or
//!   without spaces between groups; upper case, or all lower case (`gb82 west 1234 5698 7654
//!   32`) with spaces only every four characters, as printed.
//! - `ssn`: `AAA-GG-SSSS` (dashes only: bare nine-digit runs are too often something else) with
//!   area 000, 666 and 900–999, group 00 and serial 0000 excluded.
//! - `ip`: IPv4 with octets ≤ 255 and no leading zeros, not part of a longer dotted run (so the
//!   version `10.0.19045.2965` stays) and not announced as a version (`v1.2.3.4`,
//!   `version 1.2.3.4`, `build 1.2.3.4`: a bare `1.2.3.4` is taken as an address); IPv6 as `std`
//!   parses it, including `::` forms and an embedded IPv4, but only when it holds at least one
//!   decimal digit, so that code such as `dead::beef` stays.
//! - `secret`: API keys by prefix (shopfloor's own `sf_` + hex, `sk-`/`sk-ant-`, `AKIA`/`ASIA`, `ghp_`/`gho_`/`ghu_`/`ghs_`/
//!   `ghr_`, `github_pat_`, `xoxb-`/`xoxp-`/`xoxa-`/`xoxr-`/`xoxs-`), JWTs whose header decodes
//!   to a JSON object with `"alg"`, PEM private-key blocks (to the end of the text when the END
//!   line is missing), unprefixed high-entropy tokens (see [`secret`] for the calibration),
//!   values after credential names (`password=…`, `passwd: …`, `api_key=…`, `DB_TOKEN=…`) and
//!   URLs with a password (`postgres://u:pw@…`), see [`credentials`].
//!   Hex-only tokens — UUIDs, git SHAs, content hashes — are identifiers, not credentials, and are
//!   left alone; a hex-only API key is therefore only caught when it carries a known prefix.
//!
//! Numbers inside longer numbers: a national or `00` phone number right after a digit group and a
//! space, and a grouped card right after four-digit groups joined the same way back to where the
//! digits begin, are read as the middle of one longer number and left alone: the tracking number
//! `9400 1000 6139 1416 7191 84` holds the Luhn-valid `6139 1416 7191 84`, and
//! `9400 1000 0768 2682 8535 50` the UK-shaped `0768 2682 8535`. They are taken after all when
//! the digits before them belong to another finding (a phone number followed by a card), or when
//! the same value is found elsewhere in the text.
//!
//! Settling (see [`rounds`]): context rules look at neighbours that may be values themselves, and
//! redaction replaces those with placeholders. So after the scan every other occurrence of a
//! numeric value found is taken wherever a number can start, and the lines holding new findings
//! are scanned again with the findings masked as placeholders, until nothing new turns up. That
//! is what makes redaction a fixed point: the redacted text holds nothing left to find, and no
//! value found once stays in the clear anywhere in the text.
//!
//! Overlaps: findings that overlap are merged into one finding covering all of them, so that no
//! fragment of a detected value stays in the clear (a `+44 …` phone number whose greedy digits run
//! into a card number next to it becomes one redaction). The merged finding takes the kind of the
//! longest candidate (a JWT over the high-entropy tokens inside it, an IBAN over the phone-shaped
//! digits inside it); at equal length the more specific detector names it, in the order prefixed
//! secret, card, IBAN, SSN, email, IP, phone, entropy token.

mod boundary;
mod credentials;
mod email;
mod financial;
mod network;
mod phone;
mod redact;
mod rounds;
mod secret;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ops::Range;
use std::str::FromStr;

use boundary::Anchors;

pub use credentials::is_credential_name;
pub use redact::{redact, redact_whole, restore, Redactions};
pub use rounds::detect;

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
    /// A digit just before the value that makes it look like the middle of a longer number
    /// (the `1000` of `9400 1000 0123 4567`): the candidate is kept only when another finding
    /// covers that digit, that is when the digits before are a value of their own.
    needs_cover: Option<usize>,
}

impl Candidate {
    fn new(kind: PiiKind, rank: Rank, range: Range<usize>) -> Self {
        Candidate {
            rank,
            finding: Finding { kind, range },
            needs_cover: None,
        }
    }

    /// Keep this candidate only if another finding covers the byte at `digit`, if any.
    fn unless_uncovered(mut self, digit: Option<usize>) -> Self {
        self.needs_cover = digit;
        self
    }
}

/// One left-to-right scan of `text` for the given kinds (see [`detect`] for the rounds around
/// it), with the anchors it found.
fn scan(text: &str, kinds: &[PiiKind]) -> (Vec<Finding>, Anchors) {
    let mut wanted = [false; PiiKind::ALL.len()];
    for kind in kinds {
        wanted[kind.index()] = true;
    }
    let numeric = [
        PiiKind::Phone,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::Ip,
    ];
    let anchors = if numeric.iter().any(|k| wanted[k.index()]) {
        Anchors::scan(text)
    } else {
        Anchors::default()
    };
    let mut candidates = Vec::new();
    for kind in PiiKind::ALL.into_iter().filter(|k| wanted[k.index()]) {
        let out = &mut candidates;
        match kind {
            PiiKind::Email => email::find(text, out),
            PiiKind::Phone => phone::find(text, &anchors.numbers, out),
            PiiKind::Card => financial::find_cards(text, &anchors.numbers, out),
            PiiKind::Iban => financial::find_ibans(text, &anchors.letter_pairs, out),
            PiiKind::Ssn => financial::find_ssns(text, &anchors.numbers, out),
            PiiKind::Ip => network::find(text, &anchors.numbers, out),
            PiiKind::Secret => {
                secret::find(text, out);
                credentials::find(text, out);
            }
        }
    }
    (resolve_overlaps(text, candidates), anchors)
}

/// Merge overlapping candidates into one finding that covers them all, so that no part of a
/// detected value is left in the clear; it takes the kind of the longest candidate in the group,
/// the more specific one on a tie.
fn resolve_overlaps(text: &str, mut candidates: Vec<Candidate>) -> Vec<Finding> {
    candidates.retain(|c| c.finding.range.start < c.finding.range.end);
    candidates.sort_unstable_by_key(|c| c.finding.range.start);
    drop_uncovered(text, &mut candidates);
    merge_groups(candidates, |c| &c.finding, beats)
}

/// Merge `items` (sorted by start) whose ranges overlap into one finding per group, covering
/// the group and named after the item that `beats` the others.
fn merge_groups<T>(
    items: Vec<T>,
    finding: impl Fn(&T) -> &Finding,
    beats: impl Fn(&T, &T) -> bool,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::with_capacity(items.len());
    let mut winner: Option<T> = None;
    for item in items {
        let range = finding(&item).range.clone();
        match findings.last_mut() {
            Some(last) if range.start < last.range.end => {
                last.range.end = last.range.end.max(range.end);
                if winner.as_ref().is_some_and(|w| beats(&item, w)) {
                    last.kind = finding(&item).kind;
                    winner = Some(item);
                }
            }
            _ => {
                findings.push(finding(&item).clone());
                winner = Some(item);
            }
        }
    }
    findings
}

/// How many rounds [`drop_uncovered`] spends reinstating values found elsewhere.
const MAX_VOUCHING_ROUNDS: usize = 8;

/// Drop the candidates (sorted by start) that need their digit before covered and do not have it
/// (see [`Candidate::needs_cover`]), unless the same value of the same kind is kept elsewhere in
/// the text: a value found once is redacted wherever it occurs.
///
/// Deciding on what the other findings are, rather than on the digits alone, keeps redaction
/// stable: once those findings are placeholders the candidate is found again, and one dropped
/// here is dropped in the redacted text too.
fn drop_uncovered(text: &str, candidates: &mut Vec<Candidate>) {
    if candidates.iter().all(|c| c.needs_cover.is_none()) {
        return;
    }
    let value = |c: &Candidate| (c.finding.kind, &text[c.finding.range.clone()]);
    let mut vouched: HashSet<(PiiKind, &str)> = HashSet::new();
    let mut keep = Vec::with_capacity(candidates.len());
    for _ in 0..MAX_VOUCHING_ROUNDS {
        // Whether a digit is covered depends on the candidates before it only.
        keep.clear();
        let mut covered_until = 0;
        for c in candidates.iter() {
            let kept = c.needs_cover.is_none_or(|digit| digit < covered_until)
                || vouched.contains(&value(c));
            if kept {
                covered_until = covered_until.max(c.finding.range.end);
            }
            keep.push(kept);
        }
        let dropped: HashSet<(PiiKind, &str)> = candidates
            .iter()
            .zip(&keep)
            .filter(|(_, &kept)| !kept)
            .map(|(c, _)| value(c))
            .collect();
        let before = vouched.len();
        vouched.extend(
            candidates
                .iter()
                .zip(&keep)
                .filter(|(c, &kept)| kept && dropped.contains(&value(c)))
                .map(|(c, _)| value(c)),
        );
        if vouched.len() == before {
            break;
        }
    }
    let mut kept = keep.into_iter();
    candidates.retain(|_| kept.next().unwrap_or(true));
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
