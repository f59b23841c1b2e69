use std::path::PathBuf;

use crate::pickle::PickleError;

/// Why a conversion failed. Every variant names the file (and, where there is one, the tensor)
/// it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a PyTorch checkpoint (zip archive): {reason}", path.display())]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{}: data.pkl at {source}", path.display())]
    Pickle {
        path: PathBuf,
        #[source]
        source: PickleError,
    },
    #[error("{}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("{}: tensor {tensor}: {reason}", path.display())]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("{}: the archive entry {entry} is damaged: {reason}", path.display())]
    Damaged {
        path: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("architecture: {0}")]
    Arch(String),
    #[error("{}: architecture mismatch between --arch {arch} and the checkpoint's hparams: {differences}", path.display())]
    ArchMismatch {
        path: PathBuf,
        arch: String,
        differences: String,
    },
    #[error("{}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    #[error("{}: writing safetensors: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
