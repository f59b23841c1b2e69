//! The evaluation's error type: what went wrong, with the task, file or row it concerns.

use std::path::PathBuf;

/// An error from reading evaluation data, building requests or scoring them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task name that is not one of the known tasks.
    #[error("unknown task `{name}`; known: prox10, arc:easy, arc:challenge, commonsense_qa, hellaswag, mmlu, mmlu:<subject> (57 subjects), openbookqa, piqa, siqa, winogrande, sciq")]
    UnknownTask { name: String },
    /// The data folder does not hold the split a task needs.
    #[error("{task}: split `{split}` not found in {data}\n{hint}")]
    SplitNotFound {
        task: String,
        split: String,
        data: PathBuf,
        hint: String,
    },
    /// A data file could not be opened or decoded.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A row the task's prompt function cannot turn into a document (a missing or
    /// malformed column).
    #[error("{task}: row {row_index} of split `{split}`: {reason}")]
    Row {
        task: String,
        split: String,
        row_index: usize,
        reason: String,
    },
    /// Tokenizing a request failed.
    #[error("{task}: row {row_index}: cannot tokenize a request")]
    Tokenize {
        task: String,
        row_index: usize,
        #[source]
        source: prox_tokenizer::Error,
    },
    /// A request the model cannot score (its continuation does not fit the context).
    #[error("{task}: row {row_index}: {reason}")]
    Request {
        task: String,
        row_index: usize,
        reason: String,
    },
    /// The model or tokenizer lacks something scoring needs.
    #[error("{0}")]
    Model(String),
    /// A tensor operation failed while scoring.
    #[error("model computation failed")]
    Compute(#[from] candle_core::Error),
    /// A checkpoint of a series could not be loaded.
    #[error("cannot load the model {path}")]
    Load {
        path: PathBuf,
        // Boxed, as the math harness's error below: they would make every result large.
        #[source]
        source: Box<prox_engine::Error>,
    },
    /// A results file that is not a whole `results.json`.
    #[error("{path} is not a complete results file")]
    Results {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Writing an output failed.
    #[error(transparent)]
    Write(#[from] prox_io::Error),
    /// A checkpoint series that cannot be read or evaluated as asked.
    #[error("{0}")]
    Series(String),
    /// The math evaluation of a checkpoint failed.
    #[error(transparent)]
    Math(Box<prox_math::Error>),
}

impl From<prox_math::Error> for Error {
    fn from(error: prox_math::Error) -> Self {
        Error::Math(Box::new(error))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
