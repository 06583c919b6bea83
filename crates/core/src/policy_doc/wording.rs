//! How the policy writes values as words: lists, numbers, percentages and the names of PII
//! kinds and actions.

use super::Text;
use crate::pii::PiiKind;
use crate::spec::{DataClass, ExternalAction};

pub(super) fn pii_kind(kind: PiiKind) -> Text {
    let words = match kind {
        PiiKind::Email => "email addresses",
        PiiKind::Phone => "phone numbers",
        PiiKind::Card => "payment card numbers, Luhn-checked",
        PiiKind::Iban => "IBANs, checksum-checked",
        PiiKind::Ssn => "US social security numbers",
        PiiKind::Ip => "IP addresses",
        PiiKind::Secret => "secrets: API keys, tokens and private keys",
    };
    Text::new()
        .plain(format!("{words} ("))
        .code(kind.as_str())
        .plain(")")
}

pub(super) fn external_action(action: ExternalAction) -> &'static str {
    match action {
        ExternalAction::Redact => "redact",
        ExternalAction::Block => "block",
        ExternalAction::Allow => "allow",
    }
}

pub(super) fn class_list(classes: &[DataClass]) -> String {
    if classes.is_empty() {
        return "nothing".into();
    }
    classes
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn code_list<'a>(names: impl Iterator<Item = &'a str>, empty: &str) -> Text {
    let mut text = Text::new();
    for (i, name) in names.enumerate() {
        if i > 0 {
            text = text.plain(", ");
        }
        text = text.code(name);
    }
    if text.0.is_empty() {
        text = text.plain(empty);
    }
    text
}

pub(super) fn join_or<'a>(names: impl Iterator<Item = &'a str>, empty: &str) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        empty.to_string()
    } else {
        names.join(", ")
    }
}

/// A number as a person writes it: `0.5`, `42`, `0.15`.
pub(super) fn number(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

pub(super) fn percent(rate: f64) -> String {
    format!("{}%", number(rate * 100.0))
}

pub(super) fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
