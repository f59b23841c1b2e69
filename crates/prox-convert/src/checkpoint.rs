//! litgpt checkpoints as PyTorch writes them: a zip archive (entries stored, not compressed)
//! holding `ARCHIVE/data.pkl`, the pickled object, and one `ARCHIVE/data/KEY` entry per
//! storage.
//!
//! Opening a checkpoint reads the pickle only. Tensor bytes are read one tensor at a time, when
//! asked for, each entry checked against its CRC-32; the optimizer's storages are never read.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{io, Error, Result};
use crate::pickle::{self, TensorRef, Value};

/// The largest `data.pkl` read: a fabric checkpoint's pickle is a few hundred KB.
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// Where an archive entry's bytes are.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: u64,
    size: u64,
    crc32: u32,
    stored: bool,
}

/// An opened checkpoint: its model tensors (not yet read) and what else the pickle says.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    file: File,
    /// Archive entries by name, the archive's folder prefix removed (`data/0`, `byteorder`).
    entries: HashMap<String, Entry>,
    tensors: Vec<(String, TensorRef)>,
    hparams: Option<Value>,
    iter_num: Option<i64>,
}

impl Checkpoint {
    /// Opens `iter-NNNNNN-ckpt.pth` (fabric's full state: the model under `model`) or
    /// `lit_model.pth` (the model's state dict itself), as the reference's
    /// `lit_weights.get("model", lit_weights)` does.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let file = File::open(path).map_err(io(path))?;
        let entries = read_directory(path, &file)?;
        let (prefix, entries) = strip_archive_prefix(path, entries)?;
        let mut checkpoint = Checkpoint {
            path: path.to_owned(),
            file,
            entries,
            tensors: Vec::new(),
            hparams: None,
            iter_num: None,
        };
        if let Some(order) = checkpoint.entries.get("byteorder").copied() {
            let order = checkpoint.read_entry("byteorder", order)?;
            if order != b"little" {
                return Err(checkpoint.layout(format!(
                    "byte order {:?}: only little-endian checkpoints are read",
                    String::from_utf8_lossy(&order)
                )));
            }
        }
        let pickle_entry = checkpoint.entries["data.pkl"];
        if pickle_entry.size > MAX_PICKLE_BYTES {
            return Err(checkpoint.layout(format!(
                "{prefix}data.pkl is {} bytes, more than a checkpoint's pickle can be",
                pickle_entry.size
            )));
        }
        let bytes = checkpoint.read_entry("data.pkl", pickle_entry)?;
        let root = pickle::parse(&bytes).map_err(|source| Error::Pickle {
            path: path.to_owned(),
            source,
        })?;
        checkpoint.take_state(root)?;
        Ok(checkpoint)
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's tensors, in the order of the state dict.
    pub fn tensors(&self) -> &[(String, TensorRef)] {
        &self.tensors
    }

    /// Fabric's `hparams` (absent in `lit_model.pth`).
    pub fn hparams(&self) -> Option<&Value> {
        self.hparams.as_ref()
    }

    /// Fabric's `iter_num`.
    pub fn iter_num(&self) -> Option<i64> {
        self.iter_num
    }

    fn layout(&self, reason: impl Into<String>) -> Error {
        Error::Layout {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn take_state(&mut self, root: Value) -> Result<()> {
        let Value::Dict(root) = root else {
            return Err(self.layout("the pickled object is not a dict"));
        };
        let mut model = None;
        let mut others = Vec::new();
        for (key, value) in root.items {
            match (key.as_str(), value) {
                (Some("model"), Value::Dict(dict)) => model = Some(dict.items),
                (Some("hparams"), value) => self.hparams = Some(value),
                (Some("iter_num"), value) => self.iter_num = value.as_int(),
                (_, value) => others.push((key, value)),
            }
        }
        // Without `model`, the dict is the state dict itself; fabric's other entries
        // (`optimizer`, `step_count`) are left unread.
        let model = match model {
            Some(model) => model,
            None => {
                self.hparams = None;
                others
            }
        };
        let mut seen = HashSet::new();
        for (key, value) in model {
            let Value::Str(name) = key else {
                return Err(self.layout("a model state dict key that is not a string"));
            };
            let Value::Tensor(tensor) = value else {
                return Err(Error::Tensor {
                    path: self.path.clone(),
                    tensor: name,
                    reason: "not a tensor".to_owned(),
                });
            };
            if !seen.insert(name.clone()) {
                return Err(Error::Tensor {
                    path: self.path.clone(),
                    tensor: name,
                    reason: "appears twice in the state dict".to_owned(),
                });
            }
            self.tensors.push((name, tensor));
        }
        if self.tensors.is_empty() {
            return Err(self.layout("no model tensors"));
        }
        Ok(())
    }

    fn read_entry(&self, name: &str, entry: Entry) -> Result<Vec<u8>> {
        let damaged = |reason: String| Error::Damaged {
            path: self.path.clone(),
            entry: name.to_owned(),
            reason,
        };
        if !entry.stored {
            return Err(damaged(
                "compressed; PyTorch stores entries uncompressed".to_owned(),
            ));
        }
        let len = usize::try_from(entry.size)
            .map_err(|_| damaged("larger than the address space".to_owned()))?;
        // No larger than the file: the directory's sizes were checked against its length.
        let mut bytes = vec![0u8; len];
        self.file
            .read_exact_at(&mut bytes, entry.offset)
            .map_err(|e| damaged(format!("reading {len} bytes at {}: {e}", entry.offset)))?;
        let crc = crc32fast::hash(&bytes);
        if crc != entry.crc32 {
            return Err(damaged(format!(
                "CRC-32 {crc:08x}, the archive says {:08x}",
                entry.crc32
            )));
        }
        Ok(bytes)
    }

    /// A tensor's bytes in row-major order, little-endian, as safetensors stores them.
    pub fn read_tensor(&self, name: &str, tensor: &TensorRef) -> Result<Vec<u8>> {
        let tensor_error = |reason: String| Error::Tensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            reason,
        };
        let storage = &tensor.storage;
        let entry_name = format!("data/{}", storage.key);
        let entry = *self.entries.get(&entry_name).ok_or_else(|| {
            tensor_error(format!("its storage {entry_name} is not in the archive"))
        })?;
        let elem = storage.dtype.size() as u64;
        if Some(entry.size) != storage.numel.checked_mul(elem) {
            return Err(tensor_error(format!(
                "storage {entry_name} holds {} bytes, not {} elements of {elem} bytes",
                entry.size, storage.numel
            )));
        }
        let bytes = self.read_entry(&entry_name, entry)?;
        let numel = tensor.numel();
        if tensor.offset == 0 && numel == storage.numel && tensor.is_contiguous() {
            return Ok(bytes);
        }
        let elem = elem as usize;
        if tensor.is_contiguous() {
            // The pickle checked that the tensor lies inside its storage.
            let start = tensor.offset as usize * elem;
            let end = start + numel as usize * elem;
            return Ok(bytes[start..end].to_vec());
        }
        Ok(gather(&bytes, tensor, elem))
    }
}

/// Copies a strided view element by element into row-major order.
fn gather(bytes: &[u8], tensor: &TensorRef, elem: usize) -> Vec<u8> {
    let numel = tensor.numel() as usize;
    let mut out = Vec::with_capacity(numel * elem);
    let mut index = vec![0u64; tensor.shape.len()];
    for _ in 0..numel {
        let at: u64 = tensor.offset
            + index
                .iter()
                .zip(&tensor.stride)
                .map(|(i, s)| i * s)
                .sum::<u64>();
        let start = at as usize * elem;
        out.extend_from_slice(&bytes[start..start + elem]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < tensor.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

fn not_a_checkpoint(path: &Path, reason: impl Into<String>) -> Error {
    Error::NotACheckpoint {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Every entry of the zip's central directory, with where its data starts.
fn read_directory(path: &Path, file: &File) -> Result<HashMap<String, Entry>> {
    let reader = BufReader::new(file.try_clone().map_err(io(path))?);
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| not_a_checkpoint(path, e.to_string()))?;
    let file_len = file.metadata().map_err(io(path))?.len();
    let mut entries = HashMap::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| not_a_checkpoint(path, format!("entry {index}: {e}")))?;
        let name = std::str::from_utf8(entry.name_raw())
            .map_err(|_| {
                not_a_checkpoint(path, format!("entry {index}: a name that is not UTF-8"))
            })?
            .to_owned();
        let offset = entry
            .data_start()
            .ok_or_else(|| not_a_checkpoint(path, format!("{name}: no data offset")))?;
        let stored = entry.compression() == zip::CompressionMethod::Stored;
        let size = entry.size();
        if stored && entry.compressed_size() != size {
            return Err(not_a_checkpoint(
                path,
                format!("{name}: stored with two different sizes"),
            ));
        }
        if offset
            .checked_add(entry.compressed_size())
            .is_none_or(|end| end > file_len)
        {
            return Err(not_a_checkpoint(
                path,
                format!("{name}: its data runs past the end of the file (truncated?)"),
            ));
        }
        let crc32 = entry.crc32();
        entries.insert(
            name,
            Entry {
                offset,
                size,
                crc32,
                stored,
            },
        );
    }
    Ok(entries)
}

/// PyTorch puts every entry under one folder named after the file it first saved to
/// (`iter-002000-ckpt/data.pkl`); entries are returned relative to it.
fn strip_archive_prefix(
    path: &Path,
    entries: HashMap<String, Entry>,
) -> Result<(String, HashMap<String, Entry>)> {
    let mut pickles = entries
        .keys()
        .filter(|name| *name == "data.pkl" || name.ends_with("/data.pkl"));
    let (Some(pickle), None) = (pickles.next(), pickles.next()) else {
        return Err(not_a_checkpoint(
            path,
            "a PyTorch archive holds exactly one data.pkl",
        ));
    };
    let prefix = pickle[..pickle.len() - "data.pkl".len()].to_owned();
    let relative = entries
        .into_iter()
        .filter_map(|(name, entry)| {
            name.strip_prefix(&prefix)
                .map(|rest| (rest.to_owned(), entry))
        })
        .collect();
    Ok((prefix, relative))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::pickle::{Dtype, StorageRef};

    #[test]
    fn a_transposed_view_is_gathered_in_row_major_order() {
        // storage [0 1 2 3 4 5] as 2x3, viewed transposed (3x2, strides 1, 3)
        let bytes: Vec<u8> = (0u8..6).collect();
        let tensor = TensorRef {
            storage: StorageRef {
                key: "0".to_owned(),
                dtype: Dtype::U8,
                numel: 6,
            },
            offset: 0,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        assert_eq!(gather(&bytes, &tensor, 1), vec![0, 3, 1, 4, 2, 5]);
    }
}
