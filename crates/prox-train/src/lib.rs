//! Pre-training proxy models on litgpt packed data with ProX's recipe, on the engine's Llama
//! (candle autograd): the loop that lets ProX-rs users compare models trained on raw and on
//! refined corpora at small scale.
//!
//! - [`data`]: blocks of `seq_len + 1` tokens from `*.bin` files as the reference's
//!   `PackedDataset` reads them, seeded shuffling, weighted mixing of folders.
//! - [`optim`] and [`schedule`]: AdamW with decoupled weight decay on every parameter,
//!   clipping by total norm, linear warm-up then cosine decay.
//! - [`Trainer`]: gradient accumulation from micro-batch to global batch, validation,
//!   checkpoints as Hugging Face folders plus optimiser state, and resuming to exactly the
//!   state of an uninterrupted run; `metrics.jsonl` and `loss.svg` in the output folder.
//! - [`SftTrainer`] ([`sft`], [`sft_data`]): supervised fine-tuning of a refiner on prompt →
//!   program examples with the same optimiser, checkpoints and log: loss on the target tokens
//!   only, examples packed with per-example attention, epochs over a seeded order, a held-out
//!   split, exact resume.
//!
//! ```no_run
//! use prox_train::{DataSource, ModelInit, Recipe, Silent, TrainOptions, Trainer};
//!
//! let options = TrainOptions {
//!     data: vec![DataSource::new("data/refined")],
//!     val_data: vec![],
//!     out: "runs/refined".into(),
//!     model: ModelInit::Fresh(prox_train::named_config("tiny").unwrap()),
//!     tokenizer: Some("tokenizers/llama2".into()),
//!     recipe: Recipe { seq_len: 512, max_steps: 300, warmup_steps: 30, ..Recipe::default() },
//!     save_interval: 100,
//!     eval_interval: 0,
//!     eval_iters: 0,
//!     resume: true,
//!     device: prox_engine::Device::Cpu,
//! };
//! let mut trainer = Trainer::new(options)?;
//! trainer.run(&mut Silent, None)?;
//! # Ok::<(), prox_train::Error>(())
//! ```

pub mod allocator;
pub mod checkpoint;
pub mod data;
mod error;
pub mod metrics;
pub mod model;
pub mod optim;
mod rng;
mod run;
pub mod schedule;
pub mod sft;
pub mod sft_data;
mod trainer;

pub use crate::data::{DataSource, MixedStream};
pub use crate::error::{Error, Result};
pub use crate::metrics::StepMetrics;
pub use crate::model::{named_config, TrainableModel, NAMED_CONFIGS};
pub use crate::optim::{AdamW, AdamWConfig};
pub use crate::rng::Rng;
pub use crate::run::apply_step;
pub use crate::schedule::LrSchedule;
pub use crate::sft::{
    accumulate_sft_gradients, sft_loss, SftOptions, SftRecipe, SftSummary, SftTrainer,
};
pub use crate::sft_data::{LabelledSequence, SftData, SftExample};
pub use crate::trainer::{
    accumulate_gradients, block_loss, ModelInit, Recipe, Reporter, Silent, TrainOptions, Trainer,
};
