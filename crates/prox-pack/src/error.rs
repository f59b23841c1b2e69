//! What can go wrong packing and reading litgpt packed files, naming the file.

use std::io;
use std::path::PathBuf;

use crate::Dtype;

/// Why a packed file could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a packed dataset file: it starts with {found:?}, not \"LITPKDS\"", path.display())]
    BadMagic { path: PathBuf, found: String },
    #[error("{} has format version {version}; only version 1 is known", path.display())]
    UnsupportedVersion { path: PathBuf, version: u64 },
    #[error(
        "{} has dtype code {code}, which is not one of 1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f32, 7 f64, 8 u16",
        path.display()
    )]
    UnknownDtype { path: PathBuf, code: u8 },
    #[error("{} is truncated: {actual} bytes, where its header promises {expected}", path.display())]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{} has {actual} bytes, more than the {expected} its header promises", path.display())]
    TrailingBytes {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("{} has a chunk size of {chunk_size} tokens, which no file can hold", path.display())]
    InvalidChunkSize { path: PathBuf, chunk_size: u64 },
    #[error("{}: dtype {dtype} does not hold token ids", path.display())]
    NotIntegerDtype { path: PathBuf, dtype: Dtype },
    #[error("{}: token {token} does not fit dtype {dtype}", path.display())]
    TokenOutOfRange {
        path: PathBuf,
        token: u64,
        dtype: Dtype,
    },
    #[error(
        "{}: header (dtype {found_dtype}, chunk size {found_chunk_size}) differs from the first file's (dtype {dtype}, chunk size {chunk_size})",
        path.display()
    )]
    HeaderMismatch {
        path: PathBuf,
        dtype: Dtype,
        chunk_size: u64,
        found_dtype: Dtype,
        found_chunk_size: u64,
    },
    #[error("cannot list the inputs")]
    ListInputs(#[source] prox_io::Error),
    #[error("cannot create the output folder {}", path.display())]
    CreateOutput {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no input files in {}", display_paths(inputs))]
    NoInputFiles { inputs: Vec<PathBuf> },
    #[error(
        "{} already holds packed files with the prefix {prefix} (such as {})",
        output.display(),
        first.display()
    )]
    EarlierOutput {
        output: PathBuf,
        prefix: String,
        first: PathBuf,
    },
    #[error("a packing worker panicked")]
    WorkerPanicked,
    #[error("stopped because another worker failed")]
    Stopped,
    #[error("internal error: the counts do not add up: {0}")]
    Unbalanced(String),
    #[error(transparent)]
    Io(#[from] prox_io::Error),
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
