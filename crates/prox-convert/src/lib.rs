//! litgpt checkpoints to Hugging Face Llama folders, without Python: `prox convert litgpt`.
//!
//! ProX trains its models with litgpt (TinyLlama's `lit_gpt`), which saves fabric checkpoints
//! (`iter-NNNNNN-ckpt.pth`: the model, the optimizer, `hparams`, `iter_num`, `step_count`) and
//! model-only `lit_model.pth` files, both PyTorch zip archives of a pickle and raw storages.
//! This crate reads them with a pickle reader that executes nothing ([`pickle`]), converts the
//! model exactly as the reference's `convert_lit_checkpoint.py` (`copy_weights_llama`,
//! `convert_config_lit_to_hf`) does, and writes `model.safetensors` (sharded past 5 GB as
//! transformers shards) and `config.json` into a folder that appears only when complete.
//!
//! ```no_run
//! use std::path::Path;
//! use prox_convert::{convert_checkpoint, ConvertOptions};
//!
//! let options = ConvertOptions {
//!     arch: Some("tiny_LLaMA_0_3b".to_owned()),
//!     ..ConvertOptions::default()
//! };
//! convert_checkpoint(Path::new("out/iter-020000-ckpt.pth"), Path::new("hf/20B"), &options)?;
//! # Ok::<(), prox_convert::Error>(())
//! ```
//!
//! Tensors are read one at a time and written as they are read, so the memory a conversion
//! needs is about one tensor, whatever the checkpoint's size; the optimizer's storages are
//! never read.

mod arch;
mod checkpoint;
mod convert;
mod error;
pub mod pickle;
mod series;

pub use arch::{to_python_json, LitConfig, KNOWN_ARCHS};
pub use checkpoint::Checkpoint;
pub use convert::{
    convert_checkpoint, is_complete, ConvertOptions, Outcome, DEFAULT_MAX_SHARD_BYTES,
};
pub use error::{Error, Result};
pub use series::{
    convert_series, list_series, step_of, Progress, Series, SeriesCheckpoint, SeriesOptions,
};
