//! What can go wrong talking to the hub or writing the cache, each with the URL, file or path
//! it concerns.

use std::path::PathBuf;

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a listing or a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hub refused access (401 or 403): a gated or private repository, or a token without
    /// access to it. The message says what to do about the token.
    #[error("{url}: HTTP {status}: {message}\nhint: {}", unauthorized_hint(*.token_sent))]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
        /// Whether a token went with the request.
        token_sent: bool,
    },
    /// The repository, revision or file does not exist (404).
    #[error("{url}: HTTP 404: {message}")]
    NotFound { url: String, message: String },
    /// Any other error status.
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// No answer: the connection could not be made or broke before the headers.
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    /// The connection broke while a file's bytes were arriving; what came is kept to resume.
    #[error("{url}: the transfer of {file} broke after {received} of {size} bytes: {source}")]
    Interrupted {
        url: String,
        file: String,
        received: u64,
        size: u64,
        source: std::io::Error,
    },
    /// The hub answered something this client cannot use (a missing header, bad JSON).
    #[error("{url}: unexpected answer from the hub: {reason}")]
    BadResponse { url: String, reason: String },
    /// A downloaded file does not have the size the hub announced.
    #[error("{file}: downloaded {actual} bytes where the hub announced {expected}; the partial file was removed")]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    /// A downloaded LFS file does not have the sha256 the hub lists for it.
    #[error("{file}: sha256 {actual} where the hub lists {expected}; the download was discarded")]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    /// The repository id is not `org/name` (or a bare legacy `name`).
    #[error("`{id}` is not a hub repository id (expected `org/name`)")]
    InvalidRepoId { id: String },
    /// A file name in the listing would land outside the download folder.
    #[error("the hub lists a file named `{file}`, which is not a plain relative path; refusing to write it")]
    UnsafePath { file: String },
    /// An `--include` or `--exclude` pattern is not a valid glob.
    #[error("bad glob pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// The include patterns match no file of the repository.
    #[error("no file of {repo} ({files} files) matches --include {}", .patterns.join(" "))]
    NothingMatched {
        repo: String,
        files: usize,
        patterns: Vec<String>,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn unauthorized_hint(token_sent: bool) -> &'static str {
    if token_sent {
        "the token in HF_TOKEN has no access to this repository: accept its conditions on its hub page, or use a token that has access"
    } else {
        "the repository is gated or private (or does not exist): set HF_TOKEN to a Hugging Face access token that has access (https://huggingface.co/settings/tokens)"
    }
}

impl Error {
    /// Whether trying again may succeed: a broken connection, a server error, rate limiting.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Interrupted { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
