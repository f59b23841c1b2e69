//! Errors that stop an annotation run. A bad document or a bad answer is not one of them: it
//! is a rejection or a failure row, counted in the stats.

use std::path::PathBuf;

/// Why an annotation run could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A prompt template that cannot be read, compiled or rendered.
    #[error("prompt template {name}: {reason}")]
    Template { name: String, reason: String },
    /// A `--prompts` folder without what the stage needs.
    #[error("prompt folder {}: {reason}", path.display())]
    PromptFolder { path: PathBuf, reason: String },
    /// The chat server could not be reached or does not serve the model.
    #[error("chat server {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The output folder holds a run made with other settings.
    #[error(
        "{} holds an annotation run with other settings ({differences}); \
         use another output folder",
        path.display()
    )]
    ConfigMismatch { path: PathBuf, differences: String },
    /// The checkpoint cannot be read back.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// The options make no sense together.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error(transparent)]
    Io(#[from] prox_io::Error),
}
