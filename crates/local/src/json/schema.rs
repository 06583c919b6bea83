//! JSON Schema → NFA: the language of compact JSON texts that match the schema.
//!
//! A schema without recursion describes a regular language, so it compiles to a finite
//! automaton. What the automaton cannot promise it refuses by name ([`SchemaError`]) rather
//! than generating answers that would then fail validation. Whitespace: none, except one
//! optional space after `:` and `,`, the way the model tends to write JSON.
//!
//! Object properties are written in a fixed order: the `required` keys in the order that
//! array lists them, then the optional ones in key order (a parsed schema keeps its
//! properties sorted, so `required` is the only order the author's schema still carries).
//! Optional properties may be left out; no undeclared key is ever written, which satisfies
//! `additionalProperties: false` and every other `additionalProperties` alike.

use serde_json::{Map, Value as Json};

use super::automaton::Nfa;
use super::keywords::{count, implied_types, only_beside, types, JsonType, ANNOTATIONS, ENFORCED};
use super::SchemaError;

/// Nesting of an unconstrained value (`{}`, `json_object`): deeper JSON is not generated.
const ANY_DEPTH: usize = 3;
/// Digits before the decimal point; keeps numbers within what f64 and i64 hold exactly.
const INTEGER_DIGITS: usize = 15;
/// Digits after the decimal point.
const FRACTION_DIGITS: usize = 6;
/// The most `$ref`s followed inside one another before a schema counts as recursive.
const MAX_REF_DEPTH: usize = 16;
/// The largest `minLength`, `maxLength`, `minItems` or `maxItems` that is unrolled.
pub(super) const MAX_COUNT: u64 = 256;

/// Compiles one schema into an [`Nfa`]; `root` resolves `$ref`s.
pub(crate) struct Compiler<'a> {
    pub(crate) nfa: Nfa,
    root: &'a Json,
    refs: usize,
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(root: &'a Json) -> Self {
        Self {
            nfa: Nfa::default(),
            root,
            refs: 0,
        }
    }

    /// Add the texts `schema` accepts, read from `from`; returns the state after one.
    pub(crate) fn value(
        &mut self,
        schema: &'a Json,
        path: &str,
        from: u32,
    ) -> Result<u32, SchemaError> {
        let object = match schema {
            Json::Bool(true) => return self.any(from, ANY_DEPTH),
            Json::Bool(false) => {
                return Err(SchemaError::at(path, "`false` accepts no value at all"))
            }
            Json::Object(object) => object,
            _ => {
                return Err(SchemaError::at(
                    path,
                    "a schema must be an object or a boolean",
                ))
            }
        };
        for key in object.keys() {
            if !ANNOTATIONS.contains(&key.as_str()) && !ENFORCED.contains(&key.as_str()) {
                return Err(SchemaError::at(
                    path,
                    format!("the keyword `{key}` cannot be enforced while decoding"),
                ));
            }
        }
        if let Some(reference) = object.get("$ref") {
            only_beside(object, "$ref", path)?;
            return self.reference(reference, path, from);
        }
        if let Some(all) = object.get("allOf") {
            only_beside(object, "allOf", path)?;
            return match all.as_array().map(Vec::as_slice) {
                Some([one]) => self.value(one, &format!("{path}/allOf/0"), from),
                _ => Err(SchemaError::at(
                    path,
                    "`allOf` is enforced only with a single schema in it",
                )),
            };
        }
        if let Some(any) = object.get("anyOf") {
            only_beside(object, "anyOf", path)?;
            let branches = any
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| SchemaError::at(path, "`anyOf` must be a non-empty array"))?;
            let end = self.nfa.state()?;
            for (i, branch) in branches.iter().enumerate() {
                let branch_end = self.value(branch, &format!("{path}/anyOf/{i}"), from)?;
                self.nfa.join(branch_end, end);
            }
            return Ok(end);
        }
        let types = types(object, path)?;
        if let Some(values) = object.get("enum") {
            let values = values
                .as_array()
                .ok_or_else(|| SchemaError::at(path, "`enum` must be an array"))?;
            return self.one_of_values(values, types.as_deref(), path, from);
        }
        if let Some(value) = object.get("const") {
            return self.one_of_values(std::slice::from_ref(value), types.as_deref(), path, from);
        }
        let types = types.unwrap_or_else(|| implied_types(object));
        let end = self.nfa.state()?;
        for ty in types {
            let branch_end = match ty {
                JsonType::Null => self.nfa.literal(from, b"null")?,
                JsonType::Boolean => self.boolean(from)?,
                JsonType::Integer => self.number(object, path, from, false)?,
                JsonType::Number => self.number(object, path, from, true)?,
                JsonType::String => self.string(object, path, from)?,
                JsonType::Array => self.array(object, path, from)?,
                JsonType::Object => self.object(object, path, from)?,
            };
            self.nfa.join(branch_end, end);
        }
        Ok(end)
    }

    fn reference(
        &mut self,
        reference: &'a Json,
        path: &str,
        from: u32,
    ) -> Result<u32, SchemaError> {
        let pointer = reference
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .ok_or_else(|| {
                SchemaError::at(
                    path,
                    "only `$ref`s within the schema (`#/...`) are followed",
                )
            })?;
        let target = self
            .root
            .pointer(pointer)
            .ok_or_else(|| SchemaError::at(path, format!("`$ref` #{pointer} points nowhere")))?;
        self.refs += 1;
        if self.refs > MAX_REF_DEPTH {
            return Err(SchemaError::at(
                path,
                "the schema is recursive (`$ref` inside itself); only finite nesting can be enforced",
            ));
        }
        let end = self.value(target, &format!("#{pointer}"), from);
        self.refs -= 1;
        end
    }

    fn one_of_values(
        &mut self,
        values: &[Json],
        types: Option<&[JsonType]>,
        path: &str,
        from: u32,
    ) -> Result<u32, SchemaError> {
        let end = self.nfa.state()?;
        let mut any = false;
        for value in values {
            if types.is_some_and(|t| !t.iter().any(|t| t.matches(value))) {
                continue;
            }
            let text = serde_json::to_string(value)
                .map_err(|e| SchemaError::at(path, format!("cannot write an enum value: {e}")))?;
            let value_end = self.nfa.literal(from, text.as_bytes())?;
            self.nfa.join(value_end, end);
            any = true;
        }
        if !any {
            return Err(SchemaError::at(
                path,
                "no value of `enum`/`const` has the schema's type",
            ));
        }
        Ok(end)
    }

    fn boolean(&mut self, from: u32) -> Result<u32, SchemaError> {
        let end = self.nfa.state()?;
        for word in [&b"true"[..], b"false"] {
            let word_end = self.nfa.literal(from, word)?;
            self.nfa.join(word_end, end);
        }
        Ok(end)
    }

    /// `-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?`, the fraction only for `number`; no exponent.
    fn number(
        &mut self,
        object: &Map<String, Json>,
        path: &str,
        from: u32,
        fraction: bool,
    ) -> Result<u32, SchemaError> {
        let signed = match object.get("minimum") {
            None => true,
            Some(m) if m.as_f64() == Some(0.0) => false,
            Some(_) => {
                return Err(SchemaError::at(
                    path,
                    "`minimum` is enforced only as 0 (no negative numbers)",
                ))
            }
        };
        let digits_start = if signed {
            let after_minus = self.nfa.state()?;
            self.nfa.range(from, b'-', b'-', after_minus);
            self.nfa.join(from, after_minus);
            after_minus
        } else {
            from
        };
        let whole = self.nfa.state()?;
        self.nfa.range(digits_start, b'0', b'0', whole);
        let mut at = self.nfa.then_range(digits_start, b'1', b'9')?;
        self.nfa.join(at, whole);
        for _ in 1..INTEGER_DIGITS {
            at = self.nfa.then_range(at, b'0', b'9')?;
            self.nfa.join(at, whole);
        }
        if !fraction {
            return Ok(whole);
        }
        let end = self.nfa.state()?;
        self.nfa.join(whole, end);
        let mut at = self.nfa.literal(whole, b".")?;
        for _ in 0..FRACTION_DIGITS {
            at = self.nfa.then_range(at, b'0', b'9')?;
            self.nfa.join(at, end);
        }
        Ok(end)
    }

    fn string(
        &mut self,
        object: &Map<String, Json>,
        path: &str,
        from: u32,
    ) -> Result<u32, SchemaError> {
        let min = count(object, "minLength", path)?.unwrap_or(0);
        let max = count(object, "maxLength", path)?;
        if max.is_some_and(|max| max < min) {
            return Err(SchemaError::at(path, "`maxLength` is below `minLength`"));
        }
        let open = self.nfa.literal(from, b"\"")?;
        let mut at = open;
        for _ in 0..min {
            at = self.character(at)?;
        }
        let content_end = self.nfa.state()?;
        self.nfa.join(at, content_end);
        match max {
            Some(max) => {
                for _ in min..max {
                    at = self.character(at)?;
                    self.nfa.join(at, content_end);
                }
            }
            None => {
                let again = self.character(at)?;
                self.nfa.join(again, at);
            }
        }
        self.nfa.literal(content_end, b"\"")
    }

    /// One character of a string's content: a UTF-8 sequence or an escape.
    fn character(&mut self, from: u32) -> Result<u32, SchemaError> {
        let end = self.nfa.state()?;
        let nfa = &mut self.nfa;
        // Printable ASCII but the quote and the backslash; no control characters.
        nfa.range(from, 0x20, 0x21, end);
        nfa.range(from, 0x23, 0x5B, end);
        nfa.range(from, 0x5D, 0x7F, end);
        // Well-formed UTF-8 only (no overlongs, no surrogates).
        let tail1 = nfa.state()?;
        nfa.range(tail1, 0x80, 0xBF, end);
        let tail2 = nfa.state()?;
        nfa.range(tail2, 0x80, 0xBF, tail1);
        let tail3 = nfa.state()?;
        nfa.range(tail3, 0x80, 0xBF, tail2);
        nfa.range(from, 0xC2, 0xDF, tail1);
        let e0 = nfa.then_range(from, 0xE0, 0xE0)?;
        nfa.range(e0, 0xA0, 0xBF, tail1);
        nfa.range(from, 0xE1, 0xEC, tail2);
        let ed = nfa.then_range(from, 0xED, 0xED)?;
        nfa.range(ed, 0x80, 0x9F, tail1);
        nfa.range(from, 0xEE, 0xEF, tail2);
        let f0 = nfa.then_range(from, 0xF0, 0xF0)?;
        nfa.range(f0, 0x90, 0xBF, tail2);
        nfa.range(from, 0xF1, 0xF3, tail3);
        let f4 = nfa.then_range(from, 0xF4, 0xF4)?;
        nfa.range(f4, 0x80, 0x8F, tail2);
        // Escapes; `\u` only outside the surrogate range D800–DFFF, which would need a pair.
        let escape = nfa.then_range(from, b'\\', b'\\')?;
        for &b in b"\"\\/bfnrt" {
            nfa.range(escape, b, b, end);
        }
        let u = nfa.then_range(escape, b'u', b'u')?;
        let hex3 = nfa.state()?;
        nfa.range(u, b'0', b'9', hex3);
        nfa.range(u, b'a', b'c', hex3);
        nfa.range(u, b'A', b'C', hex3);
        nfa.range(u, b'e', b'f', hex3);
        nfa.range(u, b'E', b'F', hex3);
        let mut at = hex3;
        for _ in 0..3 {
            let next = nfa.state()?;
            hex_digit(nfa, at, next);
            at = next;
        }
        nfa.join(at, end);
        Ok(end)
    }

    fn array(
        &mut self,
        object: &'a Map<String, Json>,
        path: &str,
        from: u32,
    ) -> Result<u32, SchemaError> {
        static ANY: Json = Json::Bool(true);
        let items = object.get("items").unwrap_or(&ANY);
        let items_path = format!("{path}/items");
        let min = count(object, "minItems", path)?.unwrap_or(0);
        let max = count(object, "maxItems", path)?;
        if max.is_some_and(|max| max < min) {
            return Err(SchemaError::at(path, "`maxItems` is below `minItems`"));
        }
        let open = self.nfa.literal(from, b"[")?;
        let end = self.nfa.state()?;
        let close = |c: &mut Self, at: u32| -> Result<(), SchemaError> {
            let closed = c.nfa.literal(at, b"]")?;
            c.nfa.join(closed, end);
            Ok(())
        };
        if min == 0 {
            close(self, open)?;
        }
        let mut at = open;
        for i in 0..min {
            let item_start = if i == 0 {
                at
            } else {
                self.separator(at, b',')?
            };
            at = self.value(items, &items_path, item_start)?;
        }
        if min > 0 {
            close(self, at)?;
        }
        match max {
            Some(max) => {
                for i in min..max {
                    let item_start = if i == 0 {
                        at
                    } else {
                        self.separator(at, b',')?
                    };
                    at = self.value(items, &items_path, item_start)?;
                    close(self, at)?;
                }
            }
            None => {
                let after_item = if min == 0 {
                    let first = self.value(items, &items_path, open)?;
                    close(self, first)?;
                    first
                } else {
                    at
                };
                let comma = self.separator(after_item, b',')?;
                let another = self.value(items, &items_path, comma)?;
                self.nfa.join(another, after_item);
            }
        }
        Ok(end)
    }

    fn object(
        &mut self,
        object: &'a Map<String, Json>,
        path: &str,
        from: u32,
    ) -> Result<u32, SchemaError> {
        static ANY: Json = Json::Bool(true);
        let declared = match object.get("properties") {
            None => None,
            Some(Json::Object(p)) => Some(p),
            Some(_) => return Err(SchemaError::at(path, "`properties` must be an object")),
        };
        let required: Vec<&str> = match object.get("required") {
            None => Vec::new(),
            Some(Json::Array(r)) => r
                .iter()
                .map(|k| {
                    k.as_str()
                        .ok_or_else(|| SchemaError::at(path, "`required` must list strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(SchemaError::at(path, "`required` must be an array")),
        };
        let additional = object.get("additionalProperties");
        let closed = matches!(additional, Some(Json::Bool(false)));
        if declared.is_none() && required.is_empty() {
            // No declared keys: any keys, each with `additionalProperties`' values.
            return match additional {
                Some(Json::Bool(false)) => self.nfa.literal(from, b"{}"),
                Some(schema @ Json::Object(_)) => {
                    self.open_object(schema, &format!("{path}/additionalProperties"), from)
                }
                _ => self.any_object(from, ANY_DEPTH),
            };
        }
        // (key, schema, required), required keys first in their listed order.
        let mut members: Vec<(&str, &'a Json, bool)> = Vec::new();
        for key in &required {
            if members.iter().any(|m| m.0 == *key) {
                continue;
            }
            let schema = match declared.and_then(|d| d.get(*key)) {
                Some(schema) => schema,
                None if closed => {
                    return Err(SchemaError::at(
                        path,
                        format!("`{key}` is required but `additionalProperties: false` forbids it"),
                    ))
                }
                None => additional.filter(|a| a.is_object()).unwrap_or(&ANY),
            };
            members.push((key, schema, true));
        }
        for (key, schema) in declared.into_iter().flatten() {
            if !required.contains(&key.as_str()) {
                members.push((key, schema, false));
            }
        }
        let open = self.nfa.literal(from, b"{")?;
        let end = self.nfa.state()?;
        // after[i][e]: members before i decided; e = whether any was written (a comma is due).
        let n = members.len();
        let mut after = Vec::with_capacity(n + 1);
        for _ in 0..=n {
            after.push([self.nfa.state()?, self.nfa.state()?]);
        }
        self.nfa.join(open, after[0][0]);
        // Each member's key and value is built once; both ways in (with or without a comma) join it.
        let mut member_start = Vec::with_capacity(n);
        for (j, (key, schema, _)) in members.iter().enumerate() {
            let start = self.nfa.state()?;
            let key_text = serde_json::to_string(key)
                .map_err(|e| SchemaError::at(path, format!("cannot write key {key:?}: {e}")))?;
            let key_end = self.nfa.literal(start, key_text.as_bytes())?;
            let value_start = self.separator(key_end, b':')?;
            let value_path = format!("{path}/properties/{key}");
            let value_end = self.value(schema, &value_path, value_start)?;
            self.nfa.join(value_end, after[j + 1][1]);
            member_start.push(start);
        }
        for i in 0..=n {
            for written in [false, true] {
                let at = after[i][usize::from(written)];
                if members[i..].iter().all(|m| !m.2) {
                    let closed = self.nfa.literal(at, b"}")?;
                    self.nfa.join(closed, end);
                }
                let comma = if written && i < n {
                    Some(self.separator(at, b',')?)
                } else {
                    None
                };
                for j in i..n {
                    match comma {
                        Some(c) => self.nfa.join(c, member_start[j]),
                        None => self.nfa.join(at, member_start[j]),
                    }
                    if members[j].2 {
                        break; // A required member cannot be skipped.
                    }
                }
            }
        }
        Ok(end)
    }

    /// `{}` or `{"k":v,...}` with any string keys and `values`' values.
    fn open_object(&mut self, values: &'a Json, path: &str, from: u32) -> Result<u32, SchemaError> {
        let open = self.nfa.literal(from, b"{")?;
        let end = self.nfa.state()?;
        let empty = self.nfa.literal(open, b"}")?;
        self.nfa.join(empty, end);
        let member = self.nfa.state()?;
        self.nfa.join(open, member);
        let key_end = self.string(&Map::new(), path, member)?;
        let value_start = self.separator(key_end, b':')?;
        let value_end = self.value(values, path, value_start)?;
        let closed = self.nfa.literal(value_end, b"}")?;
        self.nfa.join(closed, end);
        let comma = self.separator(value_end, b',')?;
        self.nfa.join(comma, member);
        Ok(end)
    }

    /// Any JSON value nested at most `depth` deep.
    fn any(&mut self, from: u32, depth: usize) -> Result<u32, SchemaError> {
        let end = self.nfa.state()?;
        let scalars = [
            self.nfa.literal(from, b"null")?,
            self.boolean(from)?,
            self.number(&Map::new(), "", from, true)?,
            self.string(&Map::new(), "", from)?,
        ];
        for s in scalars {
            self.nfa.join(s, end);
        }
        if depth > 0 {
            let object_end = self.any_object(from, depth)?;
            self.nfa.join(object_end, end);
            let array_end = self.any_array(from, depth)?;
            self.nfa.join(array_end, end);
        }
        Ok(end)
    }

    /// Any JSON object whose values nest at most `depth - 1` deep.
    pub(crate) fn any_object(&mut self, from: u32, depth: usize) -> Result<u32, SchemaError> {
        let open = self.nfa.literal(from, b"{")?;
        let end = self.nfa.state()?;
        let empty = self.nfa.literal(open, b"}")?;
        self.nfa.join(empty, end);
        let member = self.nfa.state()?;
        self.nfa.join(open, member);
        let key_end = self.string(&Map::new(), "", member)?;
        let value_start = self.separator(key_end, b':')?;
        let value_end = self.any(value_start, depth - 1)?;
        let closed = self.nfa.literal(value_end, b"}")?;
        self.nfa.join(closed, end);
        let comma = self.separator(value_end, b',')?;
        self.nfa.join(comma, member);
        Ok(end)
    }

    fn any_array(&mut self, from: u32, depth: usize) -> Result<u32, SchemaError> {
        let open = self.nfa.literal(from, b"[")?;
        let end = self.nfa.state()?;
        let empty = self.nfa.literal(open, b"]")?;
        self.nfa.join(empty, end);
        let item = self.nfa.state()?;
        self.nfa.join(open, item);
        let item_end = self.any(item, depth - 1)?;
        let closed = self.nfa.literal(item_end, b"]")?;
        self.nfa.join(closed, end);
        let comma = self.separator(item_end, b',')?;
        self.nfa.join(comma, item);
        Ok(end)
    }

    /// `byte`, then at most one space.
    fn separator(&mut self, from: u32, byte: u8) -> Result<u32, SchemaError> {
        let after = self.nfa.literal(from, &[byte])?;
        let end = self.nfa.literal(after, b" ")?;
        self.nfa.join(after, end);
        Ok(end)
    }
}

fn hex_digit(nfa: &mut Nfa, from: u32, to: u32) {
    nfa.range(from, b'0', b'9', to);
    nfa.range(from, b'a', b'f', to);
    nfa.range(from, b'A', b'F', to);
}
