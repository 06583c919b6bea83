//! The GGUF reader and writer: round trips of every value type, and broken files refused
//! with a message rather than a panic.

use std::io::Cursor;

use super::*;

fn sample_metadata() -> Vec<(String, Value)> {
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("u8".into(), Value::U8(7)),
        ("i8".into(), Value::I8(-7)),
        ("u16".into(), Value::U16(65_000)),
        ("i16".into(), Value::I16(-30_000)),
        ("u32".into(), Value::U32(4_000_000_000)),
        ("i32".into(), Value::I32(-2_000_000_000)),
        ("u64".into(), Value::U64(u64::MAX)),
        ("i64".into(), Value::I64(i64::MIN)),
        ("f32".into(), Value::F32(1e-5)),
        ("f64".into(), Value::F64(-0.125)),
        ("bool".into(), Value::Bool(true)),
        (
            "strings".into(),
            Value::Array(
                ValueType::String,
                vec![Value::String("Ġt".into()), Value::String("日本".into())],
            ),
        ),
        (
            "nested".into(),
            Value::Array(
                ValueType::Array,
                vec![Value::Array(
                    ValueType::I32,
                    vec![Value::I32(3), Value::I32(-4)],
                )],
            ),
        ),
        ("empty".into(), Value::Array(ValueType::F32, Vec::new())),
    ]
}

/// A small file: the sample metadata, a 2×32 F32 matrix and a 64-value Q8_0 vector.
fn sample_file() -> Vec<u8> {
    let metadata = sample_metadata();
    let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let matrix: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let q8 = crate::quant::quantize_q8_0(&[0.5; 64]);
    let tensors = [
        TensorOut {
            name: "matrix",
            dtype: GgmlType::F32,
            dims: &[2, 32],
            data: &matrix,
        },
        TensorOut {
            name: "q8",
            dtype: GgmlType::Q8_0,
            dims: &[64],
            data: &q8,
        },
    ];
    let mut out = Vec::new();
    write(&mut out, &refs, &tensors).expect("write");
    out
}

#[test]
fn every_value_type_and_tensor_round_trips() {
    let bytes = sample_file();
    assert_eq!(&bytes[..4], b"GGUF");
    let mut reader = Cursor::new(bytes);
    let file = Gguf::read(&mut reader).expect("read back");
    assert_eq!(file.metadata, sample_metadata());
    assert_eq!(file.get("u32").and_then(Value::as_u64), Some(4_000_000_000));
    assert_eq!(file.get("i8").and_then(Value::as_u64), None);
    assert_eq!(file.get("f32").and_then(Value::as_f32), Some(1e-5));
    assert_eq!(file.get("missing"), None);

    let matrix = file.tensor(&mut reader, "matrix").expect("matrix");
    assert_eq!(
        (matrix.dtype, matrix.matrix()),
        (GgmlType::F32, Ok((2, 32)))
    );
    assert_eq!(&matrix.data[4..8], &1f32.to_le_bytes());
    let q8 = file.tensor(&mut reader, "q8").expect("q8");
    assert_eq!(q8.dims, [64]);
    assert!(q8.matrix().is_err());
    assert_eq!(q8.data, crate::quant::quantize_q8_0(&[0.5; 64]));
    let missing = file
        .tensor(&mut reader, "nope")
        .expect_err("no such tensor");
    assert!(missing.contains("no tensor nope"), "{missing}");
}

#[test]
fn tensor_data_is_aligned_to_32_bytes() {
    let bytes = sample_file();
    let file = Gguf::read(&mut Cursor::new(&bytes)).expect("read");
    assert_eq!(file.data_offset % 32, 0);
    let offsets: Vec<u64> = file.tensors.iter().map(|t| t.offset).collect();
    // 256 bytes of F32, then the Q8_0 vector at the next multiple of 32.
    assert_eq!(offsets, [0, 256]);
    assert_eq!(bytes.len() as u64, file.data_offset + 256 + 96);
}

#[test]
fn a_truncated_file_is_an_error_at_every_length() {
    let bytes = sample_file();
    let file = Gguf::read(&mut Cursor::new(&bytes)).expect("read");
    // Only the padding after the last tensor's 68 bytes may go missing unnoticed.
    let end = (file.data_offset + 256 + 68) as usize;
    for len in 0..end {
        assert!(
            Gguf::read(&mut Cursor::new(&bytes[..len])).is_err(),
            "cut at {len} of {end} went unnoticed"
        );
    }
    let message = Gguf::read(&mut Cursor::new(&bytes[..end - 1])).expect_err("cut");
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn garbled_bytes_give_errors_not_panics() {
    let bytes = sample_file();
    let mut seed = 17u32;
    for _ in 0..2000 {
        let mut garbled = bytes.clone();
        for _ in 0..4 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let at = (seed >> 8) as usize % garbled.len();
            garbled[at] = (seed >> 3) as u8;
        }
        if let Ok(file) = Gguf::read(&mut Cursor::new(&garbled)) {
            let mut reader = Cursor::new(&garbled);
            for t in &file.tensors {
                let _ = file.tensor(&mut reader, &t.name);
            }
        }
    }
}

#[test]
fn broken_headers_say_what_is_wrong() {
    let good = sample_file();
    let with = |at: usize, patch: &[u8]| {
        let mut b = good.clone();
        b[at..at + patch.len()].copy_from_slice(patch);
        Gguf::read(&mut Cursor::new(b)).expect_err("broken")
    };
    assert!(with(0, b"GGML").contains("not a GGUF file"));
    assert!(with(4, &1u32.to_le_bytes()).contains("version 1 is not supported"));
    assert!(with(4, &3u32.to_be_bytes()).contains("big-endian"));
    let huge = with(8, &u64::MAX.to_le_bytes());
    assert!(huge.contains("more than the"), "{huge}");
    // The first key's length claims more than the file holds.
    let key = with(24, &(1u64 << 40).to_le_bytes());
    assert!(key.contains("truncated or corrupt"), "{key}");
    // The first value's type is not a GGUF type.
    let key_len = "general.architecture".len();
    let value_type = with(32 + key_len, &99u32.to_le_bytes());
    assert!(value_type.contains("value type 99"), "{value_type}");
}

#[test]
fn inconsistent_headers_are_refused() {
    let header = |metadata: &[(&str, &Value)], tensors: &[TensorOut<'_>]| {
        let mut out = Vec::new();
        write(&mut out, metadata, tensors).expect("write");
        Gguf::read(&mut Cursor::new(out))
    };
    let one = Value::U32(1);
    let twice = header(&[("k", &one), ("k", &one)], &[]).expect_err("duplicate");
    assert!(twice.contains("appears twice"), "{twice}");
    let odd = Value::U32(3);
    let alignment = header(&[("general.alignment", &odd)], &[]).expect_err("alignment");
    assert!(alignment.contains("power of two"), "{alignment}");
    let q8 = crate::quant::quantize_q8_0(&[1.0; 32]);
    let ragged = header(
        &[],
        &[TensorOut {
            name: "ragged",
            dtype: GgmlType::Q8_0,
            dims: &[2, 16],
            data: &q8,
        }],
    )
    .expect_err("blocks across rows");
    assert!(ragged.contains("does not split"), "{ragged}");
    let bad_bool = {
        let mut out = Vec::new();
        write(&mut out, &[("flag", &Value::Bool(true))], &[]).expect("write");
        // Header (24 bytes), key length and "flag" (12), value type (4), then the value.
        out[40] = 2;
        Gguf::read(&mut Cursor::new(out)).expect_err("bool of 2")
    };
    assert!(bad_bool.contains("not 0 or 1"), "{bad_bool}");
}

#[test]
fn mixed_arrays_are_not_written() {
    let mixed = Value::Array(ValueType::U8, vec![Value::U8(1), Value::I8(1)]);
    let mut out = Vec::new();
    assert!(write(&mut out, &[("mixed", &mixed)], &[]).is_err());
}
