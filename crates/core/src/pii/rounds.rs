//! Detection as a whole: the scan, then rounds that settle what context rules decided.
//!
//! Context rules (a number right after another number may be the middle of a longer one, a
//! dotted quad after `version` is no address) look at the neighbours of a value, and those
//! neighbours may be values themselves, which redaction replaces with placeholders. A value the
//! scan rejected for its neighbour would then be found in the redacted text, and a value read as
//! part of a longer, rejected number would stay in the clear. So after the scan:
//!
//! - **copies**: every other occurrence of a numeric value found is a finding too, wherever a
//!   number can start, whatever its context: a value found once is redacted wherever it occurs;
//! - **masked rescans**: the lines holding new findings are scanned again with every finding
//!   replaced by a placeholder, as [`super::redact`] writes them.
//!
//! Both repeat until nothing new turns up, so the redacted text holds nothing left to find. Only
//! the lines around new findings are scanned again: no detector's decision crosses a line break,
//! except a PEM key's body, and a PEM key is found from its BEGIN line whatever surrounds it.

use std::collections::HashMap;
use std::ops::Range;

use super::boundary::Anchors;
use super::{merge_groups, redact, scan, Finding, PiiKind};

/// Rounds after the scan; each one that finds something new was caused by the one before, so
/// more than two is rare outside fuzzing.
const MAX_ROUNDS: usize = 4;

/// Find every value of the given kinds in `text`: non-overlapping, sorted by position.
pub fn detect(text: &str, kinds: &[PiiKind]) -> Vec<Finding> {
    let (mut findings, anchors) = scan(text, kinds);
    let mut fresh: Vec<Range<usize>> = findings.iter().map(|f| f.range.clone()).collect();
    for _ in 0..MAX_ROUNDS {
        if fresh.is_empty() {
            break;
        }
        let copies = copies(text, &anchors, &findings);
        fresh.extend(copies.iter().map(|f| f.range.clone()));
        findings = merge_overlapping(findings, copies);
        let mut found = Vec::new();
        for region in lines_around(text, &findings, &fresh) {
            let inside = findings.partition_point(|f| f.range.end <= region.start)
                ..findings.partition_point(|f| f.range.start < region.end);
            let masked = Masked::new(&text[region.clone()], region.start, &findings[inside]);
            let (more, _) = scan(&masked.text, kinds);
            found.extend(more.into_iter().map(|f| Finding {
                kind: f.kind,
                range: masked.original(f.range),
            }));
        }
        fresh = found.iter().map(|f| f.range.clone()).collect();
        findings = merge_overlapping(findings, found);
    }
    findings
}

/// The other occurrences of the numeric values in `findings` that overlap none of them, starting
/// at a number anchor (or the `+`, `(` or IBAN letters before one); at one start the longest
/// value wins.
fn copies(text: &str, anchors: &Anchors, findings: &[Finding]) -> Vec<Finding> {
    let values: HashMap<&str, PiiKind> = findings
        .iter()
        .filter(|f| !matches!(f.kind, PiiKind::Email | PiiKind::Secret))
        .map(|f| (&text[f.range.clone()], f.kind))
        .collect();
    if values.is_empty() {
        return Vec::new();
    }
    // Most anchors start no value: their first four bytes tell, with one cheap lookup. Every
    // numeric value is longer than that.
    let mut lengths_by_prefix: HashMap<u32, Vec<usize>> = HashMap::new();
    for value in values.keys() {
        if let Some(key) = prefix(value.as_bytes()) {
            lengths_by_prefix.entry(key).or_default().push(value.len());
        }
    }
    for lengths in lengths_by_prefix.values_mut() {
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
    }
    let bytes = text.as_bytes();
    // Both lists are sorted, and an anchor's `+` or `(` lies after the anchor before it.
    let numbers = anchors.numbers.iter().flat_map(|&digit| {
        let opener = digit
            .checked_sub(1)
            .filter(|&i| matches!(bytes[i], b'+' | b'('));
        opener.into_iter().chain([digit])
    });
    let letters = anchors.letter_pairs.iter().map(|&digit| digit - 2);
    let starts = merge_sorted(numbers, letters);

    let mut copies = Vec::new();
    let mut free_from = 0;
    let mut next = 0;
    for start in starts {
        let Some(lengths) = prefix(&bytes[start..]).and_then(|key| lengths_by_prefix.get(&key))
        else {
            continue;
        };
        // The first finding that ends after `start`: a copy must end before it begins.
        while findings.get(next).is_some_and(|f| f.range.end <= start) {
            next += 1;
        }
        let limit = findings.get(next).map_or(text.len(), |f| f.range.start);
        if start < free_from || start >= limit {
            continue;
        }
        let copy = lengths.iter().find_map(|&len| {
            let range = start..start + len;
            let kind = *values.get(text.get(range.clone())?)?;
            (range.end <= limit).then_some(Finding { kind, range })
        });
        if let Some(copy) = copy {
            free_from = copy.range.end;
            copies.push(copy);
        }
    }
    copies
}

/// Two ascending sequences as one.
fn merge_sorted(
    a: impl Iterator<Item = usize>,
    b: impl Iterator<Item = usize>,
) -> impl Iterator<Item = usize> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// The first four bytes, which key a value's lengths in [`copies`].
fn prefix(bytes: &[u8]) -> Option<u32> {
    let first: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(first))
}

/// `findings` and `more` in order, those that overlap merged into one that takes the kind of the
/// longest.
fn merge_overlapping(mut findings: Vec<Finding>, more: Vec<Finding>) -> Vec<Finding> {
    if more.is_empty() {
        return findings;
    }
    findings.extend(more);
    findings.sort_unstable_by_key(|f| f.range.start);
    merge_groups(findings, |f| f, |a, b| a.range.len() > b.range.len())
}

/// The lines of `text` that hold the `fresh` ranges, merged where they meet; a finding that
/// spans a line break (a PEM key) brings in its lines whole, so no line cuts a finding.
fn lines_around(text: &str, findings: &[Finding], fresh: &[Range<usize>]) -> Vec<Range<usize>> {
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i);
    // The finding that `at` lies strictly inside, if any.
    let inside = |at: usize| {
        let i = findings.partition_point(|f| f.range.end <= at);
        findings.get(i).filter(|f| f.range.start < at)
    };
    let mut fresh = fresh.to_vec();
    fresh.sort_unstable_by_key(|r| r.start);
    let mut lines: Vec<Range<usize>> = Vec::new();
    for range in fresh {
        if lines.last().is_some_and(|l| range.end <= l.end) {
            continue;
        }
        let mut start = line_start(range.start);
        while let Some(f) = inside(start) {
            start = line_start(f.range.start);
        }
        let mut end = line_end(range.end);
        while let Some(f) = inside(end) {
            end = line_end(f.range.end);
        }
        match lines.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => lines.push(start..end),
        }
    }
    lines
}

/// A part of the text with its findings replaced by placeholders, and the way back to the
/// original offsets.
struct Masked {
    text: String,
    /// Where the part starts in the original text.
    offset: usize,
    /// Each placeholder's range in the masked text, with its finding's range in the original.
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl Masked {
    /// Mask `part`, which starts at `offset` in the original text, where `findings` (in
    /// original offsets, all within `part`) lie.
    fn new(part: &str, offset: usize, findings: &[Finding]) -> Self {
        let mut text = String::with_capacity(part.len());
        let mut spans = Vec::with_capacity(findings.len());
        let mut copied = 0;
        for finding in findings {
            let range = finding.range.start - offset..finding.range.end - offset;
            text.push_str(&part[copied..range.start]);
            let start = text.len();
            redact::push_placeholder(&mut text, finding.kind, 1);
            spans.push((start..text.len(), finding.range.clone()));
            copied = range.end;
        }
        text.push_str(&part[copied..]);
        Masked {
            text,
            offset,
            spans,
        }
    }

    /// The original range of a masked-text range; one that touches a placeholder takes in the
    /// whole finding it stands for.
    fn original(&self, range: Range<usize>) -> Range<usize> {
        self.original_offset(range.start, Side::Start)..self.original_offset(range.end, Side::End)
    }

    fn original_offset(&self, offset: usize, side: Side) -> usize {
        // The last placeholder that starts before `offset`, or at it for a start.
        let i = self.spans.partition_point(|(masked, _)| match side {
            Side::Start => masked.start <= offset,
            Side::End => masked.start < offset,
        });
        let Some((masked, original)) = i.checked_sub(1).map(|i| &self.spans[i]) else {
            return self.offset + offset;
        };
        match side {
            Side::Start if offset < masked.end => original.start,
            Side::End if offset <= masked.end => original.end,
            _ => original.end + (offset - masked.end),
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Start,
    End,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: PiiKind, range: Range<usize>) -> Finding {
        Finding { kind, range }
    }

    #[test]
    fn masked_offsets_map_back() {
        let text = ">> call 555-0100 or 555-0199 now";
        let findings = [
            finding(PiiKind::Phone, 8..16),
            finding(PiiKind::Phone, 20..28),
        ];
        let masked = Masked::new(&text[3..], 3, &findings);
        assert_eq!(masked.text, "call [PHONE_1] or [PHONE_1] now");
        // Text between placeholders maps by shifting.
        let or = masked.text.find("or").unwrap();
        assert_eq!(&text[masked.original(or..or + 2)], "or");
        let now = masked.text.find("now").unwrap();
        assert_eq!(&text[masked.original(now..now + 3)], "now");
        // A range touching a placeholder takes in its whole finding.
        assert_eq!(masked.original(6..16), 8..18);
        assert_eq!(masked.original(0..4), 3..7);
    }

    #[test]
    fn lines_around_cover_the_lines_of_new_findings_only() {
        let text = "a 555-0100\nb\nc 555-0199 d 555-0142\ne";
        let findings = [
            finding(PiiKind::Phone, 2..10),
            finding(PiiKind::Phone, 15..23),
            finding(PiiKind::Phone, 26..34),
        ];
        let lines = lines_around(text, &findings, &[15..23, 26..34]);
        let texts: Vec<&str> = lines.iter().map(|l| &text[l.clone()]).collect();
        assert_eq!(texts, ["c 555-0199 d 555-0142"]);
        // A finding across lines brings them in whole.
        let findings = [
            finding(PiiKind::Secret, 2..14),
            finding(PiiKind::Phone, 15..23),
        ];
        let lines = lines_around(text, &findings, &[findings[1].range.clone()]);
        assert_eq!(lines, vec![0..34]);
    }

    #[test]
    fn overlapping_findings_merge_under_the_longest() {
        let merged = merge_overlapping(
            vec![finding(PiiKind::Phone, 0..5), finding(PiiKind::Ip, 10..12)],
            vec![finding(PiiKind::Card, 3..9), finding(PiiKind::Ssn, 20..22)],
        );
        assert_eq!(
            merged,
            [
                finding(PiiKind::Card, 0..9),
                finding(PiiKind::Ip, 10..12),
                finding(PiiKind::Ssn, 20..22),
            ]
        );
    }
}
