//! Who may do what: the roles an API key carries and the permissions each grants.
//!
//! One table ([`Role::allows`]) decides access for the server's routes, the CLI's key
//! management and the rendered AI usage policy, so the policy a person reads is the one enforced.

crate::text_enum! {
    /// The role an API key (and so its holder) has.
    #[derive(PartialOrd, Ord)]
    pub enum Role {
        /// Everything, including keys and promotions.
        Admin => "admin",
        /// Builds workflows: runs them, runs evals, sets baselines, reads runs.
        Builder => "builder",
        /// Reviews held and sampled outputs; reads runs.
        Reviewer => "reviewer",
        /// A business system or person using workflows and models.
        Operator => "operator",
        /// Reads runs, evals and figures; changes nothing.
        Viewer => "viewer",
    }
}

crate::text_enum! {
    /// One thing a caller may be allowed to do; `ALL` is the order the policy lists them.
    pub enum Permission {
        /// Call models through the OpenAI-compatible gateway.
        CallModels => "call_models",
        /// Run workflows, one input or a batch.
        RunWorkflows => "run_workflows",
        /// Read runs, batches, evals and metrics.
        ReadRuns => "read_runs",
        /// Approve, reject or correct outputs in the review queue.
        Review => "review",
        /// Run evals and set baselines.
        ManageEvals => "manage_evals",
        /// Move a workflow between lifecycle stages.
        Promote => "promote",
        /// Create and revoke API keys.
        ManageKeys => "manage_keys",
    }
}

impl Permission {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &(name, role) in Role::CHOICES {
            assert_eq!(Role::parse(name), Some(role));
            assert_eq!(role.as_str(), name);
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn only_admin_manages_keys_and_promotes() {
        for &(_, role) in Role::CHOICES {
            assert_eq!(role.allows(Permission::ManageKeys), role == Role::Admin);
            assert_eq!(role.allows(Permission::Promote), role == Role::Admin);
        }
    }

    #[test]
    fn viewer_only_reads_and_operator_never_reads_runs() {
        let granted = |role: Role| -> Vec<Permission> {
            Permission::ALL
                .iter()
                .copied()
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
