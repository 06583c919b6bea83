//! Small domain types that are valid by construction.

use std::fmt;

use serde::{Deserialize, Serialize};

crate::text_enum! {
    /// A workflow's lifecycle stage.
    #[derive(PartialOrd, Ord)]
    pub enum Stage {
        Draft => "draft",
        Pilot => "pilot",
        Production => "production",
        Retired => "retired",
    }
}

crate::text_enum! {
    /// How much harm a wrong output can do; decides the review path.
    #[derive(PartialOrd, Ord)]
    pub enum RiskTier {
        Low => "low",
        Medium => "medium",
        High => "high",
    }
}

crate::text_enum! {
    /// How sensitive a workflow's data is; decides which models may see it.
    #[derive(PartialOrd, Ord)]
    pub enum DataClass {
        Public => "public",
        Internal => "internal",
        Confidential => "confidential",
        Restricted => "restricted",
    }
}

/// A workflow's name: the file stem of `workflows/NAME.toml`; lowercase letters, digits, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkflowName(String);

impl WorkflowName {
    /// Accepts 1–64 characters of `[a-z0-9_-]`, starting with a letter or digit.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok_start = text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_chars = text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok_start && ok_chars && text.len() <= 64 {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "\"{text}\" is not a valid workflow name: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkflowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_names() {
        assert!(WorkflowName::parse("ticket-triage").is_ok());
        assert!(WorkflowName::parse("a_1").is_ok());
        assert!(WorkflowName::parse("").is_err());
        assert!(WorkflowName::parse("Ticket").is_err());
        assert!(WorkflowName::parse("-x").is_err());
        assert!(WorkflowName::parse("a b").is_err());
    }

    #[test]
    fn enum_names_round_trip() {
        for &(name, stage) in Stage::CHOICES {
            assert_eq!(stage.as_str(), name);
        }
        for &(name, class) in DataClass::CHOICES {
            assert_eq!(DataClass::parse(name), Some(class));
        }
    }
}
