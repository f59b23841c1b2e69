//! The engine's error type: what went wrong, and with which file.

use std::path::PathBuf;

/// An error from loading a model or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `config.json` (or safetensors index) is not valid JSON of the expected shape.
    #[error("invalid {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The model's configuration is valid JSON but describes something this engine cannot run.
    #[error("unsupported model configuration in {path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    /// No weights where a model should be.
    #[error("no model at {path}: {reason}")]
    NotAModel { path: PathBuf, reason: String },
    /// A hub id that is not in the local Hugging Face cache and could not be downloaded.
    #[error(
        "model `{id}` (revision `{revision}`) is not in the Hugging Face cache: {} ({reason})\n\
         hint: without access to the hub (or with HF_HUB_OFFLINE=1), run `prox download {id}` \
         (or `huggingface-cli download {id}`) on a machine with access (set HF_HUB_CACHE or \
         HF_HOME to share its cache), or pass a local folder or .gguf file",
        looked_in.display()
    )]
    NotInHubCache {
        id: String,
        revision: String,
        looked_in: PathBuf,
        reason: String,
    },
    /// Loading weights failed (missing tensor, wrong shape, unreadable safetensors or GGUF).
    #[error("cannot load the weights of {path}")]
    Weights {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    /// A safetensors file whose header is malformed or does not match its size (truncated).
    #[error("invalid safetensors file {path}: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// A tensor of a safetensors file cannot be read or has the wrong shape.
    #[error("{path}: tensor `{tensor}`: {reason}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// A GGUF file lacks metadata a llama model needs, or has it with the wrong type.
    #[error("{path}: GGUF metadata `{key}`: {reason}")]
    GgufMetadata {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// The tokenizer could not be built or loaded.
    #[error("tokenizer of {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    /// A device name that is not one, or a device this build or machine cannot open.
    #[error("device `{device}`: {reason}")]
    Device { device: String, reason: String },
    /// A tensor operation failed while running the model.
    #[error("model computation failed")]
    Compute(#[from] candle_core::Error),
    /// The caller asked for something inconsistent (a programming error, not bad data).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// Why one request of a batch could not be served. The other requests of the batch are
/// unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt is longer than the model's context.
    #[error("the prompt has {prompt_tokens} tokens, more than the model's context of {context}")]
    PromptTooLong {
        prompt_tokens: usize,
        context: usize,
    },
    /// A token id is outside the vocabulary.
    #[error("token id {id} at position {position} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        id: u32,
        position: usize,
        vocab_size: usize,
    },
    /// A stop string is empty (it would stop before the first token; vLLM refuses it too).
    #[error("stop string {index} is empty")]
    EmptyStopString { index: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
