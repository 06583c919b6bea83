//! Who may do what: the roles an API key carries and the permissions each grants.
//!
//! One table ([`Role::allows`]) decides access for the server's routes, the CLI's key
//! management and the rendered AI usage policy, so the policy a person reads is the one enforced.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The role an API key (and so its holder) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including keys and promotions.
    Admin,
    /// Builds workflows: runs them, runs evals, sets baselines, reads runs.
    Builder,
    /// Reviews held and sampled outputs; reads runs.
    Reviewer,
    /// A business system or person using workflows and models.
    Operator,
    /// Reads runs, evals and figures; changes nothing.
    Viewer,
}

/// One thing a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Call models through the OpenAI-compatible gateway.
    CallModels,
    /// Run workflows, one input or a batch.
    RunWorkflows,
    /// Read runs, batches, evals and metrics.
    ReadRuns,
    /// Approve, reject or correct outputs in the review queue.
    Review,
    /// Run evals and set baselines.
    ManageEvals,
    /// Move a workflow between lifecycle stages.
    Promote,
    /// Create and revoke API keys.
    ManageKeys,
}

impl Permission {
    /// Every permission, in the order the policy lists them.
    pub const ALL: [Permission; 7] = [
        Permission::CallModels,
        Permission::RunWorkflows,
        Permission::ReadRuns,
        Permission::Review,
        Permission::ManageEvals,
        Permission::Promote,
        Permission::ManageKeys,
    ];

    /// What the permission lets a person do, in words for the policy document.
    pub fn describe(self) -> &'static str {
        match self {
            Permission::CallModels => "call models through the gateway",
            Permission::RunWorkflows => "run workflows",
            Permission::ReadRuns => "read runs, batches, evals and metrics",
            Permission::Review => "review held and sampled outputs",
            Permission::ManageEvals => "run evals and set baselines",
            Permission::Promote => "promote workflows between stages",
            Permission::ManageKeys => "create and revoke API keys",
        }
    }
}

impl Role {
    pub const CHOICES: [(&'static str, Role); 5] = [
        ("admin", Role::Admin),
        ("builder", Role::Builder),
        ("reviewer", Role::Reviewer),
        ("operator", Role::Operator),
        ("viewer", Role::Viewer),
    ];

    pub fn as_str(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("viewer")
    }

    /// The inverse of [`Role::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::CHOICES
            .iter()
            .find(|(n, _)| *n == text)
            .map(|(_, r)| *r)
    }

    /// The role matrix.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Builder => matches!(
                permission,
                CallModels | RunWorkflows | ReadRuns | ManageEvals
            ),
            Role::Reviewer => matches!(permission, ReadRuns | Review),
            Role::Operator => matches!(permission, CallModels | RunWorkflows),
            Role::Viewer => matches!(permission, ReadRuns),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (name, role) in Role::CHOICES {
            assert_eq!(Role::parse(name), Some(role));
            assert_eq!(role.as_str(), name);
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn only_admin_manages_keys_and_promotes() {
        for (_, role) in Role::CHOICES {
            assert_eq!(role.allows(Permission::ManageKeys), role == Role::Admin);
            assert_eq!(role.allows(Permission::Promote), role == Role::Admin);
        }
    }

    #[test]
    fn viewer_only_reads_and_operator_never_reads_runs() {
        let granted = |role: Role| -> Vec<Permission> {
            Permission::ALL
                .into_iter()
                .filter(|p| role.allows(*p))
                .collect()
        };
        assert_eq!(granted(Role::Viewer), vec![Permission::ReadRuns]);
        assert_eq!(
            granted(Role::Operator),
            vec![Permission::CallModels, Permission::RunWorkflows]
        );
        assert_eq!(granted(Role::Admin).len(), Permission::ALL.len());
    }
}
