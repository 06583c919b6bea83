//! Loading the GGUF file, with a one-time conversion of other quantisations to Q8_0.
//!
//! The published file is Q4_1; the matrix products ([`crate::q8`]) multiply Q8_0, which holds
//! every Q4_1 value exactly up to rounding of its scale. Converting costs a second or two and
//! 50 MB of disk once, so the result is cached beside the original and tagged with the
//! original's sha256; a stale or broken cache is simply rebuilt. The cache is a GGUF file like
//! the original: its metadata sorted by key, its tensors by name.

use std::fs;
use std::io::{BufReader, Cursor, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::gguf::{self, Gguf, Tensor, TensorOut, Value};
use crate::llama::Model;
use crate::quant::{dequantize, quantize_q8_0, GgmlType, QK};
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
    let file = fs::File::open(source).map_err(LocalError::io("cannot open", source))?;
    let mut reader = BufReader::new(file);
    let header = Gguf::read(&mut reader).map_err(bad)?;
    let converted = convert(&header, &mut reader, source_sha256).map_err(bad)?;
    let mut reader = Cursor::new(converted);
    let header = Gguf::read(&mut reader).map_err(bad)?;
    // Loaded before it is cached, so that a file the model cannot run from is never cached.
    let mut loaded = from_file(&header, &mut reader).map_err(bad)?;
    loaded.weights_path = source.to_owned();
    match write_atomically(&cache, reader.get_ref(), source) {
        Ok(()) => tracing::info!(path = %cache.display(), "cached the Q8_0 conversion"),
        // Only speed is lost: the next start converts again.
        Err(e) => {
            tracing::warn!(path = %cache.display(), error = %e, "cannot cache the Q8_0 conversion")
        }
    }
    Ok(loaded)
}

/// Where the converted copy of `source` lives.
pub(crate) fn cache_path(source: &Path) -> PathBuf {
    let stem = source.file_stem().unwrap_or_default().to_string_lossy();
    source.with_file_name(format!("{stem}.shopfloor-q8_0.gguf"))
}

fn load_cache(cache: &Path, source_sha256: &str) -> Option<Loaded> {
    let mut reader = BufReader::new(fs::File::open(cache).ok()?);
    let header = Gguf::read(&mut reader).ok()?;
    if header.get(SOURCE_SHA_KEY)?.as_str()? != source_sha256 {
        return None;
    }
    match from_file(&header, &mut reader) {
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

fn from_file<R: Read + Seek>(header: &Gguf, reader: &mut R) -> Result<Loaded, String> {
    let tokenizer = Tokenizer::from_gguf(header)?;
    let weights = Model::from_gguf(header, reader)?;
    Ok(Loaded {
        weights,
        tokenizer,
        weights_path: PathBuf::new(),
    })
}

/// Types the matrix products do not multiply as they are; Q8_0 keeps their precision.
fn needs_conversion(dtype: GgmlType) -> bool {
    matches!(
        dtype,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_1
    )
}

/// The whole GGUF file with those tensors re-quantised to Q8_0, tagged with the source's hash.
fn convert<R: Read + Seek>(
    header: &Gguf,
    reader: &mut R,
    source_sha256: &str,
) -> Result<Vec<u8>, String> {
    let mut names: Vec<&str> = header.tensors.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    let mut tensors: Vec<(&str, Tensor)> = Vec::with_capacity(names.len());
    for name in names {
        let tensor = header.tensor(reader, name)?;
        let fits = tensor.dims.last().is_some_and(|d| d % QK == 0);
        let tensor = if needs_conversion(tensor.dtype) && fits {
            let values = dequantize(tensor.dtype, &tensor.data)
                .ok_or_else(|| format!("{name}: cannot read {:?}", tensor.dtype))?;
            Tensor {
                dtype: GgmlType::Q8_0,
                dims: tensor.dims,
                data: quantize_q8_0(&values),
            }
        } else {
            tensor
        };
        tensors.push((name, tensor));
    }
    let tag = Value::String(source_sha256.to_owned());
    let mut metadata: Vec<(&str, &Value)> = header
        .metadata
        .iter()
        // The writer always aligns to 32 bytes; a copied alignment key could contradict it.
        .filter(|(k, _)| k.as_str() != "general.alignment" && k.as_str() != SOURCE_SHA_KEY)
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.sort_by_key(|(k, _)| *k);
    metadata.push((SOURCE_SHA_KEY, &tag));
    let outs: Vec<TensorOut<'_>> = tensors
        .iter()
        .map(|(name, t)| TensorOut {
            name,
            dtype: t.dtype,
            dims: &t.dims,
            data: &t.data,
        })
        .collect();
    let mut out = Vec::new();
    gguf::write(&mut out, &metadata, &outs).map_err(|e| format!("cannot convert: {e}"))?;
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The published file's bytes (the real model, pulled into `SHOPFLOOR_MODEL_DIR`).
    fn published() -> Vec<u8> {
        let path = crate::pulled_path("smollm2").unwrap_or_else(|| {
            panic!(
                "this test needs the real model in {}: run `shopfloor models pull smollm2`",
                crate::model_dir().display()
            )
        });
        fs::read(path).expect("read the model")
    }

    /// `bytes` written to a model file of its own folder; loading it must fail with a
    /// [`LocalError::BadModel`] naming that file, whose message is returned.
    fn refused(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broken.gguf");
        fs::write(&path, bytes).expect("write");
        match load(&path, "0") {
            Err(LocalError::BadModel {
                path: named,
                message,
            }) => {
                assert_eq!(named, path);
                assert!(!cache_path(&path).exists(), "cached a broken file");
                message
            }
            Err(other) => panic!("expected BadModel, got {other:?}"),
            Ok(_) => panic!("loaded a broken file"),
        }
    }

    #[test]
    fn a_truncated_model_is_a_bad_model_naming_the_file() {
        let bytes = published();
        // Inside the tokenizer's metadata, then inside the tensor data.
        for len in [3, 1_000, 10_000_000, bytes.len() - 1] {
            let message = refused(&bytes[..len]);
            assert!(message.contains("truncated"), "cut at {len}: {message}");
        }
    }

    #[test]
    fn a_garbled_model_is_a_bad_model_saying_what_is_wrong() {
        let bytes = published();
        let mut not_gguf = bytes.clone();
        not_gguf[..4].copy_from_slice(b"GGML");
        assert!(refused(&not_gguf).contains("not a GGUF file"));
        // The value type of the first metadata entry, `general.architecture`.
        let mut bad_type = bytes.clone();
        let at = 24 + 8 + "general.architecture".len();
        bad_type[at..at + 4].copy_from_slice(&77u32.to_le_bytes());
        assert!(refused(&bad_type).contains("value type 77"));
        // The architecture's value renamed: the loader finds no llama metadata for it.
        let mut renamed = bytes;
        let key = b"llama.attention.head_count_kv";
        let found = renamed
            .windows(key.len())
            .position(|w| w == key)
            .expect("the key is in the header");
        renamed[found..found + 5].copy_from_slice(b"ll4ma");
        let message = refused(&renamed);
        assert!(
            message.contains("llama.attention.head_count_kv"),
            "{message}"
        );
    }

    #[test]
    fn a_cache_for_another_source_is_rebuilt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("model.gguf");
        fs::write(&source, published()).expect("write");
        let first = load(&source, "one").expect("converts");
        assert_eq!(first.weights_path, source);
        let cached = load(&source, "one").expect("from the cache");
        assert_eq!(cached.weights_path, cache_path(&source));
        // Another hash: the cache is stale and is replaced.
        let rebuilt = load(&source, "two").expect("converts again");
        assert_eq!(rebuilt.weights_path, source);
        let header = Gguf::read(&mut BufReader::new(
            fs::File::open(cache_path(&source)).expect("cache"),
        ))
        .expect("a GGUF cache");
        assert_eq!(
            header.get(SOURCE_SHA_KEY).and_then(Value::as_str),
            Some("two")
        );
        // A cache cut short is ignored, not an error.
        let bytes = fs::read(cache_path(&source)).expect("read");
        fs::write(cache_path(&source), &bytes[..bytes.len() / 2]).expect("cut");
        assert_eq!(load(&source, "two").expect("rebuilt").weights_path, source);
    }
}
