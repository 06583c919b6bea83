//! What the fuzz targets in `fuzz/` check, one function per target, so that what they found
//! runs again as ordinary tests (the `fuzz/regression/` inputs, in the unit tests below): every input a reader or a
//! template takes from a file or a caller must give a result or a named error, never a panic,
//! and redacting then restoring personal data gives the text back.
//!
//! Not part of the API: the functions panic on purpose when an invariant breaks.

use crate::dataset::{parse_dataset, DatasetFormat};
use crate::pii::{redact, restore, PiiKind, Redactions};
use crate::spec::{parse_config, parse_workflow, Located, PromptSpec};
use crate::template::PromptTemplates;

/// `shopfloor.toml` and a workflow file, read from any bytes.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (_, diagnostics) = parse_config("shopfloor.toml", &text);
    for d in &diagnostics {
        assert!(!d.to_string().is_empty());
    }
    let (_, diagnostics) = parse_workflow("fuzz", "workflows/fuzz.toml", &text);
    for d in &diagnostics {
        assert!(!d.to_string().is_empty());
    }
}

/// A prompt template (the first line of `data` is the user template's first line, and so on
/// up to a line `---`), rendered for the JSON input after it (or a fixed one).
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (template, input) = text.split_once("\n---\n").unwrap_or((&text, ""));
    let spec = PromptSpec {
        system: None,
        user: Located::new(template.to_string(), None),
        assistant_prefix: None,
        examples: None,
    };
    let Ok(templates) = PromptTemplates::compile(&spec) else {
        return;
    };
    let input = serde_json::from_str(input)
        .unwrap_or_else(|_| serde_json::json!({"text": "a ticket", "n": 3, "tags": ["a", "b"]}));
    let _ = templates.variables();
    let _ = templates.render(&input);
}

/// An eval dataset, as JSON lines and as CSV.
pub fn dataset(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for format in [DatasetFormat::Jsonl, DatasetFormat::Csv] {
        let (cases, bad) = parse_dataset(&text, format);
        for case in &cases {
            assert!(!case.id.is_empty());
        }
        for b in &bad {
            assert!(!b.message.is_empty(), "line {}: no message", b.line);
        }
    }
}

/// Redacting every kind of personal data and restoring it gives the text back.
pub fn pii_round_trip(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut mapping = Redactions::new();
    let redacted = redact(&text, &PiiKind::ALL, &mut mapping);
    assert_eq!(restore(&redacted, &mapping), text, "redacted: {redacted:?}");
}

/// Every input in `fuzz/regression/TARGET/` (seeds, fixed crashes, and a sample of the
/// smallest inputs a fuzz run kept), run through `check`; the number run.
#[doc(hidden)]
pub fn replay_corpus(target: &str, check: fn(&[u8])) -> usize {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regression")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    for file in &files {
        let data = match std::fs::read(file) {
            Ok(data) => data,
            // A fuzzer running meanwhile (`scripts/fuzz`) replaces its corpus as it goes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", file.display()),
        };
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails again", file.display());
    }
    files.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_corpora_run_clean() {
        // The stack the fuzzer ran with (and a process's main thread has): deeply nested
        // template expressions in the corpus need more than a test thread's 2 MiB in an
        // unoptimised build.
        std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(|| {
                for (target, check) in [
                    ("config", config as fn(&[u8])),
                    ("template", template),
                    ("dataset", dataset),
                    ("pii_round_trip", pii_round_trip),
                ] {
                    assert!(replay_corpus(target, check) > 0, "{target}: empty corpus");
                }
            })
            .expect("a thread")
            .join()
            .expect("every corpus input runs clean");
    }
}
