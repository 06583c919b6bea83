//! Reading `f32` tensors from a safetensors file: an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, then the bytes.
//!
//! The format is small enough that a reader of our own costs less than a dependency; only what
//! the sentence encoder needs (`F32`, little-endian) is read.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::LocalError;

/// Headers larger than this are not a model we know (the real one is a few KiB).
const MAX_HEADER: u64 = 16 << 20;

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// A whole safetensors file in memory, with its header parsed.
pub(crate) struct SafeTensors {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
    entries: HashMap<String, Entry>,
}

impl SafeTensors {
    /// Read and parse the file at `path`.
    pub(crate) fn read(path: &Path) -> Result<Self, LocalError> {
        let bytes = std::fs::read(path).map_err(LocalError::io("cannot read", path))?;
        let bad = |message: String| LocalError::BadModel {
            path: path.to_owned(),
            message,
        };
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("shorter than a safetensors header".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER || 8 + header_len as usize > bytes.len() {
            return Err(bad(format!("a header of {header_len} bytes does not fit")));
        }
        let data_start = 8 + header_len as usize;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start])
                .map_err(|e| bad(format!("the header is not JSON: {e}")))?;
        let mut entries = HashMap::new();
        for (name, value) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry: Entry =
                serde_json::from_value(value).map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
            entries.insert(name, entry);
        }
        Ok(Self {
            path: path.to_owned(),
            bytes,
            data_start,
            entries,
        })
    }

    /// The `f32` values of tensor `name`, checked to have `shape`.
    pub(crate) fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LocalError> {
        let bad = |message: String| LocalError::BadModel {
            path: self.path.clone(),
            message: format!("tensor `{name}`: {message}"),
        };
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| bad("missing".into()))?;
        if entry.dtype != "F32" {
            return Err(bad(format!("dtype {} where F32 was expected", entry.dtype)));
        }
        if entry.shape != shape {
            return Err(bad(format!(
                "shape {:?} where {shape:?} was expected",
                entry.shape
            )));
        }
        let [start, end] = entry.data_offsets;
        let count: usize = shape.iter().product();
        let range = self.data_start + start..self.data_start + end;
        let data = self
            .bytes
            .get(range)
            .filter(|d| d.len() == count * 4)
            .ok_or_else(|| bad(format!("byte range {start}..{end} is not {count} values")))?;
        Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> tempfile::NamedTempFile {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write");
        file
    }

    #[test]
    fn reads_a_tensor_and_checks_its_shape() {
        let data: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f = file(
            r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#,
            &data,
        );
        let st = SafeTensors::read(f.path()).expect("parse");
        assert_eq!(st.f32("w", &[2, 2]).expect("w"), [1.5, -2.0, 0.25, 8.0]);
        let wrong = st.f32("w", &[4]).expect_err("shape").to_string();
        assert!(wrong.contains("shape [2, 2]"), "{wrong}");
        assert!(st.f32("v", &[1]).is_err());
    }

    #[test]
    fn a_cut_off_file_is_an_error_not_a_panic() {
        let f = file(
            r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &[0; 8],
        );
        let st = SafeTensors::read(f.path()).expect("header parses");
        assert!(st.f32("w", &[4]).is_err());
        let g = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(g.path(), 1_000u64.to_le_bytes()).expect("write");
        assert!(SafeTensors::read(g.path()).is_err());
    }
}
