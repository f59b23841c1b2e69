use std::path::PathBuf;

/// What stops a task. Problems with single documents are not errors: they are failures,
/// written to the failures files and counted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Io(#[from] prox_io::Error),
    #[error(transparent)]
    Run(#[from] prox_run::Error),
    #[error("cannot use {}: {message}", path.display())]
    Path { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("the model failed: {0}")]
    Backend(String),
    #[error("task {rank} stopped")]
    TaskStopped {
        rank: usize,
        #[source]
        source: Box<Error>,
    },
    #[error("a worker panicked")]
    WorkerPanicked,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn path(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Error::Path {
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}
