//! Eval datasets: JSONL or CSV cases with an input and a known answer. Parsing only; the engine
//! reads the file and checks each input against the workflow's schema.

use serde::Serialize;
use serde_json::{Map, Value};

/// One case of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetCase {
    /// The case's id: the `id` field, or `line-N` when it has none.
    pub id: String,
    /// 1-based line (JSONL) or record number plus one for the header (CSV).
    pub line: u64,
    pub input: Value,
    pub expected: Value,
    pub tags: Vec<String>,
}

/// Fields a JSONL case may carry about where it came from.
pub const PROVENANCE: &[&str] = &["source", "reviewer", "reviewed_at"];

/// The tag of cases that came from review decisions.
pub const REVIEW_SOURCE_TAG: &str = "source:review";

/// A line that is not a valid case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadCase {
    pub line: u64,
    pub message: String,
}

/// The format of a dataset file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    Jsonl,
    Csv,
}

impl DatasetFormat {
    /// `.csv` is CSV; anything else (`.jsonl`, `.json`, `.ndjson`) is JSON lines.
    pub fn from_path(path: &str) -> Self {
        if path.to_ascii_lowercase().ends_with(".csv") {
            DatasetFormat::Csv
        } else {
            DatasetFormat::Jsonl
        }
    }
}

/// Parse a dataset: the valid cases and every bad line.
pub fn parse_dataset(text: &str, format: DatasetFormat) -> (Vec<DatasetCase>, Vec<BadCase>) {
    let (parsed, mut bad) = match format {
        DatasetFormat::Jsonl => parse_jsonl(text),
        DatasetFormat::Csv => parse_csv(text),
    };
    // Ids key results and baseline comparisons: a repeated id is a bad case, the first one wins.
    let mut seen = std::collections::HashSet::new();
    let mut cases = Vec::with_capacity(parsed.len());
    for case in parsed {
        if seen.insert(case.id.clone()) {
            cases.push(case);
        } else {
            bad.push(BadCase {
                line: case.line,
                message: format!("duplicate id \"{}\"", case.id),
            });
        }
    }
    bad.sort_by_key(|b| b.line);
    (cases, bad)
}

fn parse_jsonl(text: &str) -> (Vec<DatasetCase>, Vec<BadCase>) {
    let mut cases = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<Value>(raw)
            .map_err(|e| format!("not valid JSON: {e}"))
            .and_then(|v| match v {
                Value::Object(map) => case_from_object(map, line),
                _ => Err("expected a JSON object with \"input\" and \"expected\"".into()),
            });
        match result {
            Ok(case) => cases.push(case),
            Err(message) => bad.push(BadCase { line, message }),
        }
    }
    (cases, bad)
}

fn case_from_object(mut map: Map<String, Value>, line: u64) -> Result<DatasetCase, String> {
    let input = match map.remove("input") {
        Some(Value::Object(input)) => Value::Object(input),
        Some(other) => {
            return Err(format!(
                "\"input\" must be an object, found {}",
                kind(&other)
            ))
        }
        None => {
            return Err("missing \"input\" (an object matching the workflow's input schema)".into())
        }
    };
    let expected = map
        .remove("expected")
        .ok_or("missing \"expected\" (the known answer)")?;
    let id = match map.remove("id") {
        None | Some(Value::Null) => format!("line-{line}"),
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(format!(
                "\"id\" must be a string or a number, found {}",
                kind(&other)
            ))
        }
    };
    let tags = match map.remove("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|t| match t {
                Value::String(s) => Ok(s),
                other => Err(format!("\"tags\" must be strings, found {}", kind(&other))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "\"tags\" must be an array of strings, found {}",
                kind(&other)
            ))
        }
    };
    let mut tags = tags;
    // Provenance of cases that came from somewhere (a review decision): kept with the case,
    // and `source` as a `source:…` tag, so evals can report those cases as their own slice.
    for field in PROVENANCE {
        match map.remove(*field) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                if *field == "source" {
                    tags.push(format!("source:{text}"));
                }
            }
            Some(other) => {
                return Err(format!(
                    "\"{field}\" must be a string, found {}",
                    kind(&other)
                ))
            }
        }
    }
    if let Some(extra) = map.keys().next() {
        return Err(format!(
            "unknown field \"{extra}\"; a case has id, input, expected, tags and optionally {}",
            PROVENANCE.join(", ")
        ));
    }
    Ok(DatasetCase {
        id,
        line,
        input,
        expected,
        tags,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// CSV with a header: `id`, `expected`, `tags` (separated by `;`), and either an `input` column
/// holding a JSON object or one column per input field (as strings).
fn parse_csv(text: &str) -> (Vec<DatasetCase>, Vec<BadCase>) {
    let mut records = csv_records(text);
    let Some(header) = records.next() else {
        return (
            Vec::new(),
            vec![BadCase {
                line: 1,
                message: "empty file: expected a header row".into(),
            }],
        );
    };
    let header = match header {
        Ok((_, fields)) => fields,
        Err(bad) => return (Vec::new(), vec![bad]),
    };
    if !header.iter().any(|h| h == "expected") {
        return (
            Vec::new(),
            vec![BadCase {
                line: 1,
                message: "the header has no \"expected\" column".into(),
            }],
        );
    }
    let mut cases = Vec::new();
    let mut bad = Vec::new();
    for record in records {
        let (line, fields) = match record {
            Ok(r) => r,
            Err(b) => {
                bad.push(b);
                continue;
            }
        };
        if fields.len() != header.len() {
            bad.push(BadCase {
                line,
                message: format!(
                    "{} fields, but the header has {}",
                    fields.len(),
                    header.len()
                ),
            });
            continue;
        }
        match case_from_csv(&header, fields, line) {
            Ok(case) => cases.push(case),
            Err(message) => bad.push(BadCase { line, message }),
        }
    }
    (cases, bad)
}

fn case_from_csv(header: &[String], fields: Vec<String>, line: u64) -> Result<DatasetCase, String> {
    let mut id = None;
    let mut expected = Value::Null;
    let mut tags = Vec::new();
    let mut input = Map::new();
    let mut input_json = None;
    for (name, value) in header.iter().zip(fields) {
        match name.as_str() {
            "id" => id = Some(value).filter(|v| !v.trim().is_empty()),
            "expected" => expected = csv_expected(value),
            "tags" => {
                tags = value
                    .split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            }
            "input" => {
                input_json = Some(match serde_json::from_str::<Value>(&value) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    _ => return Err("the \"input\" column must hold a JSON object".into()),
                })
            }
            field => {
                input.insert(field.to_string(), Value::String(value));
            }
        }
    }
    Ok(DatasetCase {
        id: id.unwrap_or_else(|| format!("line-{line}")),
        line,
        input: input_json.unwrap_or(Value::Object(input)),
        expected,
        tags,
    })
}

/// A cell that holds a JSON object or array is taken as JSON; anything else is text.
fn csv_expected(cell: String) -> Value {
    let trimmed = cell.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if let Ok(value) = serde_json::from_str(trimmed) {
            return value;
        }
    }
    Value::String(cell)
}

/// Records of RFC 4180 CSV: quoted fields may hold commas, doubled quotes and newlines.
/// Each record comes with the line it starts on.
/// The column names of a CSV dataset's header, read as the parser reads them (quoted names
/// included); `None` for an empty file.
pub fn csv_header(text: &str) -> Option<Vec<String>> {
    csv_records(text)
        .next()
        .and_then(Result::ok)
        .map(|(_, names)| names)
}

fn csv_records(text: &str) -> impl Iterator<Item = Result<(u64, Vec<String>), BadCase>> + '_ {
    let mut chars = text.chars().peekable();
    let mut line: u64 = 1;
    std::iter::from_fn(move || {
        // Skip blank lines between records.
        while chars.peek() == Some(&'\n') || chars.peek() == Some(&'\r') {
            if chars.next() == Some('\n') {
                line += 1;
            }
        }
        chars.peek()?;
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            match chars.next() {
                None if quoted => {
                    return Some(Err(BadCase {
                        line: start,
                        message: "a quoted field is never closed".into(),
                    }))
                }
                None => {
                    fields.push(std::mem::take(&mut field));
                    return Some(Ok((start, fields)));
                }
                Some('"') if quoted => {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                }
                Some('"') if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                Some('\n') if quoted => {
                    line += 1;
                    field.push('\n');
                }
                Some(c) if quoted => field.push(c),
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    return Some(Ok((start, fields)));
                }
                Some(c) => field.push(c),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn jsonl_cases_and_bad_lines() {
        let text = concat!(
            "{\"id\": \"t1\", \"input\": {\"subject\": \"a\"}, \"expected\": \"bug\", \"tags\": [\"easy\"]}\n",
            "\n",
            "{\"input\": {\"subject\": \"b\"}, \"expected\": \"billing\"}\n",
            "not json\n",
            "{\"input\": \"text\", \"expected\": \"x\"}\n",
            "{\"input\": {}, \"expected\": \"x\", \"colour\": 1}\n",
            "{\"id\": \"t1\", \"input\": {}, \"expected\": \"x\"}\n",
            "{\"input\": {}}\n",
        );
        let (cases, bad) = parse_dataset(text, DatasetFormat::Jsonl);
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].tags, vec!["easy"]);
        assert_eq!(cases[1].id, "line-3");
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7, 8], "{bad:#?}");
        assert!(bad[3].message.contains("duplicate id \"t1\""));
        assert!(bad[4].message.contains("missing \"expected\""));
    }

    #[test]
    fn csv_with_columns_quotes_and_newlines() {
        let text = "id,subject,body,expected,tags\nt1,Refund,\"Charged twice, \"\"again\"\"\nthanks\",billing,easy;angry\nt2,Crash,It breaks,bug,\nt3,only two\n";
        let (cases, bad) = parse_dataset(text, DatasetFormat::Csv);
        assert_eq!(cases.len(), 2, "{bad:?}");
        assert_eq!(
            cases[0].input,
            json!({"subject": "Refund", "body": "Charged twice, \"again\"\nthanks"})
        );
        assert_eq!(cases[0].expected, json!("billing"));
        assert_eq!(cases[0].tags, vec!["easy", "angry"]);
        assert_eq!(cases[1].line, 4);
        assert_eq!(
            bad,
            vec![BadCase {
                line: 5,
                message: "2 fields, but the header has 5".into()
            }]
        );
    }

    #[test]
    fn csv_input_column_and_json_expected() {
        let text = "input,expected\n\"{\"\"amount\"\": 3}\",\"{\"\"ok\"\": true}\"\n";
        let (cases, bad) = parse_dataset(text, DatasetFormat::Csv);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(cases[0].input, json!({"amount": 3}));
        assert_eq!(cases[0].expected, json!({"ok": true}));
    }

    #[test]
    fn csv_without_expected_column() {
        let (_, bad) = parse_dataset("id,subject\n1,x\n", DatasetFormat::Csv);
        assert_eq!(bad[0].line, 1);
    }

    proptest! {
        #[test]
        fn csv_round_trips_any_fields(rows in proptest::collection::vec(proptest::collection::vec("[^\r]{0,12}", 3), 1..6)) {
            let quote = |f: &String| format!("\"{}\"", f.replace('"', "\"\""));
            let mut text = String::from("a,b,expected\n");
            for row in &rows {
                text.push_str(&row.iter().map(quote).collect::<Vec<_>>().join(","));
                text.push('\n');
            }
            let (cases, bad) = parse_dataset(&text, DatasetFormat::Csv);
            prop_assert!(bad.is_empty(), "{:?}", bad);
            prop_assert_eq!(cases.len(), rows.len());
            for (case, row) in cases.iter().zip(&rows) {
                prop_assert_eq!(&case.input["a"], &json!(row[0]));
                prop_assert_eq!(&case.input["b"], &json!(row[1]));
            }
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse_dataset(&text, DatasetFormat::Csv);
            let _ = parse_dataset(&text, DatasetFormat::Jsonl);
        }
    }
}
