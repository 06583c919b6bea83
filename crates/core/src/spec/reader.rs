//! A reader over a spanned TOML document that collects every problem instead of stopping at
//! the first: type mismatches, missing required keys and unknown keys, each with its line.

use std::cell::RefCell;
use std::ops::Range;

use serde_json::Value as Json;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::{Diagnostic, LineIndex};

/// The file being read and the problems found so far.
pub(crate) struct Source<'t> {
    file: String,
    lines: LineIndex,
    _text: std::marker::PhantomData<&'t str>,
    diagnostics: RefCell<Vec<Diagnostic>>,
}

impl<'t> Source<'t> {
    pub(crate) fn new(file: impl Into<String>, text: &'t str) -> Self {
        Self {
            file: file.into(),
            lines: LineIndex::new(text),
            _text: std::marker::PhantomData,
            diagnostics: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        self.lines.line(span.start)
    }

    /// Record a problem at `span` (or the whole file when `None`).
    pub(crate) fn report(&self, span: Option<&Range<usize>>, field: &str, message: String) {
        let line = span.map(|s| self.line_of(s));
        self.diagnostics
            .borrow_mut()
            .push(Diagnostic::new(&self.file, line, field, message));
    }

    pub(crate) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diagnostics.into_inner()
    }
}

/// A value with the line it was written on, for checks made after reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: Option<usize>,
}

impl<T: serde::Serialize> serde::Serialize for Located<T> {
    // The line is where the value was written, not part of it: hashes and JSON see the value.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T> Located<T> {
    pub fn new(value: T, line: Option<usize>) -> Self {
        Self { value, line }
    }
}

/// A key with its line and the strings of its array.
pub(crate) type NamedStrings = (Located<String>, Vec<Located<String>>);

/// Reads the keys of one table; remembers which keys it was asked for so that
/// [`TableReader::finish`] can name the unknown ones.
pub(crate) struct TableReader<'a, 'i> {
    source: &'a Source<'a>,
    path: String,
    table: &'a DeTable<'i>,
    span: Range<usize>,
    known: RefCell<Vec<&'static str>>,
}

impl<'a, 'i> TableReader<'a, 'i> {
    pub(crate) fn root(source: &'a Source<'a>, table: &'a Spanned<DeTable<'i>>) -> Self {
        Self::new(source, String::new(), table.get_ref(), table.span())
    }

    fn new(
        source: &'a Source<'a>,
        path: String,
        table: &'a DeTable<'i>,
        span: Range<usize>,
    ) -> Self {
        Self {
            source,
            path,
            table,
            span,
            known: RefCell::new(Vec::new()),
        }
    }

    /// The dotted path of `key` inside this table.
    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn source(&self) -> &'a Source<'a> {
        self.source
    }

    fn get(&self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.known.borrow_mut().push(key);
        self.table.get(key)
    }

    /// The line of `key`'s value, if present.
    pub(crate) fn line_of(&self, key: &str) -> Option<usize> {
        self.table.get(key).map(|v| self.source.line_of(&v.span()))
    }

    fn mismatch(&self, key: &str, value: &Spanned<DeValue<'i>>, expected: &str) {
        self.source.report(
            Some(&value.span()),
            &self.field(key),
            format!("expected {expected}, found {}", value.get_ref().type_str()),
        );
    }

    /// Report that a required key is missing.
    pub(crate) fn missing(&self, key: &str, expected: &str) {
        self.source.report(
            Some(&self.span),
            &self.field(key),
            format!("missing; expected {expected}"),
        );
    }

    /// Report a problem with this table as a whole.
    pub(crate) fn report_here(&self, message: String) {
        self.source.report(Some(&self.span), &self.path, message);
    }

    /// Report a problem with the value of `key`.
    pub(crate) fn invalid(&self, key: &str, message: String) {
        let span = self
            .table
            .get(key)
            .map(|v| v.span())
            .unwrap_or_else(|| self.span.clone());
        self.source.report(Some(&span), &self.field(key), message);
    }

    pub(crate) fn string(&self, key: &'static str) -> Option<Located<String>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Located::new(
                s.to_string(),
                Some(self.source.line_of(&value.span())),
            )),
            _ => {
                self.mismatch(key, value, "a string");
                None
            }
        }
    }

    pub(crate) fn required_string(
        &self,
        key: &'static str,
        expected: &str,
    ) -> Option<Located<String>> {
        let present = self.table.contains_key(key);
        let value = self.string(key);
        if !present {
            self.missing(key, expected);
        }
        value
    }

    pub(crate) fn boolean(&self, key: &'static str) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.mismatch(key, value, "true or false");
                None
            }
        }
    }

    /// A number (integer or float) as f64.
    pub(crate) fn number(&self, key: &'static str) -> Option<f64> {
        let value = self.get(key)?;
        match number_of(value.get_ref()) {
            Some(n) if !n.is_finite() => {
                self.invalid(
                    key,
                    "is out of range; expected a finite number (at most about 1.8e308)".into(),
                );
                None
            }
            Some(n) => Some(n),
            None => {
                self.mismatch(key, value, "a number");
                None
            }
        }
    }

    /// A non-negative integer.
    pub(crate) fn unsigned(&self, key: &'static str) -> Option<u64> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Integer(i) => {
                match u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        let expected = if i.as_str().starts_with('-') {
                            "a non-negative integer".to_string()
                        } else {
                            format!("a non-negative integer of at most {}", u64::MAX)
                        };
                        self.mismatch(key, value, &expected);
                        None
                    }
                }
            }
            _ => {
                self.mismatch(key, value, "a non-negative integer");
                None
            }
        }
    }

    /// A non-negative integer of at most `max`.
    pub(crate) fn unsigned_at_most(&self, key: &'static str, max: u64) -> Option<u64> {
        let n = self.unsigned(key)?;
        if n > max {
            self.invalid(key, format!("{n} is too large; expected at most {max}"));
            return None;
        }
        Some(n)
    }

    /// An array of strings, each with its line.
    pub(crate) fn strings(&self, key: &'static str) -> Option<Vec<Located<String>>> {
        let value = self.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.mismatch(key, value, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Located::new(
                    s.to_string(),
                    Some(self.source.line_of(&item.span())),
                )),
                _ => self.mismatch(key, item, "a string"),
            }
        }
        Some(out)
    }

    /// A string that must be one of `choices`.
    pub(crate) fn choice<T: Copy>(&self, key: &'static str, choices: &[(&str, T)]) -> Option<T> {
        let text = self.string(key)?;
        match choices.iter().find(|(name, _)| *name == text.value) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.invalid(
                    key,
                    format!("\"{}\" is not one of: {}", text.value, names.join(", ")),
                );
                None
            }
        }
    }

    /// A sub-table.
    pub(crate) fn table(&self, key: &'static str) -> Option<TableReader<'a, 'i>> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Table(t) => Some(TableReader::new(
                self.source,
                self.field(key),
                t,
                value.span(),
            )),
            _ => {
                self.mismatch(key, value, "a table");
                None
            }
        }
    }

    /// The entries of the table at `key`, each key with its line; anything but a table is
    /// reported as not being `expected`.
    fn keyed(
        &self,
        key: &'static str,
        expected: &str,
    ) -> Option<Vec<(Located<String>, &'a Spanned<DeValue<'i>>)>> {
        let value = self.get(key)?;
        let DeValue::Table(t) = value.get_ref() else {
            self.mismatch(key, value, expected);
            return None;
        };
        let entries = t.iter().map(|(k, v)| {
            let line = self.source.line_of(&k.span());
            (Located::new(k.get_ref().to_string(), Some(line)), v)
        });
        Some(entries.collect())
    }

    /// A table of numbers (`gate = { label_accuracy = 0.8 }`), each with its line.
    pub(crate) fn numbers(&self, key: &'static str) -> Option<Vec<(Located<String>, f64)>> {
        let entries = self.keyed(key, "a table of numbers, e.g. { label_accuracy = 0.8 }")?;
        let mut out = Vec::new();
        for (name, v) in entries {
            match number_of(v.get_ref()) {
                Some(n) => out.push((name, n)),
                None => self.source.report(
                    Some(&v.span()),
                    &format!("{}.{}", self.field(key), name.value),
                    format!("expected a number, found {}", v.get_ref().type_str()),
                ),
            }
        }
        Some(out)
    }

    /// A table of string arrays (`fallbacks = { gpt = ["local"] }`): each key with its line
    /// and its strings.
    pub(crate) fn string_lists(&self, key: &'static str) -> Option<Vec<NamedStrings>> {
        let entries = self.keyed(
            key,
            "a table of string arrays, e.g. { gpt-mini = [\"local\"] }",
        )?;
        let mut out = Vec::new();
        for (name, v) in entries {
            let field = format!("{}.{}", self.field(key), name.value);
            let DeValue::Array(items) = v.get_ref() else {
                self.source.report(
                    Some(&v.span()),
                    &field,
                    format!(
                        "expected an array of strings, found {}",
                        v.get_ref().type_str()
                    ),
                );
                continue;
            };
            let mut strings = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(s) => strings.push(Located::new(
                        s.to_string(),
                        Some(self.source.line_of(&item.span())),
                    )),
                    other => self.source.report(
                        Some(&item.span()),
                        &field,
                        format!("expected a string, found {}", other.type_str()),
                    ),
                }
            }
            out.push((name, strings));
        }
        Some(out)
    }

    /// Every entry of this table as a sub-table (for `[models.NAME]`); marks all keys known.
    pub(crate) fn entries(&self) -> Vec<(Located<String>, Option<TableReader<'a, 'i>>)> {
        let mut out = Vec::new();
        for (key, value) in self.table.iter() {
            let name = Located::new(
                key.get_ref().to_string(),
                Some(self.source.line_of(&key.span())),
            );
            let reader = match value.get_ref() {
                DeValue::Table(t) => Some(TableReader::new(
                    self.source,
                    self.field(&name.value),
                    t,
                    value.span(),
                )),
                _ => {
                    self.mismatch(&name.value, value, "a table");
                    None
                }
            };
            out.push((name, reader));
        }
        self.known.borrow_mut().push("*");
        out
    }

    /// Any value, converted to JSON (for JSON Schemas written as TOML).
    pub(crate) fn json(&self, key: &'static str) -> Option<Json> {
        let value = self.get(key)?;
        match to_json(value.get_ref()) {
            Ok(json) => Some(json),
            Err(message) => {
                self.invalid(key, message);
                None
            }
        }
    }

    /// Report every key of this table that no accessor asked for.
    pub(crate) fn finish(self) {
        let known = self.known.borrow().clone();
        if known.contains(&"*") {
            return;
        }
        for (key, _) in self.table.iter() {
            if !known.contains(&key.get_ref().as_ref()) {
                let mut expected: Vec<&str> = known.clone();
                expected.sort_unstable();
                expected.dedup();
                self.source.report(
                    Some(&key.span()),
                    &self.field(key.get_ref()),
                    format!("unknown key; expected one of: {}", expected.join(", ")),
                );
            }
        }
    }
}

fn number_of(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
            .ok()
            .map(|n| n as f64),
        DeValue::Float(f) => f.as_str().replace('_', "").parse().ok(),
        _ => None,
    }
}

/// Convert a TOML value to JSON. Datetimes become strings.
pub(crate) fn to_json(value: &DeValue<'_>) -> Result<Json, String> {
    Ok(match value {
        DeValue::String(s) => Json::String(s.to_string()),
        DeValue::Integer(i) => {
            let n = i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                .map_err(|_| format!("integer {} is out of range", i.as_str()))?;
            Json::from(n)
        }
        DeValue::Float(f) => {
            let n: f64 = f
                .as_str()
                .replace('_', "")
                .parse()
                .map_err(|_| format!("bad float {}", f.as_str()))?;
            serde_json::Number::from_f64(n)
                .map(Json::Number)
                .ok_or_else(|| format!("{} cannot be represented in JSON", f.as_str()))?
        }
        DeValue::Boolean(b) => Json::Bool(*b),
        DeValue::Datetime(d) => Json::String(d.to_string()),
        DeValue::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| to_json(v.get_ref()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => {
            let mut map = serde_json::Map::new();
            for (k, v) in t.iter() {
                map.insert(k.get_ref().to_string(), to_json(v.get_ref())?);
            }
            Json::Object(map)
        }
    })
}

/// Parse TOML text into a spanned table, reporting a syntax error with its line.
pub(crate) fn parse<'t>(source: &Source<'_>, text: &'t str) -> Option<Spanned<DeTable<'t>>> {
    match DeTable::parse(text) {
        Ok(table) => Some(table),
        Err(e) => {
            source.report(
                e.span().as_ref(),
                "",
                format!("invalid TOML: {}", e.message().trim()),
            );
            None
        }
    }
}
