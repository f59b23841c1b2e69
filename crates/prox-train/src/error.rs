//! The training error type: what went wrong, and with which file or setting.

use std::path::PathBuf;

/// An error from reading training data, building the model, training or checkpointing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A packed data file could not be read or is malformed.
    #[error(transparent)]
    Pack(#[from] prox_pack::Error),
    /// A data folder holds no packed files.
    #[error("no packed files (`{pattern}`) in {}", dir.display())]
    NoData { dir: PathBuf, pattern: String },
    /// The files of one data folder do not share a header, or hold no block.
    #[error("{}: {reason}", path.display())]
    BadData { path: PathBuf, reason: String },
    /// A token of the data is not an id of the model's vocabulary.
    #[error("{}: token {token} at index {index} is outside the vocabulary of {vocab_size}", path.display())]
    TokenOutOfRange {
        path: PathBuf,
        index: usize,
        token: i64,
        vocab_size: usize,
    },
    /// The options contradict each other or the model.
    #[error("invalid training options: {0}")]
    Options(String),
    /// A file or folder could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not what it should be.
    #[error("invalid {}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Loading a model or its configuration failed.
    #[error(transparent)]
    Engine(#[from] prox_engine::Error),
    /// A checkpoint cannot be resumed: missing pieces, or a recipe that differs from this run's.
    #[error("cannot resume from {}: {reason}", path.display())]
    Resume { path: PathBuf, reason: String },
    /// Tensors could not be read from or written to a safetensors file.
    #[error("tensors of {}", path.display())]
    Tensors {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    /// The loss or the gradients are not finite.
    #[error("step {step}: the {what} is not finite ({value})")]
    NotFinite {
        step: u64,
        what: &'static str,
        value: f64,
    },
    /// A tensor computation failed.
    #[error("computation failed")]
    Compute(#[from] candle_core::Error),
    /// The fine-tuning examples could not be read (a missing file, a read error).
    #[error(transparent)]
    Input(#[from] prox_io::Error),
    /// The tokenizer could not be loaded or failed on a text.
    #[error("tokenizer {}", path.display())]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: prox_tokenizer::Error,
    },
    /// The fine-tuning examples cannot be trained on as a whole (none left, too few to split).
    #[error("{}: {reason}", path.display())]
    Examples { path: PathBuf, reason: String },
    /// Drawing the loss curve failed.
    #[error("cannot draw the loss curve {}: {reason}", path.display())]
    Plot { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
