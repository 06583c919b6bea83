//! `provider = "local"` with `kind = "embedding"`: the embedded sentence encoder behind the
//! [`Provider`] trait's [`Provider::embed`].
//!
//! One encoder per weights file and process ([`LocalEmbedder::shared`]). A request's texts are
//! tokenised with the model's own `tokenizer.json` (WordPiece, lower-cased, truncated at
//! [`MAX_TOKENS`] as sentence-transformers does), encoded in batches of [`BATCH`] on a rayon
//! pool of [`thread_count`] threads, off the async runtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shopfloor_providers::{
    ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Provider, ProviderError,
    Unsupported,
};

use crate::bert::Bert;
use crate::catalog::{known_model, model_dir, verified_file, KnownModel, ModelKind};
use crate::provider::thread_count;
use crate::wordpiece::WordPiece;
use crate::LocalError;

/// Longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are cut (the model
/// was trained on at most 256, sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;
/// Texts encoded in one forward pass: bounds the memory a large request takes.
const BATCH: usize = 32;
/// Texts one request may hold (OpenAI's own limit).
pub const MAX_INPUTS: usize = 2048;

/// The embedded sentence encoder, loaded once per process and shared by every request.
pub struct LocalEmbedder {
    model: &'static KnownModel,
    encoder: Arc<Encoder>,
    threads: usize,
    load_time: Duration,
}

/// What a blocking task needs to encode: shared by the embedder and its tasks.
struct Encoder {
    bert: Bert,
    tokenizer: WordPiece,
    pool: rayon::ThreadPool,
}

impl Encoder {
    fn embed(&self, texts: &[String]) -> Result<Embeddings, LocalError> {
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            ids.push(self.tokenizer.encode(text));
        }
        let tokens = ids.iter().map(Vec::len).sum::<usize>() as u32;
        let vectors = self.pool.install(|| {
            let mut vectors = Vec::with_capacity(ids.len());
            for batch in ids.chunks(BATCH) {
                vectors.extend(self.bert.embed(batch)?);
            }
            Ok::<_, LocalError>(vectors)
        })?;
        Ok(Embeddings { vectors, tokens })
    }
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model", &self.model.name)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Vectors for a list of texts, with the tokens read.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One unit-length vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens encoded, `[CLS]` and `[SEP]` of each text included, after truncation.
    pub tokens: u32,
}

type Registry = Mutex<Vec<(PathBuf, Arc<LocalEmbedder>)>>;

fn registry() -> &'static Registry {
    static LOADED: OnceLock<Registry> = OnceLock::new();
    LOADED.get_or_init(Registry::default)
}

impl LocalEmbedder {
    /// The process-wide encoder `name` from [`model_dir`], loaded on first use (blocking).
    pub fn shared(name: &str) -> Result<Arc<LocalEmbedder>, LocalError> {
        Self::shared_in(&model_dir(), name)
    }

    /// The process-wide encoder `name` from the folder `dir`.
    pub fn shared_in(dir: &Path, name: &str) -> Result<Arc<LocalEmbedder>, LocalError> {
        let model = known_model(name)?;
        if model.kind != ModelKind::Embedding {
            return Err(LocalError::WrongKind {
                name: name.to_owned(),
                expected: "an embedding",
            });
        }
        let file = dir.join(model.file_name);
        let key = file.canonicalize().unwrap_or(file);
        // Held while loading, so two callers racing on first use do not load it twice.
        let mut loaded = registry().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, embedder)) = loaded.iter().find(|(k, _)| *k == key) {
            return Ok(embedder.clone());
        }
        let embedder = Arc::new(Self::load(model, dir)?);
        loaded.push((key, embedder.clone()));
        Ok(embedder)
    }

    fn load(model: &'static KnownModel, dir: &Path) -> Result<Self, LocalError> {
        let start = Instant::now();
        let weights = verified_file(dir, model)?;
        let bert = Bert::load(&weights)?;
        let tokenizer_path = model
            .companions
            .first()
            .map(|f| dir.join(f.file_name))
            .ok_or_else(|| LocalError::BadModel {
                path: weights.clone(),
                message: "the catalog names no tokenizer for it".into(),
            })?;
        let tokenizer = load_tokenizer(&tokenizer_path, MAX_TOKENS.min(bert.max_positions()))?;
        let threads = thread_count();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("shopfloor-embed-{i}"))
            .build()
            .map_err(|e| LocalError::Inference(format!("cannot start threads: {e}")))?;
        Ok(Self {
            model,
            encoder: Arc::new(Encoder {
                bert,
                tokenizer,
                pool,
            }),
            threads,
            load_time: start.elapsed(),
        })
    }

    /// Width of the vectors (384 for MiniLM).
    pub fn dimensions(&self) -> usize {
        self.encoder.bert.dimensions()
    }

    /// Compute threads encoding uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How long verifying and loading took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The token ids of `text` as the encoder reads it (truncated, `[CLS]`/`[SEP]` added).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        Ok(self.encoder.tokenizer.encode(text))
    }

    /// Vectors for `texts`, computed on the encoder's pool; blocks until they are done.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Embeddings, LocalError> {
        self.encoder.embed(texts)
    }

    fn refuse_chat(&self) -> ProviderError {
        ProviderError::Config(format!(
            "the local model `{}` is an embedding model: it answers /v1/embeddings, not chat; \
             route chat to a model with kind = \"chat\"",
            self.model.name
        ))
    }
}

fn load_tokenizer(path: &Path, max_tokens: usize) -> Result<WordPiece, LocalError> {
    let text = std::fs::read_to_string(path).map_err(LocalError::io("cannot read", path))?;
    // The published file pads and truncates to 128 for training; the encoder reads each text
    // unpadded, up to `max_tokens`.
    WordPiece::from_json(&text, max_tokens).map_err(|message| LocalError::BadModel {
        path: path.to_owned(),
        message: format!("not a BERT WordPiece tokenizer: {message}"),
    })
}

#[async_trait]
impl Provider for LocalEmbedder {
    fn kind(&self) -> &'static str {
        "local"
    }

    /// Every chat field is moot: the model does not chat at all.
    fn unsupported(&self, _request: &ChatRequest) -> Option<Unsupported> {
        Some(Unsupported {
            param: "model".into(),
            reason: self.refuse_chat().to_string(),
        })
    }

    async fn complete(&self, _request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        Err(self.refuse_chat())
    }

    fn unsupported_embedding(&self, request: &EmbeddingRequest) -> Option<Unsupported> {
        if request.input.len() > MAX_INPUTS {
            return Some(Unsupported {
                param: "input".into(),
                reason: format!(
                    "{} texts in one request; the embedded model takes at most {MAX_INPUTS}",
                    request.input.len()
                ),
            });
        }
        match request.dimensions {
            Some(d) if d as usize != self.dimensions() => Some(Unsupported {
                param: "dimensions".into(),
                reason: format!(
                    "the local model `{}` gives {}-dimension vectors only; leave dimensions out or set it to {}",
                    self.model.name,
                    self.dimensions(),
                    self.dimensions()
                ),
            }),
            _ => None,
        }
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        if let Some(unsupported) = self.unsupported_embedding(request) {
            return Err(ProviderError::Config(unsupported.reason));
        }
        let encoder = self.encoder.clone();
        let texts = request.input.clone();
        let embeddings = tokio::task::spawn_blocking(move || encoder.embed(&texts))
            .await
            .map_err(|_| LocalError::WorkerGone)??;
        Ok(EmbeddingResponse {
            vectors: embeddings.vectors,
            prompt_tokens: Some(embeddings.tokens),
            model: self.model.name.to_owned(),
        })
    }
}
