//! Decided reviews become eval cases: the input as stored, the approved or corrected output as
//! `expected`, and where it came from, appended to the workflow's `[eval] dataset`. A rejected
//! output with no correction is added with `expected: null` for a person to fill in; evals
//! skip such cases until then. The same input is never added twice.

use std::collections::HashSet;
use std::io::Write;

use serde::Serialize;
use serde_json::{json, Value};
use shopfloor_core::dataset::{csv_header, parse_dataset, DatasetFormat, REVIEW_SOURCE_TAG};
use shopfloor_core::review::{Decision, ReviewStatus};
use shopfloor_store::ReviewFilter;

use crate::eval::input_hash;
use crate::{Engine, EngineError};

/// What adding cases from reviews did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AddedCases {
    /// The dataset file, relative to the project.
    pub dataset: String,
    /// The cases appended, as written.
    pub added: Vec<Value>,
    /// Of those, cases whose `expected` a person must still fill in.
    pub to_fill: u64,
    /// Decided reviews whose input is already in the dataset.
    pub already_present: u64,
    /// Decided reviews left out, with why (a CSV dataset cannot hold a case with no answer).
    pub skipped: Vec<String>,
    pub dry_run: bool,
}

impl Engine {
    /// Append one case per decided review of `workflow` whose input is not in its dataset yet.
    pub async fn cases_from_reviews(
        &self,
        workflow: &str,
        dry_run: bool,
    ) -> Result<AddedCases, EngineError> {
        let loaded = self.project.workflow(workflow)?;
        let relative = loaded
            .spec
            .eval
            .as_ref()
            .and_then(|e| e.dataset.as_ref())
            .map(|d| d.value.clone())
            .ok_or_else(|| EngineError::NoDataset(workflow.to_string()))?;
        let path = self.project.root.join(&relative);
        let format = DatasetFormat::from_path(&relative);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(EngineError::io(&path)(e)),
        };
        let (existing, _) = parse_dataset(&text, format);
        let mut seen: HashSet<String> = existing.iter().map(|c| input_hash(&c.input)).collect();
        let ids: HashSet<&str> = existing.iter().map(|c| c.id.as_str()).collect();

        self.flush().await;
        let items = self
            .store
            .list_reviews(&ReviewFilter {
                workflow: Some(workflow.to_string()),
                status: None,
                limit: Some(u32::MAX),
            })
            .await?;
        let decisions = self.store.review_decisions(None, Some(workflow)).await?;
        let mut report = AddedCases {
            dataset: relative,
            dry_run,
            ..AddedCases::default()
        };
        for item in items.iter().filter(|i| i.status != ReviewStatus::Pending) {
            let id = format!("review-{}", item.run_id);
            let Some(run) = self.store.get_run(&item.run_id).await? else {
                continue;
            };
            if ids.contains(id.as_str()) || !seen.insert(input_hash(&run.input)) {
                report.already_present += 1;
                continue;
            }
            let last = decisions.iter().rev().find(|d| d.run_id == item.run_id);
            let expected = match item.status {
                ReviewStatus::Edited => item.corrected_output.clone(),
                ReviewStatus::Approved => item.output.clone(),
                _ => last
                    .filter(|d| d.decision == Decision::Edit)
                    .and_then(|d| d.output.clone()),
            };
            if expected.is_none() && format == DatasetFormat::Csv {
                report.skipped.push(format!(
                    "{id}: rejected with no correction; a CSV dataset has no way to leave its answer empty"
                ));
                continue;
            }
            report.to_fill += u64::from(expected.is_none());
            report.added.push(json!({
                "id": id,
                "input": run.input,
                "expected": expected,
                "source": "review",
                "reviewer": last.map(|d| d.reviewer.clone()),
                "reviewed_at": item.decided_at_ms.map(shopfloor_core::calendar::utc_date),
            }));
        }
        if !dry_run && !report.added.is_empty() {
            append(&path, &text, format, &report.added)?;
        }
        Ok(report)
    }
}

/// Append `cases` to the dataset at `path` (whose current text is `text`), in its format.
fn append(
    path: &std::path::Path,
    text: &str,
    format: DatasetFormat,
    cases: &[Value],
) -> Result<(), EngineError> {
    let mut out = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
    match format {
        DatasetFormat::Jsonl => {
            for case in cases {
                out.push_str(&case.to_string());
                out.push('\n');
            }
        }
        DatasetFormat::Csv => {
            let header = csv_header(text).unwrap_or_else(|| {
                ["id", "input", "expected", "tags"]
                    .map(String::from)
                    .to_vec()
            });
            if text.is_empty() {
                out.push_str(&header.join(","));
                out.push('\n');
            }
            for case in cases {
                let cells: Vec<String> =
                    header.iter().map(|column| csv_cell(case, column)).collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(EngineError::io(path))?;
    file.write_all(out.as_bytes())
        .map_err(EngineError::io(path))
}

/// The CSV cell of `column` for a review case.
fn csv_cell(case: &Value, column: &str) -> String {
    let text = match column {
        "id" => case["id"].as_str().unwrap_or_default().to_string(),
        "tags" => REVIEW_SOURCE_TAG.to_string(),
        "input" => case["input"].to_string(),
        "expected" => match &case["expected"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        field => match &case["input"][field] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        },
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}
