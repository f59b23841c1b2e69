//! Writing packed files: tokens filled into fixed-size chunks, each file written atomically,
//! and a summary of what was written.

use std::io::Write;
use std::path::{Path, PathBuf};

use prox_io::AtomicFile;

use crate::format::file_name;
use crate::{Error, Header};

/// What [`PackedWriter::finish`] does with the tokens of the last, partly filled chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Remainder {
    /// Discard them, as the reference does.
    #[default]
    Drop,
    /// Write them in one more file, the unused slots holding the separator.
    Write,
}

/// What a finished writer wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackSummary {
    /// The files written, in order.
    pub files: Vec<PathBuf>,
    /// Tokens given to [`PackedWriter::push`].
    pub tokens_in: u64,
    /// Tokens stored in the files (padding not counted).
    pub tokens_written: u64,
    /// Tokens of the final partial chunk that were dropped.
    pub tokens_discarded: u64,
    /// Separator slots padding the last file (only with [`Remainder::Write`]).
    pub padding: u64,
}

/// Packs token sequences into files of exactly `chunk_size` tokens, the way litgpt's
/// `PackedDatasetBuilder` does: tokens fill the current chunk and spill into the next, files are
/// named `{prefix}_{counter:010}.bin`, and a chunk is written once a token arrives that does not
/// fit it. Each file appears under its name only when complete.
pub struct PackedWriter {
    dir: PathBuf,
    prefix: String,
    header: Header,
    separator: u32,
    chunk_size: usize,
    /// The current chunk, encoded; slots past `filled` hold the separator.
    chunk: Vec<u8>,
    filled: usize,
    summary: PackSummary,
}

impl PackedWriter {
    /// A writer for files `{dir}/{prefix}_{counter:010}.bin`, padding with `separator`.
    pub fn new(
        dir: impl Into<PathBuf>,
        prefix: impl Into<String>,
        header: Header,
        separator: u32,
    ) -> Result<Self, Error> {
        let dir = dir.into();
        let prefix = prefix.into();
        let first = dir.join(file_name(&prefix, 0));
        if !header.dtype.is_integer() {
            return Err(Error::NotIntegerDtype {
                path: first,
                dtype: header.dtype,
            });
        }
        let chunk_size = usize::try_from(header.chunk_size)
            .ok()
            .filter(|&size| size > 0 && size.checked_mul(header.dtype.size()).is_some())
            .ok_or_else(|| Error::InvalidChunkSize {
                path: first.clone(),
                chunk_size: header.chunk_size,
            })?;
        check_token(separator, &header, &first)?;
        let mut separator_bytes = vec![0u8; header.dtype.size()];
        header.dtype.put(separator, &mut separator_bytes);
        let chunk = separator_bytes.repeat(chunk_size);
        Ok(Self {
            dir,
            prefix,
            header,
            separator,
            chunk_size,
            chunk,
            filled: 0,
            summary: PackSummary::default(),
        })
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// Files written so far.
    pub fn files(&self) -> &[PathBuf] {
        &self.summary.files
    }

    /// Tokens waiting in the current chunk.
    pub fn pending(&self) -> usize {
        self.filled
    }

    /// Appends tokens, writing each chunk that they overflow. A token that does not fit the
    /// dtype is an error and nothing of `tokens` is added.
    pub fn push(&mut self, tokens: &[u32]) -> Result<(), Error> {
        let max = self.header.dtype.max_token().unwrap_or(0);
        if let Some(&token) = tokens.iter().find(|&&t| u64::from(t) > max) {
            return Err(Error::TokenOutOfRange {
                path: self.next_path(),
                token: token.into(),
                dtype: self.header.dtype,
            });
        }
        self.summary.tokens_in += tokens.len() as u64;
        let mut tokens = tokens;
        // As the reference: a full chunk is written only when another token arrives.
        while self.filled + tokens.len() > self.chunk_size {
            let (head, rest) = tokens.split_at(self.chunk_size - self.filled);
            self.put(head);
            self.write_chunk()?;
            tokens = rest;
        }
        self.put(tokens);
        Ok(())
    }

    /// Writes or drops the partial chunk (see [`Remainder`]) and returns what was written. An
    /// empty partial chunk is never written.
    pub fn finish(mut self, remainder: Remainder) -> Result<PackSummary, Error> {
        match remainder {
            Remainder::Write if self.filled > 0 => {
                self.summary.padding = (self.chunk_size - self.filled) as u64;
                self.write_chunk()?;
            }
            _ => self.summary.tokens_discarded = self.filled as u64,
        }
        Ok(self.summary)
    }

    fn put(&mut self, tokens: &[u32]) {
        let size = self.header.dtype.size();
        let start = self.filled * size;
        let slots = &mut self.chunk[start..start + tokens.len() * size];
        match self.header.dtype {
            crate::Dtype::U16 => {
                for (slot, &token) in slots.chunks_exact_mut(2).zip(tokens) {
                    slot.copy_from_slice(&(token as u16).to_le_bytes());
                }
            }
            dtype => {
                for (slot, &token) in slots.chunks_exact_mut(size).zip(tokens) {
                    dtype.put(token, slot);
                }
            }
        }
        self.filled += tokens.len();
    }

    fn next_path(&self) -> PathBuf {
        self.dir
            .join(file_name(&self.prefix, self.summary.files.len() as u64))
    }

    fn write_chunk(&mut self) -> Result<(), Error> {
        let path = self.next_path();
        let write_error = |source| Error::Write {
            path: path.clone(),
            source,
        };
        let mut file = AtomicFile::create(&path)?;
        file.write_all(&self.header.to_bytes())
            .map_err(write_error)?;
        file.write_all(&self.chunk).map_err(write_error)?;
        file.commit()?;
        self.summary.tokens_written += self.filled as u64;
        self.summary.files.push(path);
        self.reset_chunk();
        Ok(())
    }

    fn reset_chunk(&mut self) {
        let size = self.header.dtype.size();
        let mut separator = [0u8; 8];
        self.header
            .dtype
            .put(self.separator, &mut separator[..size]);
        for slot in self.chunk[..self.filled * size].chunks_exact_mut(size) {
            slot.copy_from_slice(&separator[..size]);
        }
        self.filled = 0;
    }
}

fn check_token(token: u32, header: &Header, path: &Path) -> Result<(), Error> {
    match header.dtype.max_token() {
        Some(max) if u64::from(token) <= max => Ok(()),
        _ => Err(Error::TokenOutOfRange {
            path: path.to_owned(),
            token: token.into(),
            dtype: header.dtype,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dtype;

    fn writer(dir: &Path, chunk_size: u64) -> PackedWriter {
        let header = Header {
            dtype: Dtype::U16,
            chunk_size,
        };
        PackedWriter::new(dir, "p", header, 1).unwrap()
    }

    fn tokens_of(path: &Path) -> Vec<u16> {
        std::fs::read(path).unwrap()[24..]
            .chunks(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn a_full_chunk_waits_for_the_next_token_as_in_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), 4);
        w.push(&[5, 6, 7, 8]).unwrap();
        assert!(w.files().is_empty());
        w.push(&[9]).unwrap();
        assert_eq!(w.files().len(), 1);
        let summary = w.finish(Remainder::Drop).unwrap();
        assert_eq!(tokens_of(&summary.files[0]), [5, 6, 7, 8]);
        assert_eq!((summary.tokens_written, summary.tokens_discarded), (4, 1));
    }

    #[test]
    fn a_document_spills_over_several_chunks_and_the_remainder_is_padded() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), 3);
        w.push(&[10, 11]).unwrap();
        w.push(&[12, 13, 14, 15, 16, 17, 18]).unwrap();
        let summary = w.finish(Remainder::Write).unwrap();
        let names: Vec<_> = summary
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["p_0000000000.bin", "p_0000000001.bin", "p_0000000002.bin"]
        );
        assert_eq!(tokens_of(&summary.files[2]), [16, 17, 18]);
        let mut w = writer(dir.path(), 3);
        w.push(&[20, 21, 22, 23]).unwrap();
        let summary = w.finish(Remainder::Write).unwrap();
        assert_eq!(tokens_of(&summary.files[1]), [23, 1, 1]);
        assert_eq!(summary.padding, 2);
        assert_eq!(summary.tokens_discarded, 0);
    }

    #[test]
    fn an_empty_remainder_writes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let summary = writer(dir.path(), 3).finish(Remainder::Write).unwrap();
        assert!(summary.files.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_token_too_large_for_the_dtype_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(dir.path(), 3);
        let error = w.push(&[1, 70_000]).unwrap_err();
        assert!(error.to_string().contains("70000"), "{error}");
        assert_eq!(w.pending(), 0);
        let header = Header {
            dtype: Dtype::F32,
            chunk_size: 3,
        };
        assert!(PackedWriter::new(dir.path(), "f", header, 1).is_err());
        let header = Header {
            dtype: Dtype::U16,
            chunk_size: 0,
        };
        assert!(PackedWriter::new(dir.path(), "z", header, 1).is_err());
    }
}
