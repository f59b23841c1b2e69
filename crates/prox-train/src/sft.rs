//! Supervised fine-tuning of a refiner on prompt → program examples, the paper's recipe
//! (LLaMA-Factory's full-parameter SFT): loss on the target tokens only, 3 epochs, batches of
//! 64 examples, cosine learning rate 1e-5 → 1e-6 after a linear warm-up, AdamW.
//!
//! Examples are packed, not padded: a micro-batch is its examples' tokens one after the other,
//! and the engine's forward pass attends within each example only (a block-diagonal causal
//! mask, computed block by block), so no position is padding and no example sees another.
//! Logits are computed only at the positions that predict target tokens. The loss is the
//! mean cross-entropy over the target tokens of the whole global batch (each micro-batch's
//! sum divided by the global batch's count), so it does not depend on how a batch is split
//! into micro-batches.
//!
//! Each epoch visits the training examples in a seeded order fixed by the epoch alone, so a
//! run resumed from any checkpoint draws exactly the batches an uninterrupted run draws.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use prox_engine::{Config, LogitsAt};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::model::TrainableModel;
use crate::optim::AdamWConfig;
use crate::rng::Rng;
use crate::run::{self, Due, Run, Stepped, Steps};
use crate::schedule::LrSchedule;
use crate::sft_data::{Encoding, LabelledSequence, SftData, SftExample};
use crate::trainer::Reporter;

/// Everything that decides the numbers a fine-tuning run computes. A resumed run must have
/// the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftRecipe {
    pub epochs: u64,
    /// Examples per forward and backward pass.
    pub micro_batch: usize,
    /// Examples per optimiser step; the last batch of an epoch may be smaller.
    pub global_batch: usize,
    pub lr: f64,
    pub min_lr: f64,
    /// The share of all steps spent in linear warm-up (rounded up to whole steps).
    pub warmup_ratio: f64,
    pub adamw: AdamWConfig,
    /// Maximum total gradient norm (0 turns clipping off).
    pub grad_clip: f64,
    /// Most tokens of prompt + target + EOS; `None`: the model's context.
    pub max_length: Option<usize>,
    /// The share of examples held out for the validation loss.
    pub val_fraction: f64,
    pub seed: u64,
}

impl Default for SftRecipe {
    /// The paper's recipe. The optimiser settings are LLaMA-Factory's (Hugging Face
    /// `TrainingArguments`' defaults: betas 0.9/0.999, no weight decay, clipping at 1) and its
    /// example full-SFT configuration's warm-up ratio of 0.1, since the paper fine-tuned with it.
    fn default() -> Self {
        SftRecipe {
            epochs: 3,
            micro_batch: 4,
            global_batch: 64,
            lr: 1e-5,
            min_lr: 1e-6,
            warmup_ratio: 0.1,
            adamw: AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            grad_clip: 1.0,
            max_length: None,
            val_fraction: 0.05,
            seed: 1234,
        }
    }
}

impl SftRecipe {
    fn validate(&self, cfg: &Config) -> Result<()> {
        let bad = |m: String| Err(Error::Options(m));
        if self.epochs == 0 || self.micro_batch == 0 || self.global_batch == 0 {
            return bad("the epochs and batch sizes must be positive".into());
        }
        if let Some(max) = self.max_length {
            if max < 2 || max > cfg.max_position_embeddings {
                return bad(format!(
                    "the maximum length {max} must lie between 2 and the model's context of {}",
                    cfg.max_position_embeddings
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) || !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "the warm-up ratio must lie in [0, 1] and the validation fraction in [0, 1)".into(),
            );
        }
        run::validate_optimizer(self.lr, self.min_lr, self.grad_clip, &self.adamw)
    }
}

/// A fine-tuning run's settings.
#[derive(Debug, Clone)]
pub struct SftOptions {
    /// The examples (JSON lines, plain, `.gz` or `.zst`, or Parquet).
    pub data: PathBuf,
    /// The Hugging Face model folder to start from; its tokenizer encodes the examples and
    /// is copied into every checkpoint.
    pub init_from: PathBuf,
    pub out: PathBuf,
    pub recipe: SftRecipe,
    /// Steps between checkpoints besides those at the end of every epoch; 0: epochs only.
    pub save_interval: u64,
    /// Continue from the last checkpoint in `out`, if there is one.
    pub resume: bool,
    pub device: Device,
}

/// Which examples a run trains on, as recorded in its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftDataId {
    /// Where they were read from (for the record; the fingerprint decides).
    pub path: PathBuf,
    pub examples: usize,
    /// [`SftData::fingerprint`].
    pub fingerprint: String,
}

/// What a fine-tuning checkpoint records besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Tokens (prompt and target) trained on so far.
    pub tokens: u64,
    pub recipe: SftRecipe,
    pub data: SftDataId,
}

/// How the examples were used: written as `data.json` in the output folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftSummary {
    pub data: PathBuf,
    /// Rows read: examples + rejected.
    pub rows: u64,
    pub examples: usize,
    pub train_examples: usize,
    pub validation_examples: usize,
    /// Rejected rows by reason (details in `rejected.jsonl`).
    pub rejected: std::collections::BTreeMap<String, u64>,
    pub max_length: usize,
    /// Tokens of one epoch: all positions, and those the loss is taken on.
    pub train_tokens: u64,
    pub train_target_tokens: u64,
    pub steps_per_epoch: u64,
    pub max_steps: u64,
    pub warmup_steps: u64,
}

/// The mean-weighted cross-entropy of a micro-batch: the sum over its masked positions of
/// the next-token cross-entropy, divided by `denominator` (the number of target tokens of
/// the global batch the micro-batch belongs to), as a differentiable scalar.
pub fn sft_loss(
    model: &TrainableModel,
    batch: &[LabelledSequence],
    denominator: f64,
) -> Result<Tensor> {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut offset = 0;
    for seq in batch {
        if seq.inputs.is_empty()
            || seq.labels.len() != seq.inputs.len()
            || seq.mask.len() != seq.inputs.len()
        {
            return Err(Error::Options(
                "a labelled sequence needs inputs, and one label and mask entry per input".into(),
            ));
        }
        for (i, (&label, &counted)) in seq.labels.iter().zip(&seq.mask).enumerate() {
            if counted {
                rows.push(offset + i);
                targets.push(label);
            }
        }
        offset += seq.inputs.len();
    }
    if targets.is_empty() {
        return Err(Error::Options("a micro-batch without target tokens".into()));
    }
    let inputs: Vec<&[u32]> = batch.iter().map(|s| s.inputs.as_slice()).collect();
    let logits = model
        .llama
        .forward_uncached(&inputs, &LogitsAt::Rows(rows))?;
    let picked = prox_engine::fused::target_log_probs(&logits, &targets)?;
    Ok(picked.sum_all()?.affine(-1.0 / denominator, 0.0)?)
}

/// Forward and backward passes over the micro-batches of one global batch. Returns the mean
/// cross-entropy over all its target tokens and one gradient vector per parameter.
pub fn accumulate_sft_gradients(
    model: &TrainableModel,
    micro_batches: &[Vec<LabelledSequence>],
) -> Result<(f64, Vec<Vec<f32>>)> {
    let tokens: usize = micro_batches
        .iter()
        .flatten()
        .map(LabelledSequence::loss_tokens)
        .sum();
    run::accumulate(model, micro_batches, |batch| {
        let part = sft_loss(model, batch, tokens as f64)?;
        Ok((f64::from(part.to_scalar::<f32>()?), part))
    })
}

/// A fine-tuning run in progress.
pub struct SftTrainer {
    options: SftOptions,
    run: Run,
    train: Vec<SftExample>,
    val: Vec<SftExample>,
    data_id: SftDataId,
    summary: SftSummary,
    schedule: LrSchedule,
    resumed_from: Option<PathBuf>,
}

impl SftTrainer {
    /// Prepares a run: reads and tokenizes the examples (writing `data.json` and
    /// `rejected.jsonl`), loads the model, or the state of the last checkpoint when resuming.
    /// Refuses to start over a folder that has checkpoints unless resuming.
    pub fn new(options: SftOptions) -> Result<Self> {
        let out = &options.out;
        let resume_from = checkpoint::prepare_output(out, options.resume)?;
        let recipe = &options.recipe;

        let (model, optimizer, state) = match &resume_from {
            Some(dir) => {
                let state: SftState = prox_io::read_json(&dir.join(checkpoint::STATE_FILE))?;
                if state.recipe != *recipe {
                    let differences = run::field_differences(&state.recipe, recipe);
                    return Err(run::recipe_mismatch(dir, &differences));
                }
                let (model, optimizer) =
                    run::load_checkpoint(dir, state.step, None, &options.device)?;
                (model, optimizer, Some(state))
            }
            None => {
                let (model, optimizer) =
                    run::load_pretrained(&options.init_from, recipe.adamw, &options.device)?;
                (model, optimizer, None)
            }
        };
        recipe.validate(&model.config)?;

        let tokenizer =
            prox_tokenizer::Tokenizer::from_dir(&options.init_from).map_err(|source| {
                Error::Tokenizer {
                    path: options.init_from.clone(),
                    source,
                }
            })?;
        let max_length = recipe
            .max_length
            .unwrap_or(model.config.max_position_embeddings);
        let data = SftData::read(
            &options.data,
            &Encoding {
                tokenizer: &tokenizer,
                vocab_size: model.config.vocab_size,
                max_length,
            },
        )?;
        let data_id = SftDataId {
            path: options.data.clone(),
            examples: data.examples.len(),
            fingerprint: data.fingerprint(),
        };
        if let (Some(state), Some(dir)) = (&state, &resume_from) {
            if state.data.examples != data_id.examples
                || state.data.fingerprint != data_id.fingerprint
            {
                return Err(Error::Resume {
                    path: dir.clone(),
                    reason: format!(
                        "the examples differ from the checkpoint's ({} examples, fingerprint \
                         {}; now {} examples, fingerprint {}): resume with the same data and \
                         tokenizer",
                        state.data.examples,
                        state.data.fingerprint,
                        data_id.examples,
                        data_id.fingerprint
                    ),
                });
            }
        }
        let (train_ix, val_ix) = data.split(recipe.val_fraction, recipe.seed)?;
        let pick = |ix: &[usize]| -> Vec<SftExample> {
            ix.iter().map(|&i| data.examples[i].clone()).collect()
        };
        let (train, val) = (pick(&train_ix), pick(&val_ix));

        let steps_per_epoch = train.len().div_ceil(recipe.global_batch) as u64;
        let max_steps = steps_per_epoch * recipe.epochs;
        let warmup_steps = (recipe.warmup_ratio * max_steps as f64).ceil() as u64;
        let summary = SftSummary {
            data: options.data.clone(),
            rows: (data.examples.len() + data.rejected.len()) as u64,
            examples: data.examples.len(),
            train_examples: train.len(),
            validation_examples: val.len(),
            rejected: data
                .rejected_counts()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            max_length,
            train_tokens: train.iter().map(|e| e.ids.len() as u64 - 1).sum(),
            train_target_tokens: train.iter().map(|e| e.target_tokens() as u64).sum(),
            steps_per_epoch,
            max_steps,
            warmup_steps,
        };
        write_data_report(out, &summary, &data)?;

        let (step, tokens) = state.as_ref().map_or((0, 0), |s| (s.step, s.tokens));
        let run = Run::new(model, optimizer, step, tokens, max_steps, out)?;
        let schedule = LrSchedule {
            max_lr: recipe.lr,
            min_lr: recipe.min_lr,
            warmup_steps,
            max_steps,
        };
        Ok(SftTrainer {
            options,
            run,
            train,
            val,
            data_id,
            summary,
            schedule,
            resumed_from: resume_from,
        })
    }

    /// Optimiser steps completed.
    pub fn step(&self) -> u64 {
        self.run.step
    }

    pub fn model(&self) -> &TrainableModel {
        &self.run.model
    }

    /// The parameters, in [`crate::model::parameter_shapes`] order.
    pub fn params(&self) -> &[Vec<f32>] {
        &self.run.params
    }

    pub fn resumed_from(&self) -> Option<&Path> {
        self.resumed_from.as_deref()
    }

    /// How the examples are used (also in `data.json`).
    pub fn summary(&self) -> &SftSummary {
        &self.summary
    }

    /// The examples of optimiser step `step` (0-based): a slice of its epoch's seeded order.
    fn batch(&self, step: u64) -> Vec<&SftExample> {
        let per_epoch = self.summary.steps_per_epoch;
        let (epoch, index) = (step / per_epoch, (step % per_epoch) as usize);
        let order = Rng::for_stream(self.options.recipe.seed, EPOCH_STREAM + epoch)
            .permutation(self.train.len());
        let size = self.options.recipe.global_batch;
        let start = index * size;
        let end = (start + size).min(order.len());
        order[start..end].iter().map(|&i| &self.train[i]).collect()
    }

    /// One optimiser step on the next global batch. Returns the loss, rate, gradient norm
    /// and the tokens of the batch.
    pub fn train_step(&mut self) -> Result<(f64, f64, f64, u64)> {
        let batch = self.batch(self.run.step);
        let tokens: u64 = batch.iter().map(|e| e.ids.len() as u64 - 1).sum();
        let micro_batches: Vec<Vec<LabelledSequence>> = batch
            .chunks(self.options.recipe.micro_batch)
            .map(|chunk| chunk.iter().map(|e| e.labelled()).collect())
            .collect();
        let (loss, grads) = accumulate_sft_gradients(&self.run.model, &micro_batches)?;
        let lr = self.schedule.lr(self.run.step);
        let norm = self
            .run
            .apply(loss, grads, lr, self.options.recipe.grad_clip, tokens)?;
        Ok((loss, lr, norm, tokens))
    }

    /// Trains every epoch, or until `stop_after` steps are done (as if killed right after
    /// that step), validating and checkpointing at the end of each epoch (and every
    /// `save_interval` steps). Returns the last checkpoint written, if any.
    pub fn run(
        &mut self,
        reporter: &mut dyn Reporter,
        stop_after: Option<u64>,
    ) -> Result<Option<PathBuf>> {
        run::run(self, reporter, stop_after)
    }
}

impl Steps for SftTrainer {
    fn run_state(&mut self) -> &mut Run {
        &mut self.run
    }

    fn next_step(&mut self) -> Result<Stepped> {
        Ok(self.train_step()?.into())
    }

    /// The mean cross-entropy over every target token of the held-out examples; `None`
    /// without any.
    fn validate(&self) -> Result<Option<f64>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let mut total = 0.0;
        let mut tokens = 0;
        for chunk in self.val.chunks(self.options.recipe.micro_batch) {
            let batch: Vec<LabelledSequence> = chunk.iter().map(|e| e.labelled()).collect();
            tokens += batch
                .iter()
                .map(LabelledSequence::loss_tokens)
                .sum::<usize>();
            let sum = sft_loss(&self.run.model, &batch, 1.0)?.detach();
            total += f64::from(sum.to_scalar::<f32>()?);
        }
        Ok(Some(total / tokens as f64))
    }

    /// Writes the checkpoint of the current step and redraws the loss curve.
    fn save_checkpoint(&self) -> Result<PathBuf> {
        let state = SftState {
            step: self.run.step,
            tokens: self.run.tokens,
            recipe: self.options.recipe.clone(),
            data: self.data_id.clone(),
        };
        self.run.save(&state, Some(&self.options.init_from))
    }

    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    fn due(&self, step: u64) -> Due {
        let per_epoch = self.summary.steps_per_epoch;
        let epoch_end = step % per_epoch == 0;
        let interval = self.options.save_interval;
        Due {
            validate: epoch_end,
            epoch: epoch_end.then_some(step / per_epoch),
            checkpoint: epoch_end || (interval > 0 && step % interval == 0),
        }
    }
}

/// The random streams of the epochs' orders are `EPOCH_STREAM + epoch`.
const EPOCH_STREAM: u64 = 1000;

/// Writes `data.json` (the summary) and `rejected.jsonl` (one line per rejected row).
fn write_data_report(out: &Path, summary: &SftSummary, data: &SftData) -> Result<()> {
    let json_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Json { path, source }
    };
    let write = |path: &Path, text: String| -> Result<()> {
        let io_error = |e: prox_io::Error| Error::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        };
        let mut file = prox_io::AtomicFile::create(path).map_err(io_error)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
        file.commit().map_err(io_error)
    };
    let path = out.join("data.json");
    let mut text = serde_json::to_string_pretty(summary).map_err(json_error(&path))?;
    text.push('\n');
    write(&path, text)?;
    let path = out.join("rejected.jsonl");
    let mut text = String::new();
    for rejection in &data.rejected {
        text.push_str(&serde_json::to_string(rejection).map_err(json_error(&path))?);
        text.push('\n');
    }
    write(&path, text)
}
