//! ARCHITECTURE.md names files and functions; each must exist, so the map cannot drift from
//! the code unnoticed (a renamed file or function fails here until the map follows).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as paths relative to the workspace's `crates/`.
fn rust_files(dir: &Path, crates: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "node_modules" || name == "target" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, crates, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(crates).unwrap();
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The texts between backticks.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn every_file_and_function_the_architecture_names_exists() {
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let crates = crates.canonicalize().unwrap();
    let map = std::fs::read_to_string(crates.join("../ARCHITECTURE.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&crates, &crates, &mut files);
    let sources: String = files
        .iter()
        .filter(|f| f.contains("/src/"))
        .map(|f| std::fs::read_to_string(crates.join(f)).unwrap())
        .collect();
    let mut missing = Vec::new();
    for span in code_spans(&map) {
        if span.ends_with(".rs") && !span.contains(' ') {
            // `server/src/jobs.rs` from crates/; `dashboard/mod.rs` or `jobs.rs` anywhere.
            let found = files
                .iter()
                .any(|f| f == span || f.ends_with(&format!("/{span}")));
            if !found {
                missing.push(format!("file {span}"));
            }
        } else if let Some((_, function)) = span.rsplit_once("::") {
            // `Engine::drift_sweep`: some function (or closure field, or module) of that name.
            let is_function = !function.is_empty()
                && function
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let defined = ["fn ", "pub ", "mod "]
                .iter()
                .any(|keyword| defines(&sources, keyword, function));
            if is_function && !defined {
                missing.push(format!("function {span}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what the code does not have: {missing:?}"
    );
}

/// Whether `sources` hold `keyword` followed by the whole identifier `name` (not a longer one
/// that starts with it: `fn read` is not `fn read_cases`).
fn defines(sources: &str, keyword: &str, name: &str) -> bool {
    let needle = format!("{keyword}{name}");
    sources.match_indices(&needle).any(|(at, _)| {
        sources[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}
