//! What can go wrong reading or writing a run folder, naming the file.

use std::path::PathBuf;

/// What keeps a run folder from being read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot list {}", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid JSON of the expected shape", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not a run folder: it has none of output/, dropped/, failures/, stats.json", path.display())]
    NotARunFolder { path: PathBuf },
    #[error("cannot read the run's configuration {}: {message}", path.display())]
    RunConfig { path: PathBuf, message: String },
    #[error("the run folder {} was made for another run: {message} (use a new folder, or --force to replace its configuration)", path.display())]
    ConfigMismatch { path: PathBuf, message: String },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing one of the folder's files.
    #[error(transparent)]
    Io(#[from] prox_io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
