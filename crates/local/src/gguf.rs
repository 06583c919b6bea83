//! GGUF, llama.cpp's model file: a header of typed metadata and tensor descriptions, then the
//! tensors' bytes, each at an aligned offset.
//!
//! The reader takes versions 2 and 3 (little-endian) and checks every length and offset against
//! the file's size before it allocates, so a truncated or garbled file is an error that says
//! what is wrong and where, never a panic or a huge allocation. The writer writes version 2 with
//! 32-byte alignment, which every GGUF reader accepts.

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::quant::GgmlType;

/// "GGUF" read as a little-endian `u32`.
const MAGIC: u32 = 0x4655_4747;
/// The alignment of tensor data when the metadata does not say (`general.alignment`).
const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's limits: longer strings or arrays, or more dimensions, mean a broken file.
const MAX_STRING: u64 = 1 << 30;
const MAX_ITEMS: u64 = 1 << 30;
const MAX_DIMS: u32 = 4;
/// How deep arrays of arrays may nest; bounds the reader's recursion.
const MAX_DEPTH: usize = 16;

/// The type of a metadata value, as numbered in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

const VALUE_TYPES: [ValueType; 13] = [
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::Bool,
    ValueType::String,
    ValueType::Array,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

impl ValueType {
    fn id(self) -> u32 {
        VALUE_TYPES.iter().position(|t| *t == self).unwrap_or(0) as u32
    }

    /// The fewest bytes one value of this type takes, to bound array lengths by the file size.
    fn min_bytes(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    /// The items' declared type, and the items (all of that type).
    Array(ValueType, Vec<Value>),
}

impl Value {
    fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F32(_) => ValueType::F32,
            Self::F64(_) => ValueType::F64,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(..) => ValueType::Array,
        }
    }

    /// An integer of any width, if it is one and not negative.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// An integer that fits an `i32`, if it is one.
    pub(crate) fn as_i32(&self) -> Option<i32> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::I8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v),
            Self::U32(v) => i32::try_from(v).ok(),
            Self::U64(v) => i32::try_from(v).ok(),
            Self::I64(v) => i32::try_from(v).ok(),
            _ => None,
        }
    }

    /// A floating-point number, if it is one.
    pub(crate) fn as_f32(&self) -> Option<f32> {
        match *self {
            Self::F32(v) => Some(v),
            Self::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    /// A string, if it is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(v) => Some(v),
            _ => None,
        }
    }

    /// An array's items, if it is one.
    pub(crate) fn as_array(&self) -> Option<&[Value]> {
        match self {
            Self::Array(_, items) => Some(items),
            _ => None,
        }
    }

    fn write<W: Write>(&self, w: &mut W) -> io::Result<()> {
        match self {
            Self::U8(v) => w.write_all(&[*v]),
            Self::I8(v) => w.write_all(&v.to_le_bytes()),
            Self::U16(v) => w.write_all(&v.to_le_bytes()),
            Self::I16(v) => w.write_all(&v.to_le_bytes()),
            Self::U32(v) => w.write_all(&v.to_le_bytes()),
            Self::I32(v) => w.write_all(&v.to_le_bytes()),
            Self::U64(v) => w.write_all(&v.to_le_bytes()),
            Self::I64(v) => w.write_all(&v.to_le_bytes()),
            Self::F32(v) => w.write_all(&v.to_le_bytes()),
            Self::F64(v) => w.write_all(&v.to_le_bytes()),
            Self::Bool(v) => w.write_all(&[u8::from(*v)]),
            Self::String(v) => write_string(w, v),
            Self::Array(item_type, items) => {
                if let Some(odd) = items.iter().find(|v| v.value_type() != *item_type) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("a {odd:?} in an array of {item_type:?}"),
                    ));
                }
                w.write_all(&item_type.id().to_le_bytes())?;
                w.write_all(&(items.len() as u64).to_le_bytes())?;
                items.iter().try_for_each(|v| v.write(w))
            }
        }
    }
}

/// Where a tensor's bytes are and how to read them.
#[derive(Debug, Clone)]
pub(crate) struct TensorInfo {
    pub(crate) name: String,
    pub(crate) dtype: GgmlType,
    /// Outermost first: a matrix is `[rows, columns]`, each row contiguous.
    pub(crate) dims: Vec<usize>,
    /// From the start of the tensor data.
    offset: u64,
    bytes: usize,
}

/// A tensor as stored: its type, shape and raw bytes.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    pub(crate) dtype: GgmlType,
    pub(crate) dims: Vec<usize>,
    pub(crate) data: Vec<u8>,
}

impl Tensor {
    /// `(rows, columns)` of a matrix, or why it is not one.
    pub(crate) fn matrix(&self) -> Result<(usize, usize), String> {
        match self.dims[..] {
            [rows, cols] => Ok((rows, cols)),
            ref dims => Err(format!(
                "expected a matrix, found a tensor of shape {dims:?}"
            )),
        }
    }
}

/// A GGUF file's header: metadata in file order, tensor descriptions, and where the data starts.
#[derive(Debug)]
pub(crate) struct Gguf {
    pub(crate) metadata: Vec<(String, Value)>,
    pub(crate) tensors: Vec<TensorInfo>,
    data_offset: u64,
}

impl Gguf {
    /// Read the header from `reader`, positioned at the start of the file. The message of an
    /// error says what is wrong and at which byte.
    pub(crate) fn read<R: Read + Seek>(reader: &mut R) -> Result<Self, String> {
        let size = reader
            .seek(SeekFrom::End(0))
            .and_then(|size| reader.seek(SeekFrom::Start(0)).map(|_| size))
            .map_err(|e| format!("cannot read the file: {e}"))?;
        let mut input = Input {
            reader,
            pos: 0,
            size,
        };
        let magic = input.u32("the magic number")?;
        if magic != MAGIC {
            return Err(format!(
                "not a GGUF file (it starts with {:02x?}, not \"GGUF\")",
                magic.to_le_bytes()
            ));
        }
        let version = input.u32("the version")?;
        if (2..=3).contains(&version.swap_bytes()) {
            return Err("big-endian GGUF files are not supported".to_owned());
        }
        if !(2..=3).contains(&version) {
            return Err(format!(
                "GGUF version {version} is not supported (versions 2 and 3 are)"
            ));
        }
        let tensor_count = input.u64("the tensor count")?;
        let kv_count = input.u64("the metadata count")?;
        // Each entry takes at least a length-prefixed name and a type: reject counts that
        // cannot fit before allocating for them.
        let least = kv_count
            .saturating_mul(8 + 4 + 1)
            .saturating_add(tensor_count.saturating_mul(8 + 4 + 4 + 8));
        if least > input.left() {
            return Err(format!(
                "the header declares {tensor_count} tensors and {kv_count} metadata entries, \
                 more than the {} bytes left in the file hold: it is truncated or corrupt",
                input.left()
            ));
        }
        let mut metadata: Vec<(String, Value)> = Vec::with_capacity(kv_count as usize);
        for i in 0..kv_count {
            let key = input.string(&format!("the key of metadata entry {i}"))?;
            let value_type = input.value_type(&key)?;
            let value = input.value(value_type, &key, 0)?;
            if metadata.iter().any(|(k, _)| *k == key) {
                return Err(format!("the metadata key {key} appears twice"));
            }
            metadata.push((key, value));
        }
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = input.string(&format!("the name of tensor {i}"))?;
            let info = input.tensor_info(name)?;
            if tensors.iter().any(|t| t.name == info.name) {
                return Err(format!("the tensor {} appears twice", info.name));
            }
            tensors.push(info);
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => v
                .as_u64()
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| format!("general.alignment is {v:?}, not a power of two"))?,
        };
        let data_offset = input.pos.next_multiple_of(alignment);
        let data_size = size.saturating_sub(data_offset);
        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(format!(
                    "tensor {} starts at offset {}, not a multiple of the alignment {alignment}",
                    t.name, t.offset
                ));
            }
            if t.offset.saturating_add(t.bytes as u64) > data_size {
                return Err(format!(
                    "tensor {} ({} bytes at offset {}) runs past the end of the file (the data \
                     section holds {data_size} bytes); the file is truncated",
                    t.name, t.bytes, t.offset
                ));
            }
        }
        Ok(Self {
            metadata,
            tensors,
            data_offset,
        })
    }

    /// The value of metadata `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor called `name`, read from `reader` (the file this header came from).
    pub(crate) fn tensor<R: Read + Seek>(
        &self,
        reader: &mut R,
        name: &str,
    ) -> Result<Tensor, String> {
        let info = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("the file has no tensor {name}"))?;
        let mut data = vec![0; info.bytes];
        reader
            .seek(SeekFrom::Start(self.data_offset + info.offset))
            .and_then(|_| reader.read_exact(&mut data))
            .map_err(|e| format!("cannot read tensor {name}: {e}"))?;
        Ok(Tensor {
            dtype: info.dtype,
            dims: info.dims.clone(),
            data,
        })
    }
}

/// The reader, its position and the file's size, so that every read is checked against what
/// is left.
struct Input<'a, R> {
    reader: &'a mut R,
    pos: u64,
    size: u64,
}

impl<R: Read> Input<'_, R> {
    fn left(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut b = [0; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), String> {
        if buf.len() as u64 > self.left() {
            return Err(format!(
                "the file ends at byte {} inside {what}; it is truncated",
                self.size
            ));
        }
        self.reader
            .read_exact(buf)
            .map_err(|e| format!("cannot read {what} at byte {}: {e}", self.pos))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.bytes(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.bytes(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed string; trailing NULs, which some writers add, are dropped.
    fn string(&mut self, what: &str) -> Result<String, String> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > MAX_STRING || len > self.left() {
            return Err(format!(
                "{what} at byte {at} claims {len} bytes, more than the {} left in the file: \
                 it is truncated or corrupt",
                self.left()
            ));
        }
        let mut buf = vec![0; len as usize];
        self.fill(&mut buf, what)?;
        while buf.last() == Some(&0) {
            buf.pop();
        }
        Ok(String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType, String> {
        let at = self.pos;
        let id = self.u32(&format!("the type of {key}"))?;
        VALUE_TYPES.get(id as usize).copied().ok_or_else(|| {
            format!("{key} has value type {id} at byte {at}, which GGUF does not define")
        })
    }

    fn value(&mut self, value_type: ValueType, key: &str, depth: usize) -> Result<Value, String> {
        Ok(match value_type {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.bytes(key)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.bytes(key)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.bytes(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.bytes(key)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.bytes(key)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.bytes(key)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.bytes(key)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.bytes(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.bytes(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.bytes(key)?)),
            ValueType::Bool => match self.bytes::<1>(key)? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => return Err(format!("{key} is a boolean of value {b}, not 0 or 1")),
            },
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => {
                if depth >= MAX_DEPTH {
                    return Err(format!("{key} nests arrays more than {MAX_DEPTH} deep"));
                }
                let item_type = self.value_type(key)?;
                let len = self.u64(key)?;
                if len > MAX_ITEMS || len.saturating_mul(item_type.min_bytes()) > self.left() {
                    return Err(format!(
                        "{key} claims {len} items, more than the {} bytes left in the file \
                         hold: it is truncated or corrupt",
                        self.left()
                    ));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                Value::Array(item_type, items)
            }
        })
    }

    fn tensor_info(&mut self, name: String) -> Result<TensorInfo, String> {
        let what = format!("the description of tensor {name}");
        let n_dims = self.u32(&what)?;
        if n_dims > MAX_DIMS {
            return Err(format!(
                "tensor {name} has {n_dims} dimensions (at most {MAX_DIMS})"
            ));
        }
        // The file lists the innermost (contiguous) dimension first.
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = self.u64(&what)?;
            dims.push(usize::try_from(d).map_err(|_| format!("tensor {name} is too large"))?);
        }
        dims.reverse();
        let type_id = self.u32(&what)?;
        let dtype = GgmlType::from_id(type_id).ok_or_else(|| {
            format!("tensor {name} has ggml type {type_id}, which shopfloor cannot read")
        })?;
        let offset = self.u64(&what)?;
        let elements = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format!("tensor {name} of shape {dims:?} is too large"))?;
        let inner = dims.last().copied().unwrap_or(1);
        if !inner.is_multiple_of(dtype.block_size()) {
            return Err(format!(
                "tensor {name} of shape {dims:?} does not split into {dtype:?} blocks of {}",
                dtype.block_size()
            ));
        }
        let bytes = (elements / dtype.block_size())
            .checked_mul(dtype.block_bytes())
            .ok_or_else(|| format!("tensor {name} of shape {dims:?} is too large"))?;
        Ok(TensorInfo {
            name,
            dtype,
            dims,
            offset,
            bytes,
        })
    }
}

/// A tensor to write: its name, type, shape (outermost first) and bytes.
pub(crate) struct TensorOut<'a> {
    pub(crate) name: &'a str,
    pub(crate) dtype: GgmlType,
    pub(crate) dims: &'a [usize],
    pub(crate) data: &'a [u8],
}

/// Write a version 2 GGUF file of `metadata` and `tensors`, in the order given, tensor data
/// aligned to 32 bytes.
pub(crate) fn write<W: Write>(
    w: &mut W,
    metadata: &[(&str, &Value)],
    tensors: &[TensorOut<'_>],
) -> io::Result<()> {
    let mut w = Counting {
        inner: w,
        written: 0,
    };
    w.write_all(&MAGIC.to_le_bytes())?;
    w.write_all(&2u32.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        write_string(&mut w, key)?;
        w.write_all(&value.value_type().id().to_le_bytes())?;
        value.write(&mut w)?;
    }
    let mut offset = 0u64;
    for t in tensors {
        write_string(&mut w, t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for &d in t.dims.iter().rev() {
            w.write_all(&(d as u64).to_le_bytes())?;
        }
        w.write_all(&t.dtype.id().to_le_bytes())?;
        w.write_all(&offset.to_le_bytes())?;
        offset = (offset + t.data.len() as u64).next_multiple_of(DEFAULT_ALIGNMENT);
    }
    pad(&mut w)?;
    for t in tensors {
        w.write_all(t.data)?;
        pad(&mut w)?;
    }
    Ok(())
}

fn write_string<W: Write>(w: &mut W, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// Zeros up to the next multiple of the alignment.
fn pad<W: Write>(w: &mut Counting<W>) -> io::Result<()> {
    let to = w.written.next_multiple_of(DEFAULT_ALIGNMENT);
    let zeros = [0u8; DEFAULT_ALIGNMENT as usize];
    w.write_all(&zeros[..(to - w.written) as usize])
}

/// A writer that counts what passes through it, for the padding.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[path = "gguf_tests.rs"]
mod tests;
