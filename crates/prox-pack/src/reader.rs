//! Reading packed files back: headers checked, tokens as litgpt's `PackedDataset` sees them,
//! and a dataset folder's files and token counts.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::format::HEADER_LEN;
use crate::{Error, Header};

/// One packed file, read and checked whole: its header, and exactly `chunk_size` tokens.
#[derive(Debug, Clone)]
pub struct PackedFile {
    path: PathBuf,
    header: Header,
    data: Vec<u8>,
}

impl PackedFile {
    /// Reads a file and checks its magic, version, dtype and length.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let read_error = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(read_error)?;
        Self::from_bytes(path, bytes)
    }

    /// Checks the bytes of a file; `path` names it in errors.
    pub fn from_bytes(path: &Path, mut bytes: Vec<u8>) -> Result<Self, Error> {
        let header = Header::parse(&bytes, path)?;
        check_len(&header, bytes.len() as u64, path)?;
        bytes.drain(..HEADER_LEN);
        Ok(Self {
            path: path.to_owned(),
            header,
            data: bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// Tokens in the file: its chunk size.
    pub fn len(&self) -> usize {
        self.data.len() / self.header.dtype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The token at `index` (floating-point values are truncated).
    pub fn get(&self, index: usize) -> Option<i64> {
        let size = self.header.dtype.size();
        let bytes = self.data.get(index * size..(index + 1) * size)?;
        Some(self.header.dtype.get(bytes))
    }

    /// Every token, in order. Floating-point files hold no token ids and are refused.
    pub fn tokens(&self) -> Result<impl ExactSizeIterator<Item = i64> + '_, Error> {
        let dtype = self.header.dtype;
        if !dtype.is_integer() {
            return Err(Error::NotIntegerDtype {
                path: self.path.clone(),
                dtype,
            });
        }
        Ok(self
            .data
            .chunks_exact(dtype.size())
            .map(move |bytes| dtype.get(bytes)))
    }
}

/// Reads only the header of a file, and checks the file's length against it.
pub fn read_header(path: &Path) -> Result<Header, Error> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    file.by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let header = Header::parse(&bytes, path)?;
    let len = file.metadata().map_err(read_error)?.len();
    check_len(&header, len, path)?;
    Ok(header)
}

fn check_len(header: &Header, actual: u64, path: &Path) -> Result<(), Error> {
    let expected = header.file_len().ok_or_else(|| Error::InvalidChunkSize {
        path: path.to_owned(),
        chunk_size: header.chunk_size,
    })?;
    if actual < expected {
        return Err(Error::Truncated {
            path: path.to_owned(),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(Error::TrailingBytes {
            path: path.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// The files of one packed dataset, read in order; every header must match the first.
pub struct PackedReader {
    files: std::vec::IntoIter<PathBuf>,
    header: Option<Header>,
}

impl PackedReader {
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self {
            files: files.into_iter(),
            header: None,
        }
    }

    /// The files `{prefix}_{counter:010}.bin` in `dir`, in counter order.
    pub fn open_dir(dir: &Path, prefix: &str) -> Result<Self, Error> {
        Ok(Self::new(dataset_files(dir, prefix)?))
    }
}

impl Iterator for PackedReader {
    type Item = Result<PackedFile, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let path = self.files.next()?;
        Some(PackedFile::open(&path).and_then(|file| {
            let header = *self.header.get_or_insert(file.header);
            if file.header != header {
                return Err(Error::HeaderMismatch {
                    path,
                    dtype: header.dtype,
                    chunk_size: header.chunk_size,
                    found_dtype: file.header.dtype,
                    found_chunk_size: file.header.chunk_size,
                });
            }
            Ok(file)
        }))
    }
}

/// The files named `{prefix}_{10 digits}.bin` in `dir`, sorted.
pub fn dataset_files(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, Error> {
    let list_error = |source| Error::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let counter = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|rest| rest.strip_suffix(".bin"));
        if counter.is_some_and(|c| c.len() == 10 && c.bytes().all(|b| b.is_ascii_digit())) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Counts over the tokens of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub total: u64,
    pub separator: u64,
    pub eos: u64,
}

impl PackedFile {
    /// Counts the tokens equal to `separator` (padding, or documents' own BOS) and to `eos`.
    pub fn counts(&self, separator: i64, eos: i64) -> Result<TokenCounts, Error> {
        let mut counts = TokenCounts {
            total: self.len() as u64,
            ..TokenCounts::default()
        };
        for token in self.tokens()? {
            counts.separator += u64::from(token == separator);
            counts.eos += u64::from(token == eos);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dtype, PackedWriter, Remainder};

    fn write_sample(dir: &Path) -> PathBuf {
        let header = Header {
            dtype: Dtype::U16,
            chunk_size: 4,
        };
        let mut writer = PackedWriter::new(dir, "s", header, 1).unwrap();
        writer.push(&[3, 4, 2, 5, 2]).unwrap();
        writer.finish(Remainder::Write).unwrap().files.remove(0)
    }

    fn corrupt(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut bytes = std::fs::read(path).unwrap();
        edit(&mut bytes);
        let bad = path.with_file_name("bad.bin");
        std::fs::write(&bad, bytes).unwrap();
        let message = PackedFile::open(&bad).unwrap_err().to_string();
        let header_message = read_header(&bad).unwrap_err().to_string();
        assert_eq!(message, header_message);
        assert!(message.contains("bad.bin"), "{message}");
        message
    }

    #[test]
    fn each_kind_of_corruption_is_refused_with_a_message_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_sample(dir.path());
        let file = PackedFile::open(&good).unwrap();
        assert_eq!(file.tokens().unwrap().collect::<Vec<_>>(), [3, 4, 2, 5]);
        assert_eq!(
            file.counts(1, 2).unwrap(),
            TokenCounts {
                total: 4,
                separator: 0,
                eos: 1
            }
        );

        let m = corrupt(&good, |b| b[0] = b'X');
        assert!(m.contains("not a packed dataset"), "{m}");
        let m = corrupt(&good, |b| b[7] = 2);
        assert!(m.contains("version 2"), "{m}");
        let m = corrupt(&good, |b| b[15] = 9);
        assert!(m.contains("dtype code 9"), "{m}");
        let m = corrupt(&good, |b| b.truncate(30));
        assert!(m.contains("truncated: 30 bytes") && m.contains("32"), "{m}");
        let m = corrupt(&good, |b| b.truncate(10));
        assert!(m.contains("truncated: 10 bytes"), "{m}");
        let m = corrupt(&good, |b| b.truncate(3));
        assert!(m.contains("truncated"), "{m}");
        let m = corrupt(&good, |b| b.push(0));
        assert!(m.contains("33 bytes"), "{m}");
        let m = corrupt(&good, |b| {
            b[16..24].copy_from_slice(&u64::MAX.to_le_bytes())
        });
        assert!(m.contains("chunk size"), "{m}");
        let m = corrupt(&good, |b| b.clear());
        assert!(m.contains("truncated: 0 bytes"), "{m}");
    }

    #[test]
    fn the_reader_lists_a_prefix_in_order_and_refuses_mixed_headers() {
        let dir = tempfile::tempdir().unwrap();
        let header = Header {
            dtype: Dtype::U16,
            chunk_size: 2,
        };
        let mut writer = PackedWriter::new(dir.path(), "a", header, 0).unwrap();
        writer.push(&[1, 2, 3, 4, 5]).unwrap();
        writer.finish(Remainder::Drop).unwrap();
        std::fs::write(dir.path().join("a_x.bin"), b"").unwrap();
        std::fs::write(dir.path().join("ab_0000000000.bin"), b"").unwrap();
        let tokens: Vec<i64> = PackedReader::open_dir(dir.path(), "a")
            .unwrap()
            .flat_map(|file| file.unwrap().tokens().unwrap().collect::<Vec<_>>())
            .collect();
        assert_eq!(tokens, [1, 2, 3, 4]);

        let other = Header {
            dtype: Dtype::I32,
            chunk_size: 2,
        };
        let mut writer = PackedWriter::new(dir.path(), "b", other, 0).unwrap();
        writer.push(&[1, 2, 3]).unwrap();
        writer.finish(Remainder::Drop).unwrap();
        let files = vec![
            dir.path().join("a_0000000000.bin"),
            dir.path().join("b_0000000000.bin"),
        ];
        let results: Vec<_> = PackedReader::new(files).collect();
        let error = results[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("differs from the first file"), "{error}");
    }
}
