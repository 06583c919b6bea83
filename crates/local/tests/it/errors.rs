//! Clear errors when the weights are missing or not the published file.

use std::fs;

use shopfloor_local::{known_model, pulled_path_in, LocalError, LocalProvider};

#[test]
fn a_missing_model_says_how_to_pull_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(pulled_path_in(dir.path(), "smollm2"), None);
    let error = LocalProvider::shared_in(dir.path(), "smollm2").expect_err("nothing to load");
    assert!(matches!(error, LocalError::NotPulled { .. }), "{error:?}");
    assert!(
        error.to_string().contains("shopfloor models pull smollm2"),
        "{error}"
    );
}

#[test]
fn a_corrupt_model_fails_its_checksum() {
    let model = known_model("smollm2").expect("known");
    let dir = tempfile::tempdir().expect("tempdir");
    // Right size, wrong bytes: only the hash can tell.
    let mut bytes = vec![0u8; model.size_bytes as usize];
    bytes[..4].copy_from_slice(b"GGUF");
    fs::write(dir.path().join(model.file_name), &bytes).expect("write");
    assert_eq!(pulled_path_in(dir.path(), "smollm2"), None);
    let error = LocalProvider::shared_in(dir.path(), "smollm2").expect_err("corrupt");
    assert!(matches!(error, LocalError::Checksum { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(model.sha256) && message.contains("delete it"),
        "{message}"
    );
}

#[test]
fn a_truncated_model_is_reported_without_hashing() {
    let model = known_model("smollm2").expect("known");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join(model.file_name), b"GGUF and not much else").expect("write");
    let error = LocalProvider::shared_in(dir.path(), "smollm2").expect_err("truncated");
    assert!(error.to_string().contains("bytes instead of"), "{error}");
}

#[test]
fn an_unknown_model_lists_the_known_ones() {
    let error = LocalProvider::shared_in(std::path::Path::new("/nonexistent"), "gpt-9")
        .expect_err("unknown");
    assert!(error.to_string().contains("smollm2"), "{error}");
}
