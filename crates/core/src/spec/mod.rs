//! The project's files as types: `shopfloor.toml` (models) and `workflows/NAME.toml`.
//!
//! Parsing reads spanned TOML and reports every problem with its file, line and field
//! ([`crate::Diagnostic`]); a value of these types that exists is valid.

mod config;
pub mod intake;
mod provider;
mod reader;
mod review;
mod types;
mod validate;
mod workflow;

pub use config::{
    parse_config, ExternalAction, GatewaySpec, ModelSpec, ModelUse, PiiPolicy, Price,
    ProjectConfig, RetentionSpec, ServerSpec, StoreAction,
};
pub use provider::{ProviderFacts, ProviderKind, RequiredField};
pub use reader::Located;

/// The longest timeout a model call may be given: an hour.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
pub use review::{
    ReviewSpec, SlaAction, WebhookSpec, DEFAULT_REJECT_REASONS, DEFAULT_RESERVATION_MINUTES,
};
pub use types::{DataClass, RiskTier, Stage, WorkflowName};
pub use validate::{validate_project, ProjectFiles};
pub use workflow::{
    parse_workflow, EvalSpec, ExampleSelect, ExamplesSpec, JudgeSpec, Outcome, OutputContract,
    OutputSpec, PromptFields, PromptSpec, RouteFields, RouteSpec, VariantSpec, Workflow, CONTROL,
};
