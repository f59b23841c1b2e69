//! Safetensors weights read one tensor at a time.
//!
//! Reading a whole file into memory and then building tensors from it holds every weight
//! twice; memory-mapping needs `unsafe`, which the workspace forbids. [`SafetensorsWeights`]
//! parses only the headers when it opens the files and reads a tensor's bytes when the model
//! asks for it, converting them to the compute dtype in chunks of [`CHUNK_BYTES`]: loading
//! holds the weights built so far plus one tensor.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use half::{bf16, f16};
use safetensors::tensor::{Metadata, TensorInfo, TensorView};
use safetensors::Dtype;

use crate::error::{Error, Result};

/// File bytes read and converted at a time.
const CHUNK_BYTES: usize = 1 << 20;
/// The largest header the `safetensors` crate accepts.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One safetensors file, its header parsed.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    file: Mutex<File>,
    /// Where the tensor data begins: after the 8-byte length and the JSON header.
    data_start: u64,
}

#[derive(Debug)]
struct Entry {
    shard: usize,
    info: TensorInfo,
}

/// The tensors of one or more safetensors files (the shards of a model), read on demand.
#[derive(Debug)]
pub struct SafetensorsWeights {
    shards: Vec<Shard>,
    tensors: HashMap<String, Entry>,
    /// The first failure of [`SimpleBackend::get`], which can only return a candle error:
    /// kept here so that the caller can report it with its file and tensor.
    failure: Mutex<Option<Error>>,
}

impl SafetensorsWeights {
    /// Opens `files` and reads their headers; a tensor in several files is taken from the
    /// last. A truncated or malformed file is an error naming it.
    pub fn open(files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = HashMap::new();
        for (index, path) in files.iter().enumerate() {
            let (file, data_start, metadata) = read_header(path)?;
            for (name, info) in metadata.tensors() {
                tensors.insert(
                    name,
                    Entry {
                        shard: index,
                        info: info.clone(),
                    },
                );
            }
            shards.push(Shard {
                path: path.clone(),
                file: Mutex::new(file),
                data_start,
            });
        }
        Ok(SafetensorsWeights {
            shards,
            tensors,
            failure: Mutex::new(None),
        })
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The stored shape of `name`, if it exists.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.info.shape.as_slice())
    }

    /// Reads `name` and converts it to `dtype` on `device`. Float tensors (f32, bf16, f16)
    /// are converted chunk by chunk, rounding as candle's `to_dtype` does; other types are
    /// read whole, then converted by candle.
    pub fn read(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let entry = self.tensors.get(name).ok_or_else(|| Error::Tensor {
            path: self.describe_files(),
            tensor: name.to_owned(),
            reason: "no such tensor".to_owned(),
        })?;
        let shard = &self.shards[entry.shard];
        let fail = |reason: String| Error::Tensor {
            path: shard.path.clone(),
            tensor: name.to_owned(),
            reason,
        };
        let (start, end) = entry.info.data_offsets;
        let shape = Shape::from(entry.info.shape.clone());
        let count = shape.elem_count();
        // A poisoned lock means a panic while reading this file; its position is reset by
        // the seek below, so the file handle is still usable.
        let mut file = shard
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.seek(SeekFrom::Start(shard.data_start + start as u64))
            .map_err(|e| fail(format!("cannot seek: {e}")))?;
        let mut bytes = (&mut *file).take((end - start) as u64);
        let io = |e: std::io::Error| fail(format!("cannot read its bytes: {e}"));
        let tensor = match (entry.info.dtype, dtype) {
            (Dtype::F32, DType::F32) => {
                from_vec(convert(&mut bytes, count, f32::from_le_bytes).map_err(io)?)
            }
            (Dtype::BF16, DType::F32) => from_vec(
                convert(&mut bytes, count, |b| bf16::from_le_bytes(b).to_f32()).map_err(io)?,
            ),
            (Dtype::F16, DType::F32) => from_vec(
                convert(&mut bytes, count, |b| f16::from_le_bytes(b).to_f32()).map_err(io)?,
            ),
            (Dtype::BF16, DType::BF16) => {
                from_vec(convert(&mut bytes, count, bf16::from_le_bytes).map_err(io)?)
            }
            (Dtype::F32, DType::BF16) => from_vec(
                convert(&mut bytes, count, |b| bf16::from_f32(f32::from_le_bytes(b)))
                    .map_err(io)?,
            ),
            (Dtype::F16, DType::BF16) => from_vec(
                convert(&mut bytes, count, |b| {
                    bf16::from_f32(f16::from_le_bytes(b).to_f32())
                })
                .map_err(io)?,
            ),
            (Dtype::F16, DType::F16) => {
                from_vec(convert(&mut bytes, count, f16::from_le_bytes).map_err(io)?)
            }
            (Dtype::F32, DType::F16) => from_vec(
                convert(&mut bytes, count, |b| f16::from_f32(f32::from_le_bytes(b))).map_err(io)?,
            ),
            (Dtype::BF16, DType::F16) => from_vec(
                convert(&mut bytes, count, |b| {
                    f16::from_f32(bf16::from_le_bytes(b).to_f32())
                })
                .map_err(io)?,
            ),
            (stored, _) => {
                let mut raw = Vec::with_capacity(end - start);
                bytes.read_to_end(&mut raw).map_err(io)?;
                if raw.len() != end - start {
                    return Err(fail(format!(
                        "{} of its {} bytes in the file",
                        raw.len(),
                        end - start
                    )));
                }
                let view = TensorView::new(stored, entry.info.shape.clone(), &raw)
                    .map_err(|e| fail(e.to_string()))?;
                view.load(&Device::Cpu)
            }
        };
        drop(file);
        // Same dtype and device: no copies.
        tensor
            .and_then(|t| t.reshape(shape)?.to_dtype(dtype)?.to_device(device))
            .map_err(|e| fail(e.to_string()))
    }

    /// Takes the error that made the last [`SimpleBackend`] call fail, if it was ours.
    pub fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Records `error` for [`SafetensorsWeights::take_failure`] and returns it as a candle
    /// error (whose text still names the file and tensor).
    fn record(&self, error: Error) -> candle_core::Error {
        let text = error.to_string();
        let mut slot = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(error);
        candle_core::Error::Msg(text)
    }

    /// The files, for errors about a tensor found in none of them.
    fn describe_files(&self) -> PathBuf {
        match self.shards.as_slice() {
            [one] => one.path.clone(),
            _ => self
                .shards
                .first()
                .and_then(|s| s.path.parent())
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }
}

/// On a reference: `VarBuilder` owns its backend, and the loader still asks
/// [`SafetensorsWeights::take_failure`] afterwards.
impl SimpleBackend for &SafetensorsWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let Some(stored) = self.shape(name) else {
            // candle's own error, as every backend reports a missing tensor.
            return Err(candle_core::Error::CannotFindTensor {
                path: name.to_owned(),
            });
        };
        if stored != shape.dims() {
            let shard = self.tensors.get(name).map(|e| e.shard).unwrap_or(0);
            return Err(self.record(Error::Tensor {
                path: self.shards[shard].path.clone(),
                tensor: name.to_owned(),
                reason: format!("shape {stored:?} in the file, {:?} expected", shape.dims()),
            }));
        }
        self.read(name, dtype, device).map_err(|e| self.record(e))
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if !self.contains(name) {
            return Err(candle_core::Error::CannotFindTensor {
                path: name.to_owned(),
            });
        }
        self.read(name, dtype, device).map_err(|e| self.record(e))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

fn from_vec<T: candle_core::WithDType>(data: Vec<T>) -> Result<Tensor, candle_core::Error> {
    let n = data.len();
    Tensor::from_vec(data, n, &Device::Cpu)
}

/// Reads `count` little-endian values of `N` bytes each from `reader`, converting each with
/// `f`, [`CHUNK_BYTES`] at a time.
fn convert<T, const N: usize>(
    reader: &mut impl Read,
    count: usize,
    f: impl Fn([u8; N]) -> T,
) -> std::io::Result<Vec<T>> {
    let mut out = Vec::with_capacity(count);
    let mut chunk = vec![0u8; CHUNK_BYTES.min(count * N)];
    while out.len() < count {
        let values = (count - out.len()).min(CHUNK_BYTES / N);
        let buf = &mut chunk[..values * N];
        reader.read_exact(buf)?;
        out.extend(buf.chunks_exact(N).map(|b| {
            let mut value = [0u8; N];
            value.copy_from_slice(b);
            f(value)
        }));
    }
    Ok(out)
}

/// Opens a safetensors file and parses its header: the file, where its data begins, and the
/// tensors. The header must describe exactly the bytes the file has.
fn read_header(path: &Path) -> Result<(File, u64, Metadata)> {
    let bad = |reason: String| Error::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file
        .metadata()
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if file_len < 8 {
        return Err(bad(format!(
            "{file_len} bytes, fewer than the 8 of the header length"
        )));
    }
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(bad(format!(
            "a header of {header_len} bytes in a file of {file_len}"
        )));
    }
    // Bounded by MAX_HEADER_BYTES just above.
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| bad(format!("invalid header: {e}")))?;
    let data_start = 8 + header_len;
    let expected = data_start + metadata.data_len() as u64;
    if expected != file_len {
        let what = if expected > file_len {
            "truncated"
        } else {
            "unexpected bytes after the last tensor"
        };
        return Err(bad(format!(
            "{what}: the header describes {expected} bytes, the file has {file_len}"
        )));
    }
    Ok((file, data_start, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_conversion_reads_every_value_across_chunk_boundaries() {
        let count = CHUNK_BYTES / 4 * 2 + 3;
        let values: Vec<f32> = (0..count).map(|i| i as f32 * 0.5).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let read = convert(&mut bytes.as_slice(), count, f32::from_le_bytes).unwrap();
        assert_eq!(read, values);
        let short = convert(&mut &bytes[..bytes.len() - 1], count, f32::from_le_bytes);
        assert!(short.is_err());
    }
}
