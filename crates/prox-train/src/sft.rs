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
use std::time::Instant;

use candle_core::{Device, Tensor, D};
use prox_engine::{Config, LogitsAt};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointContents};
use crate::error::{Error, Result};
use crate::metrics::{plot_loss, MetricsLine, MetricsLog, StepMetrics};
use crate::model::TrainableModel;
use crate::optim::{AdamW, AdamWConfig};
use crate::rng::Rng;
use crate::schedule::LrSchedule;
use crate::sft_data::{Encoding, LabelledSequence, SftData, SftExample};
use crate::trainer::{
    add_gradients, apply_step, field_differences, names_and_sizes, zero_gradients, Reporter,
};

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
        let rates = [
            self.lr,
            self.min_lr,
            self.grad_clip,
            self.adamw.weight_decay,
        ];
        if rates.iter().any(|r| !r.is_finite() || *r < 0.0) || self.min_lr > self.lr {
            return bad(
                "learning rates, weight decay and clipping must be finite and non-negative, \
                 and the minimum rate at most the rate"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) || !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "the warm-up ratio must lie in [0, 1] and the validation fraction in [0, 1)".into(),
            );
        }
        let betas = [self.adamw.beta1, self.adamw.beta2];
        if betas.iter().any(|b| !(0.0..1.0).contains(b)) || self.adamw.eps <= 0.0 {
            return bad("betas must lie in [0, 1) and eps be positive".into());
        }
        Ok(())
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
    let n = targets.len();
    let targets = Tensor::from_vec(targets, (n, 1), logits.device())?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = log_probs.gather(&targets, 1)?;
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
    let mut grads = zero_gradients(model);
    let mut loss = 0.0;
    for batch in micro_batches {
        let part = sft_loss(model, batch, tokens as f64)?;
        loss += f64::from(part.to_scalar::<f32>()?);
        add_gradients(model, &part, &mut grads)?;
    }
    Ok((loss, grads))
}

/// A fine-tuning run in progress.
pub struct SftTrainer {
    options: SftOptions,
    model: TrainableModel,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    params: Vec<Vec<f32>>,
    optimizer: AdamW,
    train: Vec<SftExample>,
    val: Vec<SftExample>,
    data_id: SftDataId,
    summary: SftSummary,
    schedule: LrSchedule,
    step: u64,
    tokens: u64,
    metrics: MetricsLog,
    config_json: serde_json::Value,
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
                let state: SftState = checkpoint::read_json(&dir.join(checkpoint::STATE_FILE))?;
                if state.recipe != *recipe {
                    return Err(Error::Resume {
                        path: dir.clone(),
                        reason: format!(
                            "this run's recipe differs from the checkpoint's ({}); resume with \
                             the same settings",
                            field_differences(&state.recipe, recipe).join("; ")
                        ),
                    });
                }
                let cfg = crate::model::config_from_file(&dir.join(checkpoint::CONFIG_FILE))?;
                let model = TrainableModel::load(
                    &cfg,
                    &[dir.join(checkpoint::MODEL_FILE)],
                    &options.device,
                    dir,
                )?;
                let (names, sizes) = names_and_sizes(&model);
                let optimizer = checkpoint::load_optimizer(dir, &names, &sizes)?;
                if optimizer.steps != state.step {
                    return Err(Error::Resume {
                        path: dir.clone(),
                        reason: format!(
                            "the optimiser took {} steps, the trainer {}",
                            optimizer.steps, state.step
                        ),
                    });
                }
                (model, optimizer, Some(state))
            }
            None => {
                let dir = &options.init_from;
                let cfg = crate::model::config_from_file(&dir.join(checkpoint::CONFIG_FILE))?;
                let files = prox_engine::safetensors_files(dir)?;
                let model = TrainableModel::load(&cfg, &files, &options.device, dir)?;
                let (_, sizes) = names_and_sizes(&model);
                let optimizer = AdamW::new(recipe.adamw, &sizes);
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
        let metrics = MetricsLog::open(&out.join("metrics.jsonl"), step)?;
        let (names, _) = names_and_sizes(&model);
        let shapes = model
            .params
            .iter()
            .map(|(_, v)| v.dims().to_vec())
            .collect();
        let params = model.host_params()?;
        let config_json = model.config.to_hf_json();
        let schedule = LrSchedule {
            max_lr: recipe.lr,
            min_lr: recipe.min_lr,
            warmup_steps,
            max_steps,
        };
        Ok(SftTrainer {
            options,
            model,
            names,
            shapes,
            params,
            optimizer,
            train,
            val,
            data_id,
            summary,
            schedule,
            step,
            tokens,
            metrics,
            config_json,
            resumed_from: resume_from,
        })
    }

    /// Optimiser steps completed.
    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn model(&self) -> &TrainableModel {
        &self.model
    }

    /// The parameters, in [`crate::model::parameter_shapes`] order.
    pub fn params(&self) -> &[Vec<f32>] {
        &self.params
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
        let batch = self.batch(self.step);
        let tokens: u64 = batch.iter().map(|e| e.ids.len() as u64 - 1).sum();
        let micro_batches: Vec<Vec<LabelledSequence>> = batch
            .chunks(self.options.recipe.micro_batch)
            .map(|chunk| chunk.iter().map(|e| e.labelled()).collect())
            .collect();
        let (loss, grads) = accumulate_sft_gradients(&self.model, &micro_batches)?;
        let step = self.step + 1;
        if !loss.is_finite() {
            return Err(Error::NotFinite {
                step,
                what: "loss",
                value: loss,
            });
        }
        let lr = self.schedule.lr(self.step);
        let norm = apply_step(
            &self.model,
            &mut self.params,
            &mut self.optimizer,
            grads,
            lr,
            self.options.recipe.grad_clip,
        )?;
        if !norm.is_finite() {
            return Err(Error::NotFinite {
                step,
                what: "gradient norm",
                value: norm,
            });
        }
        self.step = step;
        self.tokens += tokens;
        Ok((loss, lr, norm, tokens))
    }

    /// The mean cross-entropy over every target token of the held-out examples; `None`
    /// without any.
    pub fn validate(&self) -> Result<Option<f64>> {
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
            let sum = sft_loss(&self.model, &batch, 1.0)?.detach();
            total += f64::from(sum.to_scalar::<f32>()?);
        }
        Ok(Some(total / tokens as f64))
    }

    /// Writes the checkpoint of the current step and redraws the loss curve.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let state = SftState {
            step: self.step,
            tokens: self.tokens,
            recipe: self.options.recipe.clone(),
            data: self.data_id.clone(),
        };
        let dir = checkpoint::checkpoint_dir(&self.options.out, self.step);
        let saved = checkpoint::save(
            &dir,
            &CheckpointContents {
                config_json: &self.config_json,
                names: &self.names,
                shapes: &self.shapes,
                params: &self.params,
                optimizer: &self.optimizer,
                state: &state,
                tokenizer_from: Some(&self.options.init_from),
            },
        )?;
        plot_loss(self.metrics.lines(), &self.options.out.join("loss.svg"))?;
        Ok(saved)
    }

    /// Trains every epoch, or until `stop_after` steps are done (as if killed right after
    /// that step), validating and checkpointing at the end of each epoch (and every
    /// `save_interval` steps). Returns the last checkpoint written, if any.
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    pub fn run(
        &mut self,
        reporter: &mut dyn Reporter,
        stop_after: Option<u64>,
    ) -> Result<Option<PathBuf>> {
        let max_steps = self.summary.max_steps;
        let per_epoch = self.summary.steps_per_epoch;
        let started = Instant::now();
        let first_step = self.step;
        let mut last_checkpoint = None;
        while self.step < max_steps && stop_after.is_none_or(|s| self.step < s) {
            let step_started = Instant::now();
            let (loss, lr, grad_norm, tokens) = self.train_step()?;
            let step_s = step_started.elapsed().as_secs_f64();
            let elapsed_s = started.elapsed().as_secs_f64();
            let per_step = elapsed_s / (self.step - first_step) as f64;
            let metrics = StepMetrics {
                step: self.step,
                loss,
                lr,
                grad_norm,
                tokens: self.tokens,
                tokens_per_s: tokens as f64 / step_s.max(1e-9),
                elapsed_s,
                eta_s: per_step * (max_steps - self.step) as f64,
            };
            self.metrics.append(MetricsLine::Step(metrics.clone()))?;
            reporter.step(&metrics);
            let epoch_end = self.step % per_epoch == 0;
            if epoch_end {
                if let Some(val_loss) = self.validate()? {
                    self.metrics.append(MetricsLine::Validation {
                        step: self.step,
                        val_loss,
                    })?;
                    reporter.validation(self.step, val_loss);
                }
                reporter.epoch(self.step / per_epoch, self.step);
            }
            let interval = self.options.save_interval;
            if epoch_end || (interval > 0 && self.step % interval == 0) {
                let dir = self.save_checkpoint()?;
                reporter.checkpoint(self.step, &dir);
                last_checkpoint = Some(dir);
            }
        }
        Ok(last_checkpoint)
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
