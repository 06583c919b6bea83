//! The only place that combines the layers: a workflow run is policy → render → route with
//! retries and fallbacks → parse and validate → record. The CLI and the server are thin
//! shells over [`Engine`].

mod attempt;
mod audit_detail;
mod batch;
mod concurrency;
mod corrections;
mod drift;
mod eval;
mod examples;
mod experiments;
mod gateway;
mod governance;
mod models;
mod outbound;
mod outcomes;
mod pipeline;
mod portfolio;
mod project;
mod queue;
mod reads;
mod recorder;
mod redaction;
mod retention;
mod review;
mod runner;
mod runs;
mod sessions;
pub mod trace;
mod variants;
mod visibility;
mod webhooks;
mod weekly;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shopfloor_core::Diagnostic;
use shopfloor_store::{RunRecord, Store, StoreError};

/// The store's data types, as the engine's callers (the server, the CLI) see them: records and
/// filters, never the store itself, so that every read and write goes through the engine.
pub mod store_types {
    pub use shopfloor_store::{
        ApiKeyRecord, AuditAction, AuditAnchor, Caller, ClaimedCase, DeliveryState, ErrorKind,
        EvalCaseRecord, EvalRecord, EventFilter, IdempotencyClaim, IdempotencyRequest, KeptAnswer,
        OutboxEvent, ReviewCount, ReviewFilter, ReviewItem, RunFilter, RunOrigin, RunRecord,
        RunStatus, RunSummary,
    };
}

/// The request and answer model of a model call, which the gateway's wire formats (OpenAI's
/// chat and Responses, Anthropic's Messages) fill and read.
pub mod chat {
    /// OpenAI's Chat Completions answers on the wire, as the `openai` provider reads them.
    pub use shopfloor_providers::openai::wire as openai;
    pub use shopfloor_providers::{
        ChatExtras, ChatRequest, FinishReason, Image, Message, Part, ResponseFormat, Role, Tool,
        ToolCall, ToolCallDelta, ToolChoice, Usage,
    };
}

pub use attempt::{failure_kind, kind_of, CallFailure, RetryPolicy};
pub use batch::{read_cases, validate_input, BatchObserver, BatchReport, BatchRequest, Case};
pub use corrections::AddedCases;
pub use drift::{DriftReference, DriftReport, DriftWindow, ReferenceKind, SAMPLE_RUNS};
pub use eval::{
    input_hash, BaselineComparison, EvalObserver, EvalRequest, EvalSummary, ExampleCounts,
    ExamplesSetting, GateKind, GateResult, ScoreDelta, ScoreSummary, WorstCase,
};
pub use examples::{nearest, ExampleSet, SimilarCase, EXAMPLE_ENCODER};
pub use experiments::{
    ExperimentStart, ExperimentStatus, MetricValues, DEFAULT_MIN_RUNS, DEFAULT_SHARE,
};
pub use gateway::{
    has_strict_schema, last_user_text, workflow_input, EmbedAnswer, EmbedOutcome, EmbedRequest,
    GatewayAnswer, GatewayError, GatewayOutcome, GatewayRequest, GatewayStream, RunFacts,
    StreamItem, GATEWAY_WORKFLOW,
};
pub use governance::{generate_key, hash_key, NewKey, Promotion, SYSTEM_ACTOR};
pub use models::ModelPool;
pub use outcomes::{
    DayFigures, KpiStatus, NewKpiValue, OutcomeDay, OutcomeFigures, OutcomeReport, OutcomeWeek,
    VersionDay, VersionWeek,
};
pub use portfolio::{Flagged, HealthFlag, LastEval, PortfolioEntry, Suggestion};
pub use project::{LoadedWorkflow, Project, CONFIG_FILE, WORKFLOWS_DIR};
pub use queue::{BatchProgress, API_SOURCE};
pub use reads::Records;
pub use recorder::{not_recorded, Recorder, RecorderTask};
pub use retention::{RetentionReport, RETENTION_BATCH};
pub use review::{DecisionRequest, ReviewError, ReviewStats, ReviewView, Reviewer, ReviewerStats};
pub use runner::{now_ms, Answer, CallBudget, RunOptions, Runner};
pub use sessions::{LoginLink, NewSession, LOGIN_LINK_MINUTES, SESSION_HOURS};
pub use variants::VariantStatus;
pub use visibility::{released_output, Audience, RunView, Withheld};
pub use webhooks::{DeliveryPass, SweepReport, SLA_REJECT_REASON};

/// The folder under the project that holds the embedded database.
pub const STATE_DIR: &str = ".shopfloor";
/// The embedded database file inside [`STATE_DIR`].
pub const DATABASE_FILE: &str = "shopfloor.db";

/// What went wrong, for callers to match on and show.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "no shopfloor project in {dir} or a folder above it: {CONFIG_FILE} not found (create one with `shopfloor init`)"
    )]
    NoProject { dir: PathBuf },
    #[error("the project has {} problem(s)", .0.len())]
    InvalidProject(Vec<Diagnostic>),
    #[error("unknown workflow \"{name}\"; workflows: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownWorkflow { name: String, known: Vec<String> },
    #[error("unknown model \"{name}\"; models in shopfloor.toml: {}", known.join(", "))]
    UnknownModel { name: String, known: Vec<String> },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A field of a request other than a run's input (a KPI value, its date).
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    #[error("the dataset has invalid cases:\n  {}", .0.join("\n  "))]
    InvalidDataset(Vec<String>),
    #[error("workflow \"{0}\" has no eval dataset: add [eval] dataset = \"datasets/….jsonl\" to its file")]
    NoDataset(String),
    #[error("no eval with id {0}")]
    UnknownEval(String),
    /// A case result lacks a score of one of its eval's scorers; its figures would be a guess.
    #[error("eval case {case} has no {scorer} score")]
    Unscored { case: String, scorer: String },
    #[error("no batch with id {0}")]
    UnknownBatch(String),
    /// No experiment to act on (none live to stop).
    #[error("{0}")]
    NoExperiment(String),
    /// An experiment cannot be started or stopped as things stand (one is already live).
    #[error("{0}")]
    ExperimentConflict(String),
    #[error("{0}")]
    BatchMismatch(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A workflow file could not be edited in place (its `stage`, on promotion).
    #[error("{}: {message}", path.display())]
    WorkflowEdit { path: PathBuf, message: String },
    #[error("cannot promote {workflow} to {to}:\n  - {}", reasons.join("\n  - "))]
    PromotionRefused {
        workflow: String,
        to: &'static str,
        reasons: Vec<String>,
    },
    #[error(transparent)]
    Review(#[from] review::ReviewError),
    #[error("webhook delivery: {0}")]
    Webhook(String),
    /// An API key reached one of its limits: the request is not made.
    #[error("{}", .0.message)]
    LimitReached(shopfloor_core::limits::LimitReached),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// For `map_err`: an I/O error at `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| EngineError::Io { path, source }
    }
}

/// How to open an engine.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub project_dir: PathBuf,
    /// `postgres://…`; default: the SQLite file under the project's `.shopfloor/`.
    pub database_url: Option<String>,
    /// Append every model exchange to this file (for the replay provider).
    pub record_to: Option<PathBuf>,
    pub retry: RetryPolicy,
}

/// A loaded project with its store, recorder and models.
pub struct Engine {
    pub project: Project,
    store: Arc<dyn Store>,
    recorder: Recorder,
    recorder_task: RecorderTask,
    runner: Runner,
    store_redactor: Option<redaction::StoreRedactor>,
    experiments: experiments::LiveExperiments,
    /// The HTTP client of webhook deliveries, built at the first delivery and reused (its
    /// connections with it) by every pass after.
    webhook_client: std::sync::OnceLock<reqwest::Client>,
    /// The plain reads of `store`.
    records: reads::Records,
}

/// Open the store for a project: `database_url` if given, else the embedded SQLite file.
pub async fn open_store(
    project_dir: &Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn Store>, EngineError> {
    let location = match database_url {
        Some(url) => url.to_string(),
        // The embedded store lives in a project: never made in a folder that is not one.
        None if !project_dir.join(CONFIG_FILE).is_file() => {
            return Err(EngineError::NoProject {
                dir: project_dir.to_path_buf(),
            })
        }
        None => project_dir
            .join(STATE_DIR)
            .join(DATABASE_FILE)
            .display()
            .to_string(),
    };
    Ok(shopfloor_store::open(&location).await?)
}

impl Engine {
    /// Load and validate the project, open the store and start the recorder.
    pub async fn open(options: EngineOptions) -> Result<Self, EngineError> {
        let project = Project::load(&options.project_dir)?;
        let store = open_store(&options.project_dir, options.database_url.as_deref()).await?;
        let (recorder, recorder_task) = Recorder::spawn(store.clone());
        let models = Arc::new(ModelPool::new(
            project.root.clone(),
            options.record_to.clone(),
        ));
        let runner = Runner::new(Arc::new(project.config.clone()), models, options.retry);
        let store_redactor = redaction::StoreRedactor::from_config(&project.config);
        let records = reads::Records::over(store.clone());
        let engine = Self {
            project,
            store,
            recorder,
            recorder_task,
            runner,
            store_redactor,
            experiments: Default::default(),
            webhook_client: std::sync::OnceLock::new(),
            records,
        };
        engine.audit_new_versions().await?;
        Ok(engine)
    }

    /// Queue a run for writing, redacted as the policy says the store may keep it.
    pub(crate) async fn record(&self, run: RunRecord) {
        if run.status == shopfloor_store::RunStatus::Refused {
            self.audit_refusal(&run).await;
        }
        let run = match &self.store_redactor {
            Some(redactor) => redactor.run(run),
            None => run,
        };
        self.recorder.record(run).await;
    }

    /// The store itself, for the tests and benches that seed or inspect it. The server and the
    /// CLI never call it (they do not depend on the store crate): they read through
    /// [`Engine::read`] and [`Engine::records`].
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Names of the local (embedded) models a run of `workflow` may need.
    pub fn local_models_for(
        &self,
        workflow: &str,
        model_override: Option<&str>,
    ) -> Result<Vec<String>, EngineError> {
        let workflow = self.project.workflow(workflow)?;
        let names: Vec<String> = match model_override {
            Some(m) => vec![m.to_string()],
            None => workflow
                .spec
                .route
                .models
                .iter()
                .map(|m| m.value.clone())
                .collect(),
        };
        Ok(names
            .iter()
            .filter_map(|n| self.project.config.models.get(n))
            .filter(|m| m.provider == shopfloor_core::spec::ProviderKind::Local)
            .map(|m| m.model.clone())
            .collect())
    }

    pub(crate) fn check_model(&self, name: &str) -> Result<(), EngineError> {
        if self.project.config.models.contains_key(name) {
            Ok(())
        } else {
            Err(EngineError::UnknownModel {
                name: name.to_string(),
                known: self.project.config.models.keys().cloned().collect(),
            })
        }
    }

    /// Write everything recorded and stop the recorder.
    pub async fn close(self) {
        let Engine {
            recorder,
            recorder_task,
            ..
        } = self;
        drop(recorder);
        recorder_task.close().await;
    }
}
