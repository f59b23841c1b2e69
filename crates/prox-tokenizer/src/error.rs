use std::io;
use std::path::PathBuf;

/// Why a tokenizer could not be loaded, or a text not encoded or decoded.
///
/// Every loading error names the file (or folder) it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file or folder cannot be read.
    #[error("cannot read tokenizer {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A folder holds neither `tokenizer.json` nor `tokenizer.model`.
    #[error("no tokenizer.json or tokenizer.model in {}", dir.display())]
    NotFound { dir: PathBuf },
    /// A `tokenizer.json` that is not valid JSON, or that the `tokenizers` crate rejects.
    #[error("{} is not a valid tokenizer.json: {reason}", path.display())]
    InvalidJson { path: PathBuf, reason: String },
    /// A `tokenizer.model` that is not a valid SentencePiece model.
    #[error("{} is not a valid SentencePiece model: {reason}", path.display())]
    InvalidSentencePiece { path: PathBuf, reason: String },
    /// A `tokenizer_config.json` that is not valid JSON.
    #[error("{} is not a valid tokenizer_config.json: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },
    /// A valid file of a kind this crate does not handle (a Unigram SentencePiece model).
    #[error("{}: unsupported tokenizer: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// The `tokenizers` crate failed to encode a text (only on the general path, for
    /// tokenizers that are not SentencePiece-style BPE).
    #[error("cannot encode text with {}: {reason}", path.display())]
    Encode { path: PathBuf, reason: String },
    /// The `tokenizers` crate failed to decode ids.
    #[error("cannot decode ids with {}: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
}
