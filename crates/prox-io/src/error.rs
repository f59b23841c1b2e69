//! What can go wrong reading and writing records: errors that end a file ([`Error`], naming
//! the file and position) and one bad record that does not ([`RecordError`]).

use std::io;
use std::path::PathBuf;

use crate::RecordLocation;

/// A failure that stops reading or writing a file: the file cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {} after line {line}", path.display())]
    Read {
        path: PathBuf,
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot list {}", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("input {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error(
        "cannot tell the format of {} from its name: known endings are .jsonl, .json, .ndjson \
         (each optionally followed by .gz or .zst, e.g. .jsonl.gz) and .parquet",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("cannot encode a record for {}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not valid JSON of the expected shape", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::Open { path, .. }
            | Error::Read { path, .. }
            | Error::Write { path, .. }
            | Error::List { path, .. }
            | Error::Missing { path }
            | Error::UnknownFormat { path }
            | Error::Encode { path, .. }
            | Error::Decode { path, .. } => path,
        }
    }
}

/// One record that could not be read; the rest of the file still can.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct RecordError {
    /// Where the record is.
    pub location: RecordLocation,
    /// What is wrong with it.
    pub reason: String,
    /// The start of the raw record, for the failures file (lossy UTF-8, shortened).
    pub excerpt: String,
}
