//! In-context examples (`[prompt] examples`): solved cases of a dataset shown to the model as
//! user/assistant turns before the input. The user turn is the case's input through the
//! workflow's own template, the answer its expected output; reviewer corrections that
//! `datasets add-from-reviews` appends to the file are examples from the next load on.
//!
//! `similar` picks the k cases nearest to the input by cosine similarity of the embedded
//! MiniLM's unit vectors of the rendered user messages. The cases' vectors are computed once
//! per content of the file and kept beside the store (`.shopfloor/examples/HASH.vectors`), so
//! a restart or another replica reads them instead of encoding again. The most similar example
//! comes last, next to the input.
//!
//! An evaluation never shows a case its own answer: examples whose input equals the input
//! being evaluated are left out (leave-one-out), whatever file they come from.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use sha2::{Digest, Sha256};
use shopfloor_core::dataset::{parse_dataset, DatasetFormat};
use shopfloor_core::spec::{ExampleSelect, ExamplesSpec};
use shopfloor_core::template::{PromptTemplates, Shot};
use shopfloor_core::{canonical_json, Diagnostic};

use crate::EngineError;

/// The embedded sentence encoder `similar` uses.
pub const EXAMPLE_ENCODER: &str = "minilm";
/// Cases encoded between two progress reports.
const ENCODE_CHUNK: usize = 256;

/// One solved case.
#[derive(Debug, Clone)]
struct Example {
    shot: Shot,
    /// The input as canonical JSON, to leave a case out of its own examples.
    input: String,
}

/// A workflow's example set, loaded with the project.
pub struct ExampleSet {
    select: ExampleSelect,
    k: usize,
    /// SHA-256 of the file's content (hex): part of the workflow's version.
    pub hash: String,
    examples: Vec<Example>,
    /// Where the vectors are kept, and the vectors once computed or read (`similar` only).
    vectors_file: PathBuf,
    vectors: OnceLock<Result<Vec<Vec<f32>>, String>>,
}

impl std::fmt::Debug for ExampleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExampleSet")
            .field("select", &self.select)
            .field("k", &self.k)
            .field("examples", &self.examples.len())
            .finish_non_exhaustive()
    }
}

impl ExampleSet {
    /// Read `spec.from` under `root`, rendering each case's input with `templates`. A case
    /// the template cannot render, or a file with a bad line, is a project error naming it.
    pub fn load(
        root: &Path,
        workflow_file: &str,
        spec: &ExamplesSpec,
        templates: &PromptTemplates,
    ) -> Result<ExampleSet, EngineError> {
        let path = root.join(&spec.from.value);
        let bytes = std::fs::read(&path).map_err(EngineError::io(path.clone()))?;
        let problem = |message: String| {
            EngineError::InvalidProject(vec![Diagnostic::new(
                workflow_file,
                spec.from.line,
                "prompt.examples.from",
                message,
            )])
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| problem(format!("{} is not UTF-8 text", spec.from.value)))?;
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        let (mut cases, bad) = parse_dataset(&text, DatasetFormat::from_path(&spec.from.value));
        if let Some(bad) = bad.first() {
            return Err(problem(format!(
                "{} line {}: {}",
                spec.from.value, bad.line, bad.message
            )));
        }
        // A case from a rejected review waits for a person to write its answer: until then
        // it has none to show (`null` would be shown as one, and counted as a label).
        cases.retain(|c| !c.expected.is_null());
        if cases.is_empty() {
            return Err(problem(format!(
                "{} has no answered cases",
                spec.from.value
            )));
        }
        let mut examples = Vec::with_capacity(cases.len());
        for case in cases {
            let rendered = templates.render(&case.input).map_err(|e| {
                problem(format!(
                    "{} line {} ({}): the prompt template cannot render its input: {}",
                    spec.from.value, case.line, case.id, e.message
                ))
            })?;
            let answer = match &case.expected {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            examples.push(Example {
                input: canonical_json(&case.input),
                shot: Shot {
                    id: case.id,
                    input: case.input,
                    user: rendered.user,
                    answer,
                },
            });
        }
        Ok(ExampleSet {
            select: spec.select,
            k: spec.k,
            vectors_file: root
                .join(".shopfloor/examples")
                .join(format!("{hash}-{EXAMPLE_ENCODER}.vectors")),
            hash,
            examples,
            vectors: OnceLock::new(),
        })
    }

    /// How many cases the set holds.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether the set holds no case (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The examples for an input whose user message renders as `user`. With `leave_out`, a
    /// case whose input equals `input` is never among them. Blocks while `similar` encodes
    /// (the set's vectors on first use, then the input): call it off the async threads.
    pub fn choose(&self, user: &str, input: &Value, leave_out: bool) -> Result<Vec<Shot>, String> {
        let own = leave_out.then(|| canonical_json(input));
        let allowed = |e: &Example| own.as_deref() != Some(e.input.as_str());
        let chosen: Vec<&Example> = match self.select {
            ExampleSelect::Fixed => self
                .examples
                .iter()
                .filter(|e| allowed(e))
                .take(self.k)
                .collect(),
            ExampleSelect::Balanced => {
                let mut labels: Vec<&str> = Vec::new();
                for e in &self.examples {
                    if !labels.contains(&e.shot.answer.as_str()) {
                        labels.push(&e.shot.answer);
                    }
                }
                labels
                    .iter()
                    .flat_map(|label| {
                        self.examples
                            .iter()
                            .filter(|e| e.shot.answer == *label && allowed(e))
                            .take(self.k)
                    })
                    .collect()
            }
            ExampleSelect::Similar => self
                .ranked(user, self.k, |i| allowed(&self.examples[i]))?
                .into_iter()
                .rev()
                .map(|(i, _)| &self.examples[i])
                .collect(),
        };
        Ok(chosen.into_iter().map(|e| e.shot.clone()).collect())
    }

    /// Whether choosing will first encode every case (`similar`, with no vectors kept yet):
    /// the moment for a progress bar.
    pub fn needs_encoding(&self) -> bool {
        if self.select != ExampleSelect::Similar || self.vectors.get().is_some() {
            return false;
        }
        match read_vectors(&self.vectors_file, self.examples.len()) {
            // Read once: kept for the choices that follow.
            Some(vectors) => {
                let _ = self.vectors.set(Ok(vectors));
                false
            }
            None => true,
        }
    }

    /// The `k` cases nearest to the rendered user message `user` among those `allowed`,
    /// nearest first, as (index, similarity). Encodes the set on first use, then `user`.
    fn ranked(
        &self,
        user: &str,
        k: usize,
        allowed: impl Fn(usize) -> bool,
    ) -> Result<Vec<(usize, f32)>, String> {
        let vectors = self.vectors()?;
        let query = encode(&[user.to_string()])?
            .pop()
            .ok_or("the encoder returned no vector")?;
        Ok(nearest(vectors, &query, k, allowed))
    }

    /// Encode the cases now (when `similar` needs them), telling `progress` (done, total)
    /// after each chunk. Blocks.
    pub fn encode_with(&self, progress: &dyn Fn(usize, usize)) -> Result<(), String> {
        if self.select != ExampleSelect::Similar {
            return Ok(());
        }
        self.vectors
            .get_or_init(|| self.read_or_encode(progress))
            .as_ref()
            .map(|_| ())
            .map_err(Clone::clone)
    }

    /// The cases' vectors: read from beside the store, else encoded once and written there.
    fn vectors(&self) -> Result<&Vec<Vec<f32>>, String> {
        self.vectors
            .get_or_init(|| self.read_or_encode(&|_, _| {}))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn read_or_encode(&self, progress: &dyn Fn(usize, usize)) -> Result<Vec<Vec<f32>>, String> {
        if let Some(vectors) = read_vectors(&self.vectors_file, self.examples.len()) {
            return Ok(vectors);
        }
        let total = self.examples.len();
        tracing::info!(cases = total, "encoding the examples once");
        let mut vectors = Vec::with_capacity(total);
        for chunk in self.examples.chunks(ENCODE_CHUNK) {
            let texts: Vec<String> = chunk.iter().map(|e| e.shot.user.clone()).collect();
            vectors.extend(encode(&texts)?);
            progress(vectors.len(), total);
        }
        if let Err(e) = write_vectors(&self.vectors_file, &vectors) {
            tracing::warn!(
                file = %self.vectors_file.display(),
                "the example vectors could not be kept; they are encoded again next time: {e}"
            );
        }
        Ok(vectors)
    }
}

/// The `k` vectors nearest to `query` (highest dot product of unit vectors: cosine
/// similarity) among those `allowed`, nearest first, as (index, similarity); ties go to the
/// earlier case.
pub fn nearest(
    vectors: &[Vec<f32>],
    query: &[f32],
    k: usize,
    allowed: impl Fn(usize) -> bool,
) -> Vec<(usize, f32)> {
    let mut scored: Vec<(f32, usize)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| allowed(*i))
        .map(|(i, v)| (dot(v, query), i))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    let by_score = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    scored.select_nth_unstable_by(k - 1, by_score);
    scored.truncate(k);
    scored.sort_by(by_score);
    scored.into_iter().map(|(score, i)| (i, score)).collect()
}

/// The embedded model's own vectorised dot product.
#[cfg(feature = "local")]
use shopfloor_local::dot;

/// Without the embedded models nothing is encoded to compare; `nearest` still works.
#[cfg(not(feature = "local"))]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(feature = "local")]
fn encode(texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
    let encoder = shopfloor_local::LocalEmbedder::shared(EXAMPLE_ENCODER).map_err(|e| {
        format!(
            "examples with select = \"similar\" need the embedded {EXAMPLE_ENCODER} (`shopfloor models pull {EXAMPLE_ENCODER}`): {e}"
        )
    })?;
    encoder
        .embed_blocking(texts)
        .map(|e| e.vectors)
        .map_err(|e| format!("encoding the examples failed: {e}"))
}

#[cfg(not(feature = "local"))]
fn encode(_texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
    Err(format!(
        "examples with select = \"similar\" need the embedded {EXAMPLE_ENCODER}, and this build of shopfloor was made without it (cargo feature `local`)"
    ))
}

/// The file's vectors, when it holds `count` of them: `u32` count, `u32` dimensions, then
/// the numbers as little-endian `f32`.
fn read_vectors(path: &Path, count: usize) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let (n, dims) = (word(0)? as usize, word(4)? as usize);
    if n != count || bytes.len() != 8 + n * dims * 4 {
        return None;
    }
    let numbers: Vec<f32> = bytes[8..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(numbers.chunks(dims.max(1)).map(<[f32]>::to_vec).collect())
}

/// Write `vectors` whole or not at all (a temporary file, then a rename).
fn write_vectors(path: &Path, vectors: &[Vec<f32>]) -> std::io::Result<()> {
    let dims = vectors.first().map_or(0, Vec::len);
    let mut bytes = Vec::with_capacity(8 + vectors.len() * dims * 4);
    bytes.extend_from_slice(&(vectors.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&(dims as u32).to_le_bytes());
    for v in vectors {
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(partial, path)
}

/// A case found by [`Engine::similar_cases`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimilarCase {
    pub id: String,
    /// Cosine similarity to the input, from -1 to 1.
    pub similarity: f32,
    /// The case's input through the workflow's template.
    pub user: String,
    /// Its expected output.
    pub answer: String,
}

impl ExampleSet {
    /// The `k` cases nearest to the rendered user message `user`, nearest first.
    fn search(&self, user: &str, k: usize) -> Result<Vec<SimilarCase>, String> {
        Ok(self
            .ranked(user, k, |_| true)?
            .into_iter()
            .map(|(i, similarity)| {
                let shot = &self.examples[i].shot;
                SimilarCase {
                    id: shot.id.clone(),
                    similarity,
                    user: shot.user.clone(),
                    answer: shot.answer.clone(),
                }
            })
            .collect())
    }
}

impl crate::Engine {
    /// The example set an eval of `request` would show the model, if any: to encode it first
    /// with a progress bar ([`ExampleSet::encode_with`]).
    pub fn examples_for_eval(
        &self,
        request: &crate::EvalRequest,
    ) -> Result<Option<Arc<ExampleSet>>, EngineError> {
        Ok(self.workflow_for_eval(request)?.examples.clone())
    }

    /// The `k` cases nearest to `input` (cosine similarity of the embedded MiniLM's vectors of
    /// the rendered user messages) among the workflow's examples, or its eval dataset when it
    /// has none; nearest first. The file it searched comes first in the answer.
    pub async fn similar_cases(
        &self,
        workflow: &str,
        input: Value,
        k: usize,
    ) -> Result<(String, Vec<SimilarCase>), EngineError> {
        let loaded = self.project.workflow(workflow)?;
        crate::validate_input(&loaded, &input).map_err(EngineError::InvalidInput)?;
        let user = loaded
            .templates
            .render(&input)
            .map_err(|e| EngineError::InvalidInput(format!("{}: {}", e.field, e.message)))?
            .user;
        // The workflow's own examples, else what an eval with similar examples would use.
        let with_examples = match &loaded.examples {
            Some(_) => loaded.clone(),
            None => self.workflow_for_eval(&crate::EvalRequest {
                workflow: workflow.to_string(),
                examples: crate::ExamplesSetting::Similar(k),
                ..crate::EvalRequest::default()
            })?,
        };
        let (Some(set), Some(spec)) = (
            with_examples.examples.clone(),
            &with_examples.spec.prompt.examples,
        ) else {
            return Err(EngineError::NoDataset(workflow.to_string()));
        };
        let file = spec.from.value.clone();
        let found = tokio::task::spawn_blocking(move || set.search(&user, k))
            .await
            .map_err(|e| EngineError::InvalidInput(format!("the search failed: {e}")))?
            .map_err(|e| EngineError::InvalidField {
                field: "prompt.examples",
                message: e,
            })?;
        Ok((file, found))
    }
}

/// Choose `set`'s examples on a blocking thread (`similar` encodes).
pub(crate) async fn choose(
    set: &Arc<ExampleSet>,
    user: &str,
    input: &Value,
    leave_out: bool,
) -> Result<Vec<Shot>, String> {
    let (set, user, input) = (set.clone(), user.to_string(), input.clone());
    tokio::task::spawn_blocking(move || set.choose(&user, &input, leave_out))
        .await
        .map_err(|e| format!("choosing the examples failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_are_chosen_in_order_and_the_left_out_never() {
        let unit = |x: f32, y: f32| {
            let n = (x * x + y * y).sqrt();
            vec![x / n, y / n]
        };
        let vectors = vec![
            unit(1.0, 0.0),
            unit(0.0, 1.0),
            unit(1.0, 0.2),
            unit(1.0, 1.0),
        ];
        let query = unit(1.0, 0.02);
        let indexes =
            |found: Vec<(usize, f32)>| found.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(indexes(nearest(&vectors, &query, 2, |_| true)), [0, 2]);
        assert_eq!(indexes(nearest(&vectors, &query, 3, |i| i != 0)), [2, 3, 1]);
        let (_, best) = nearest(&vectors, &query, 1, |_| true)[0];
        assert!((best - 0.9998).abs() < 1e-3, "{best}");
        assert_eq!(nearest(&vectors, &query, 9, |_| true).len(), 4);
        assert!(nearest(&vectors, &query, 2, |_| false).is_empty());
    }

    #[test]
    fn vectors_are_kept_whole_and_read_back_only_for_the_same_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/set.vectors");
        let vectors = vec![vec![0.5, -0.25, 1.0], vec![0.0, 2.0, -1.5]];
        write_vectors(&file, &vectors).unwrap();
        assert_eq!(read_vectors(&file, 2), Some(vectors));
        assert_eq!(read_vectors(&file, 3), None);
        assert!(!file.with_extension("partial").exists());
    }
}
