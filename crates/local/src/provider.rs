//! `provider = "local"`: the embedded model behind the [`Provider`] trait.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use shopfloor_providers::{
    Capabilities, ChatRequest, ChatResponse, FinishReason, Provider, ProviderError, ResponseFormat,
    Role, StreamEvent, Unsupported, Usage,
};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::{known_model, model_dir, verified_file, KnownModel};
use crate::choice::ChoiceScoring;
use crate::generate::{GenEvent, Generation, MAX_CONTEXT};
use crate::json::{Grammars, JsonConstraint, SchemaError, Shape, VocabTrie};
use crate::llama::Model;
use crate::prompt::{encode_chatml, encode_choice, END_OF_TEXT, IM_END};
use crate::sample::SamplingParams;
use crate::tokenizer::Tokenizer;
use crate::worker::{Job, Worker};
use crate::{convert, LocalError};

/// Answer length when a request sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 512;

/// The embedded model, loaded once per process and shared by every request.
pub struct LocalProvider {
    model: &'static KnownModel,
    /// Cloned per request: the clone shares the weights and brings an empty KV cache.
    weights: Model,
    tokenizer: Arc<Tokenizer>,
    worker: Worker,
    im_end: u32,
    stop_ids: Vec<u32>,
    weights_path: PathBuf,
    threads: usize,
    load_time: Duration,
    /// Compiled JSON schemas, by schema text.
    grammars: Grammars,
    /// The vocabulary as a prefix trie, built on the first constrained request.
    vocab: OnceLock<Arc<VocabTrie>>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("model", &self.model.name)
            .field("weights_path", &self.weights_path)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

type Registry = Mutex<Vec<(PathBuf, Arc<LocalProvider>)>>;

fn registry() -> &'static Registry {
    static LOADED: OnceLock<Registry> = OnceLock::new();
    LOADED.get_or_init(Registry::default)
}

/// Compute threads for inference: `SHOPFLOOR_THREADS`, else the cores this process may use.
pub fn thread_count() -> usize {
    std::env::var("SHOPFLOOR_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

impl LocalProvider {
    /// The process-wide instance of model `name` from [`model_dir`], loading it on first use.
    /// Blocking (loading takes a fraction of a second, the first Q8_0 conversion a few seconds).
    pub fn shared(name: &str) -> Result<Arc<LocalProvider>, LocalError> {
        Self::shared_in(&model_dir(), name)
    }

    /// The process-wide instance of model `name` from the folder `dir`.
    pub fn shared_in(dir: &Path, name: &str) -> Result<Arc<LocalProvider>, LocalError> {
        let model = known_model(name)?;
        if model.kind != crate::ModelKind::Chat {
            return Err(LocalError::WrongKind {
                name: name.to_owned(),
                expected: "a chat",
            });
        }
        let file = dir.join(model.file_name);
        let key = file.canonicalize().unwrap_or(file);
        // Held while loading, so two callers racing on first use do not load the model twice.
        let mut loaded = registry().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, provider)) = loaded.iter().find(|(k, _)| *k == key) {
            return Ok(provider.clone());
        }
        let provider = Arc::new(Self::load(model, dir)?);
        loaded.push((key, provider.clone()));
        Ok(provider)
    }

    fn load(model: &'static KnownModel, dir: &Path) -> Result<Self, LocalError> {
        let start = Instant::now();
        let source = verified_file(dir, model)?;
        let threads = thread_count();
        let loaded = convert::load(&source, model.sha256)?;
        let tokenizer = Arc::new(loaded.tokenizer);
        let missing = |token: &str| LocalError::BadModel {
            path: source.clone(),
            message: format!("the vocabulary has no {token} token"),
        };
        let im_end = tokenizer.token_id(IM_END).ok_or_else(|| missing(IM_END))?;
        let end_of_text = tokenizer
            .token_id(END_OF_TEXT)
            .ok_or_else(|| missing(END_OF_TEXT))?;
        let worker = Worker::spawn(tokenizer.clone(), threads)?;
        Ok(Self {
            model,
            weights: loaded.weights,
            tokenizer,
            worker,
            im_end,
            stop_ids: vec![im_end, end_of_text],
            weights_path: loaded.weights_path,
            threads,
            load_time: start.elapsed(),
            grammars: Grammars::default(),
            vocab: OnceLock::new(),
        })
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The file the weights were loaded from (the Q8_0 cache when it could be used).
    pub fn weights_path(&self) -> &Path {
        &self.weights_path
    }

    /// The file the weights are served from: the Q8_0 conversion kept beside the published
    /// file (what a side-by-side measure with another runtime should load).
    pub fn served_path(&self) -> PathBuf {
        let cache = convert::cache_path(&self.weights_path);
        if cache.exists() {
            cache
        } else {
            // Loaded from the conversion itself (or it could not be written).
            self.weights_path.clone()
        }
    }

    /// Compute threads inference uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Requests queued or running right now (abandoned ones leave before their next token).
    pub fn active_requests(&self) -> usize {
        self.worker.active()
    }

    /// How long verifying, converting and loading took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    fn prompt(&self, request: &ChatRequest) -> Result<Vec<u32>, ProviderError> {
        let prompt = encode_chatml(
            &self.tokenizer,
            &request.messages,
            request.assistant_prefix.as_deref(),
        )?;
        if prompt.len() >= MAX_CONTEXT {
            return Err(ProviderError::Config(format!(
                "the prompt has {} tokens; the local model `{}` reads at most {}",
                prompt.len(),
                self.model.name,
                MAX_CONTEXT - 1
            )));
        }
        Ok(prompt)
    }

    /// Start a generation; its events arrive on the returned channel.
    fn start_generation(
        &self,
        request: &ChatRequest,
    ) -> Result<(u32, mpsc::UnboundedReceiver<GenEvent>), ProviderError> {
        let prompt = self.prompt(request)?;
        let prompt_tokens = prompt.len() as u32;
        let room = (MAX_CONTEXT - prompt.len()) as u32;
        let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).min(room);
        let sampling = SamplingParams {
            // No temperature means greedy: evals of the local model reproduce by default.
            temperature: f64::from(request.temperature.unwrap_or(0.0)),
            top_p: request.top_p.map(f64::from),
            seed: request.seed.unwrap_or_else(rand::random),
        };
        let constraint = self.constraint(request)?;
        if let Some(shortest) = constraint.as_ref().map(JsonConstraint::shortest) {
            if shortest > max_tokens {
                return Err(ProviderError::Config(format!(
                    "the shortest JSON the response format allows takes {shortest} tokens, \
                     more than the {max_tokens} this request may generate; raise max_tokens"
                )));
            }
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let generation = Generation::new(
            &self.weights,
            prompt,
            max_tokens,
            sampling,
            self.stop_ids.clone(),
            constraint,
            events,
        );
        self.worker.submit(Job::Generate(Box::new(generation)))?;
        Ok((prompt_tokens, receiver))
    }

    /// The JSON constraint a request's `response_format` asks for, if any.
    fn constraint(&self, request: &ChatRequest) -> Result<Option<JsonConstraint>, ProviderError> {
        let Some(shape) = json_shape(request) else {
            return Ok(None);
        };
        let dfa = self.grammars.get(shape).map_err(LocalError::Schema)?;
        let vocab = self
            .vocab
            .get_or_init(|| {
                let tokenizer = &self.tokenizer;
                Arc::new(VocabTrie::new(
                    (0..tokenizer.vocab_size()).map(|id| tokenizer.bytes(id as u32)),
                ))
            })
            .clone();
        Ok(Some(JsonConstraint::new(dfa, vocab, self.stop_ids.clone())))
    }

    /// Why the embedded model cannot enforce the request's JSON schema, if it cannot.
    fn schema_problem(&self, request: &ChatRequest) -> Option<SchemaError> {
        self.grammars.get(json_shape(request)?).err()
    }

    async fn choose(
        &self,
        request: &ChatRequest,
        choices: &[String],
    ) -> Result<ChatResponse, ProviderError> {
        if choices.is_empty() {
            return Err(ProviderError::Config(
                "constrained choice needs at least one choice".into(),
            ));
        }
        let prompt = self.prompt(request)?;
        let prompt_tokens = prompt.len() as u32;
        let prefix = request.assistant_prefix.as_deref().unwrap_or("");
        let mut options = Vec::with_capacity(choices.len());
        for choice in choices {
            let mut ids = encode_choice(&self.tokenizer, prefix, choice)?;
            ids.push(self.im_end);
            options.push(ids);
        }
        let lengths: Vec<u32> = options.iter().map(|o| o.len() as u32 - 1).collect();
        let (reply, answer) = oneshot::channel();
        let scoring = ChoiceScoring::new(&self.weights, prompt, options, reply);
        self.worker.submit(Job::Choose(Box::new(scoring)))?;
        let outcome = answer.await.map_err(|_| LocalError::WorkerGone)??;
        Ok(ChatResponse {
            text: choices[outcome.index].clone(),
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens: lengths[outcome.index],
            }),
            finish_reason: FinishReason::Stop,
            model: self.model.name.to_owned(),
            choice_probability: Some(outcome.probability),
            tool_calls: Vec::new(),
            logprobs: None,
        })
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn counts_tokens(&self) -> bool {
        true
    }

    /// The prompt's token ids through the model's own chat template and tokenizer.
    async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, ProviderError> {
        Ok(self.prompt(request)?.len() as u32)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            assistant_prefix: true,
            constrained_choice: true,
            constrained_json: true,
        }
    }

    /// Plain chat and `response_format` (JSON decoding constrained to the schema); said in the
    /// embedded model's terms.
    fn unsupported(&self, request: &ChatRequest) -> Option<Unsupported> {
        const TOOLS: &str = "the embedded model cannot call tools; route tool calls to an openai, openai-compatible or anthropic model";
        let extras = request.extras.as_deref();
        let field = extras.and_then(|extras| {
            extras
                .set_fields()
                .into_iter()
                .find(|f| !matches!(*f, "user" | "response_format"))
        });
        if let Some(field) = field {
            let mut unsupported = Unsupported::field(field, "local");
            if matches!(field, "tools" | "tool_choice" | "parallel_tool_calls") {
                unsupported.reason = TOOLS.to_owned();
            }
            return Some(unsupported);
        }
        if request
            .messages
            .iter()
            .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty())
        {
            return Some(Unsupported {
                param: "messages".into(),
                reason: format!("messages hold tool calls or tool results: {TOOLS}"),
            });
        }
        if let Some(unsupported) = shopfloor_providers::no_images("the embedded", request) {
            return Some(unsupported);
        }
        self.schema_problem(request).map(|problem| Unsupported {
            param: "response_format".into(),
            reason: format!(
                "the embedded model cannot enforce this JSON schema while decoding: {problem}; \
                 simplify the schema, or route the request to an openai, openai-compatible or anthropic model"
            ),
        })
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        if let Some(choices) = &request.choices {
            return self.choose(request, choices).await;
        }
        let (prompt_tokens, mut events) = self.start_generation(request)?;
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event {
                GenEvent::Delta(piece) => text.push_str(&piece),
                GenEvent::Done {
                    completion_tokens,
                    finish_reason,
                } => {
                    return Ok(ChatResponse {
                        text,
                        usage: Some(Usage {
                            prompt_tokens,
                            completion_tokens,
                        }),
                        finish_reason,
                        model: self.model.name.to_owned(),
                        choice_probability: None,
                        tool_calls: Vec::new(),
                        logprobs: None,
                    });
                }
                GenEvent::Failed(error) => return Err(error.into()),
            }
        }
        Err(LocalError::WorkerGone.into())
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, ProviderError>>, ProviderError> {
        if request.choices.is_some() {
            return Ok(shopfloor_providers::whole_answer(
                self.complete(request).await?,
            ));
        }
        let (prompt_tokens, events) = self.start_generation(request)?;
        // Dropping the stream drops the receiver, which cancels the generation.
        let stream = futures::stream::unfold(Some(events), move |events| async move {
            let mut events = events?;
            let item = match events.recv().await {
                Some(GenEvent::Delta(piece)) => Ok(StreamEvent::Delta(piece)),
                Some(GenEvent::Done {
                    completion_tokens,
                    finish_reason,
                }) => {
                    let usage = Usage {
                        prompt_tokens,
                        completion_tokens,
                    };
                    return Some((
                        Ok(StreamEvent::Done {
                            usage: Some(usage),
                            finish_reason,
                        }),
                        None,
                    ));
                }
                Some(GenEvent::Failed(error)) => return Some((Err(error.into()), None)),
                None => return Some((Err(LocalError::WorkerGone.into()), None)),
            };
            Some((item, Some(events)))
        });
        Ok(stream.boxed())
    }
}

/// What JSON a request's `response_format` asks for, if any.
fn json_shape(request: &ChatRequest) -> Option<Shape<'_>> {
    match request.extras.as_deref()?.response_format.as_ref()? {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject | ResponseFormat::JsonSchema { schema: None, .. } => {
            Some(Shape::AnyObject)
        }
        ResponseFormat::JsonSchema {
            schema: Some(schema),
            ..
        } => Some(Shape::Schema(schema)),
    }
}
