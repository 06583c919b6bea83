//! Loading the GGUF file, with a one-time conversion of slow quantisations to Q8_0.
//!
//! The published file is Q4_1, for which candle has no SIMD kernel on x86 (about half the decode
//! speed of Q8_0 here). Converting costs a second or two and 50 MB of disk once, so the result is
//! cached beside the original and tagged with the original's sha256; a stale or broken cache is
//! simply rebuilt.

use std::fs;
use std::io::{Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::LocalError;

const SOURCE_SHA_KEY: &str = "shopfloor.source_sha256";

/// The model's weights and tokenizer, ready to run.
pub(crate) struct Loaded {
    pub(crate) weights: Model,
    pub(crate) tokenizer: Tokenizer,
    /// Which file the weights came from (the cache, or the original when the cache is unusable).
    pub(crate) weights_path: PathBuf,
}

/// Load `source` (already verified to have `source_sha256`), via the Q8_0 cache beside it.
pub(crate) fn load(source: &Path, source_sha256: &str) -> Result<Loaded, LocalError> {
    let cache = cache_path(source);
    if let Some(loaded) = load_cache(&cache, source_sha256) {
        return Ok(loaded);
    }
    let bad = |message: String| LocalError::BadModel {
        path: source.to_owned(),
        message,
    };
    let mut file = fs::File::open(source).map_err(LocalError::io("cannot open", source))?;
    let content = Content::read(&mut file).map_err(|e| bad(e.to_string()))?;
    let converted = convert(&content, &mut file, source_sha256).map_err(|e| bad(e.to_string()))?;
    match write_atomically(&cache, &converted, source) {
        Ok(()) => tracing::info!(path = %cache.display(), "cached the Q8_0 conversion"),
        // Only speed is lost: the next start converts again.
        Err(e) => {
            tracing::warn!(path = %cache.display(), error = %e, "cannot cache the Q8_0 conversion")
        }
    }
    let mut reader = Cursor::new(converted);
    let content = Content::read(&mut reader).map_err(|e| bad(e.to_string()))?;
    let mut loaded = from_content(content, &mut reader).map_err(bad)?;
    loaded.weights_path = source.to_owned();
    Ok(loaded)
}

/// Where the converted copy of `source` lives.
pub(crate) fn cache_path(source: &Path) -> PathBuf {
    let stem = source.file_stem().unwrap_or_default().to_string_lossy();
    source.with_file_name(format!("{stem}.shopfloor-q8_0.gguf"))
}

fn load_cache(cache: &Path, source_sha256: &str) -> Option<Loaded> {
    let mut file = fs::File::open(cache).ok()?;
    let content = Content::read(&mut file).ok()?;
    let tag = content.metadata.get(SOURCE_SHA_KEY)?.to_string().ok()?;
    if tag != source_sha256 {
        return None;
    }
    match from_content(content, &mut file) {
        Ok(mut loaded) => {
            loaded.weights_path = cache.to_owned();
            Some(loaded)
        }
        Err(e) => {
            tracing::warn!(path = %cache.display(), error = %e, "ignoring a broken Q8_0 cache");
            None
        }
    }
}

fn from_content<R: Read + Seek>(content: Content, reader: &mut R) -> Result<Loaded, String> {
    let tokenizer = Tokenizer::from_gguf(&content)?;
    let weights = Model::from_gguf(content, reader).map_err(|e| e.to_string())?;
    Ok(Loaded {
        weights,
        tokenizer,
        weights_path: PathBuf::new(),
    })
}

/// Types with no fast x86 kernel in candle; Q8_0 has one and keeps their precision.
fn needs_conversion(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1
    )
}

/// The whole GGUF file with slow tensors re-quantised to Q8_0, tagged with the source's hash.
fn convert<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    source_sha256: &str,
) -> candle_core::Result<Vec<u8>> {
    let device = Device::Cpu;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content.tensor(reader, name, &device)?;
        let block = GgmlDType::Q8_0.block_size();
        let fits = tensor.shape().dims().last().is_some_and(|d| d % block == 0);
        let tensor = if needs_conversion(tensor.dtype()) && fits {
            QTensor::quantize(&tensor.dequantize(&device)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let tag = Value::String(source_sha256.to_owned());
    let mut metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        // The writer always aligns to 32 bytes; a copied alignment key could contradict it.
        .filter(|(k, _)| k.as_str() != "general.alignment" && k.as_str() != SOURCE_SHA_KEY)
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.sort_by_key(|(k, _)| *k);
    metadata.push((SOURCE_SHA_KEY, &tag));
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs)?;
    Ok(out.into_inner())
}

/// Write `bytes` to `path` so that no reader ever sees a half-written file; it gets the
/// permissions of `like` rather than a temporary file's owner-only ones.
fn write_atomically(path: &Path, bytes: &[u8], like: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(fs::metadata(like)?.permissions())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
