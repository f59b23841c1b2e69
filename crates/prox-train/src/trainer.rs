//! The training loop: micro-batches accumulated into a global batch, mean next-token
//! cross-entropy, clipping by total norm, AdamW, the warm-up + cosine schedule; periodic
//! validation and checkpoints; resuming from the last checkpoint to exactly the state of an
//! uninterrupted run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use prox_engine::{Config, LogitsAt};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointContents, TrainerState};
use crate::data::{DataSource, MixedStream, DEFAULT_WINDOW_FILES};
use crate::error::{Error, Result};
use crate::metrics::{plot_loss, MetricsLine, MetricsLog, StepMetrics};
use crate::model::TrainableModel;
use crate::optim::{clip_by_total_norm, AdamW, AdamWConfig};
use crate::schedule::LrSchedule;

/// Everything that decides the numbers a run computes. A resumed run must have the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Tokens per training sequence; blocks of `seq_len + 1` are read.
    pub seq_len: usize,
    /// Sequences per forward and backward pass.
    pub micro_batch: usize,
    /// Sequences per optimiser step (a multiple of `micro_batch`).
    pub global_batch: usize,
    pub max_steps: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    /// Maximum total gradient norm (0 turns clipping off).
    pub grad_clip: f64,
    pub seed: u64,
    /// Files read together, whose blocks are shuffled together.
    pub window_files: usize,
}

impl Default for Recipe {
    /// The reference's 0.3B recipe, with a batch for one machine.
    fn default() -> Self {
        Recipe {
            seq_len: 2048,
            micro_batch: 4,
            global_batch: 16,
            max_steps: 1000,
            lr: 5e-4,
            min_lr: 5e-5,
            warmup_steps: 500,
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
            seed: 1234,
            window_files: DEFAULT_WINDOW_FILES,
        }
    }
}

impl Recipe {
    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            max_lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: self.warmup_steps,
            max_steps: self.max_steps,
        }
    }

    /// Micro-batches per optimiser step.
    pub fn accumulation(&self) -> usize {
        self.global_batch / self.micro_batch.max(1)
    }

    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    fn validate(&self, cfg: &Config) -> Result<()> {
        let bad = |m: String| Err(Error::Options(m));
        if self.seq_len == 0 || self.micro_batch == 0 || self.global_batch == 0 {
            return bad("the sequence length and batch sizes must be positive".into());
        }
        if self.global_batch % self.micro_batch != 0 {
            return bad(format!(
                "the global batch {} is not a multiple of the micro-batch {}",
                self.global_batch, self.micro_batch
            ));
        }
        if self.seq_len > cfg.max_position_embeddings {
            return bad(format!(
                "the sequence length {} exceeds the model's context of {}",
                self.seq_len, cfg.max_position_embeddings
            ));
        }
        let rates = [
            self.lr,
            self.min_lr,
            self.grad_clip,
            self.adamw.weight_decay,
        ];
        if rates.iter().any(|r| !r.is_finite() || *r < 0.0) || self.min_lr > self.lr {
            return bad(
                "learning rates, weight decay and clipping must be finite and \
                        non-negative, and the minimum rate at most the rate"
                    .into(),
            );
        }
        let betas = [self.adamw.beta1, self.adamw.beta2];
        if betas.iter().any(|b| !(0.0..1.0).contains(b)) || self.adamw.eps <= 0.0 {
            return bad("betas must lie in [0, 1) and eps be positive".into());
        }
        Ok(())
    }
}

/// Where the weights of a new run come from.
#[derive(Debug, Clone)]
pub enum ModelInit {
    /// Fresh weights for this configuration (the reference's initialisation, seeded).
    Fresh(Config),
    /// The weights of a Hugging Face folder (`config.json` + safetensors).
    Pretrained(PathBuf),
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: Vec<DataSource>,
    /// Held-out folders: read in order, without shuffling.
    pub val_data: Vec<DataSource>,
    pub out: PathBuf,
    pub model: ModelInit,
    /// A folder whose tokenizer files go into every checkpoint.
    pub tokenizer: Option<PathBuf>,
    pub recipe: Recipe,
    /// Steps between checkpoints (the last step always gets one); 0: only the last.
    pub save_interval: u64,
    /// Steps between validations; 0: none.
    pub eval_interval: u64,
    /// Micro-batches per validation.
    pub eval_iters: u64,
    /// Continue from the last checkpoint in `out`, if there is one.
    pub resume: bool,
    pub device: Device,
}

/// Hears about progress (the command line prints it; tests ignore it).
pub trait Reporter {
    fn step(&mut self, _metrics: &StepMetrics) {}
    fn validation(&mut self, _step: u64, _loss: f64) {}
    fn checkpoint(&mut self, _step: u64, _dir: &Path) {}
    /// Fine-tuning finished epoch `epoch` (1-based) at optimiser step `step`.
    fn epoch(&mut self, _epoch: u64, _step: u64) {}
}

/// A reporter that ignores everything.
pub struct Silent;
impl Reporter for Silent {}

/// The mean cross-entropy of a micro-batch of blocks (`seq_len + 1` tokens each: inputs and
/// their shifted targets), as a differentiable scalar.
pub fn block_loss(model: &TrainableModel, blocks: &[Vec<u32>]) -> Result<Tensor> {
    let inputs: Vec<&[u32]> = blocks
        .iter()
        .map(|b| &b[..b.len().saturating_sub(1)])
        .collect();
    if inputs.iter().any(|i| i.is_empty()) {
        return Err(Error::Options("a block needs at least two tokens".into()));
    }
    let targets: Vec<u32> = blocks.iter().flat_map(|b| b[1..].iter().copied()).collect();
    let logits = model.llama.forward_uncached(&inputs, &LogitsAt::All)?;
    let n = targets.len();
    let targets = Tensor::from_vec(targets, n, logits.device())?;
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// Forward and backward passes over micro-batches, gradients summed as PyTorch accumulates
/// `loss / accumulation` over them. Returns the mean loss and one gradient vector per
/// parameter.
pub fn accumulate_gradients(
    model: &TrainableModel,
    micro_batches: &[Vec<Vec<u32>>],
) -> Result<(f64, Vec<Vec<f32>>)> {
    let scale = 1.0 / micro_batches.len().max(1) as f64;
    let mut grads = zero_gradients(model);
    let mut loss_sum = 0.0;
    for blocks in micro_batches {
        let loss = block_loss(model, blocks)?;
        loss_sum += f64::from(loss.to_scalar::<f32>()?);
        let scaled = if micro_batches.len() == 1 {
            loss
        } else {
            loss.affine(scale, 0.0)?
        };
        add_gradients(model, &scaled, &mut grads)?;
    }
    Ok((loss_sum * scale, grads))
}

/// Zero gradient vectors, one per parameter.
pub(crate) fn zero_gradients(model: &TrainableModel) -> Vec<Vec<f32>> {
    model
        .params
        .iter()
        .map(|(_, v)| vec![0.0; v.elem_count()])
        .collect()
}

/// Back-propagates `loss` and adds each parameter's gradient to `grads`.
pub(crate) fn add_gradients(
    model: &TrainableModel,
    loss: &Tensor,
    grads: &mut [Vec<f32>],
) -> Result<()> {
    let store = loss.backward()?;
    for ((_, var), acc) in model.params.iter().zip(grads) {
        if let Some(g) = store.get(var.as_tensor()) {
            let g = g.flatten_all()?.to_vec1::<f32>()?;
            for (a, x) in acc.iter_mut().zip(g) {
                *a += x;
            }
        }
    }
    Ok(())
}

/// One optimiser step on host copies of the parameters: clip, AdamW, copy back into the
/// model. Returns the gradient norm before clipping.
pub fn apply_step(
    model: &TrainableModel,
    params: &mut [Vec<f32>],
    optimizer: &mut AdamW,
    mut grads: Vec<Vec<f32>>,
    lr: f64,
    grad_clip: f64,
) -> Result<f64> {
    let norm = if grad_clip > 0.0 {
        clip_by_total_norm(&mut grads, grad_clip)
    } else {
        crate::optim::total_norm(&grads)
    };
    optimizer.step(params, &grads, lr);
    model.set_params(params)?;
    Ok(norm)
}

/// A training run in progress.
pub struct Trainer {
    options: TrainOptions,
    model: TrainableModel,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    params: Vec<Vec<f32>>,
    optimizer: AdamW,
    data: MixedStream,
    step: u64,
    metrics: MetricsLog,
    config_json: serde_json::Value,
    tokenizer_from: Option<PathBuf>,
    /// Where this run resumed from, if it did.
    resumed_from: Option<PathBuf>,
}

impl Trainer {
    /// Prepares a run: a fresh or pretrained model, or the state of the last checkpoint when
    /// resuming. Refuses to start over a folder that has checkpoints unless resuming.
    pub fn new(options: TrainOptions) -> Result<Self> {
        let out = &options.out;
        let resume_from = checkpoint::prepare_output(out, options.resume)?;

        let (model, optimizer, step, blocks_drawn, tokenizer_from) = match &resume_from {
            Some(dir) => {
                let state = checkpoint::read_state(dir)?;
                if state.recipe != options.recipe || state.data != options.data {
                    return Err(Error::Resume {
                        path: dir.clone(),
                        reason: describe_mismatch(&state, &options),
                    });
                }
                let cfg = crate::model::config_from_file(&dir.join(checkpoint::CONFIG_FILE))?;
                let expected = match &options.model {
                    ModelInit::Fresh(cfg) => Some(cfg.clone()),
                    ModelInit::Pretrained(_) => None,
                };
                if expected.is_some_and(|e| e != cfg) {
                    return Err(Error::Resume {
                        path: dir.clone(),
                        reason: "the checkpoint's model configuration differs from this run's"
                            .into(),
                    });
                }
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
                let tokenizer = options.tokenizer.clone().or_else(|| Some(dir.clone()));
                (model, optimizer, state.step, state.blocks_drawn, tokenizer)
            }
            None => {
                let (model, tokenizer) = match &options.model {
                    ModelInit::Fresh(cfg) => (
                        TrainableModel::init(cfg, options.recipe.seed, &options.device)?,
                        options.tokenizer.clone(),
                    ),
                    ModelInit::Pretrained(dir) => {
                        let config_path = dir.join("config.json");
                        let cfg = crate::model::config_from_file(&config_path)?;
                        let files = prox_engine::safetensors_files(dir)?;
                        (
                            TrainableModel::load(&cfg, &files, &options.device, dir)?,
                            options.tokenizer.clone().or_else(|| Some(dir.clone())),
                        )
                    }
                };
                let (_, sizes) = names_and_sizes(&model);
                let optimizer = AdamW::new(options.recipe.adamw, &sizes);
                (model, optimizer, 0, 0, tokenizer)
            }
        };
        options.recipe.validate(&model.config)?;

        let recipe = &options.recipe;
        let mut data = MixedStream::open(
            &options.data,
            recipe.seq_len + 1,
            recipe.window_files,
            true,
            recipe.seed,
        )?;
        data.skip(blocks_drawn);
        if !options.val_data.is_empty() {
            // Opened once here so that a bad validation folder stops the run before training.
            MixedStream::open(
                &options.val_data,
                recipe.seq_len + 1,
                recipe.window_files,
                false,
                recipe.seed,
            )?;
        }
        let metrics = MetricsLog::open(&out.join("metrics.jsonl"), step)?;
        let (names, _) = names_and_sizes(&model);
        let shapes = model
            .params
            .iter()
            .map(|(_, v)| v.dims().to_vec())
            .collect();
        let params = model.host_params()?;
        let config_json = model.config.to_hf_json();
        Ok(Trainer {
            options,
            model,
            names,
            shapes,
            params,
            optimizer,
            data,
            step,
            metrics,
            config_json,
            tokenizer_from,
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

    /// Blocks drawn from the training data so far.
    pub fn blocks_drawn(&self) -> u64 {
        self.data.drawn()
    }

    /// One optimiser step on the next global batch. Returns the loss, rate and gradient norm
    /// (timings are the caller's).
    pub fn train_step(&mut self) -> Result<(f64, f64, f64)> {
        let recipe = &self.options.recipe;
        let vocab = self.model.config.vocab_size;
        let micro_batches = (0..recipe.accumulation())
            .map(|_| {
                (0..recipe.micro_batch)
                    .map(|_| self.data.next_block(vocab))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let (loss, grads) = accumulate_gradients(&self.model, &micro_batches)?;
        let step = self.step + 1;
        if !loss.is_finite() {
            return Err(Error::NotFinite {
                step,
                what: "loss",
                value: loss,
            });
        }
        let lr = recipe.schedule().lr(self.step);
        let norm = apply_step(
            &self.model,
            &mut self.params,
            &mut self.optimizer,
            grads,
            lr,
            recipe.grad_clip,
        )?;
        if !norm.is_finite() {
            return Err(Error::NotFinite {
                step,
                what: "gradient norm",
                value: norm,
            });
        }
        self.step = step;
        Ok((loss, lr, norm))
    }

    /// The mean loss over the first `eval_iters` micro-batches of the validation folders.
    pub fn validate(&self) -> Result<Option<f64>> {
        let options = &self.options;
        if options.val_data.is_empty() || options.eval_iters == 0 {
            return Ok(None);
        }
        let recipe = &options.recipe;
        let mut stream = MixedStream::open(
            &options.val_data,
            recipe.seq_len + 1,
            recipe.window_files,
            false,
            recipe.seed,
        )?;
        let mut total = 0.0;
        for _ in 0..options.eval_iters {
            let blocks = (0..recipe.micro_batch)
                .map(|_| stream.next_block(self.model.config.vocab_size))
                .collect::<Result<Vec<_>>>()?;
            let loss = block_loss(&self.model, &blocks)?.detach();
            total += f64::from(loss.to_scalar::<f32>()?);
        }
        Ok(Some(total / options.eval_iters as f64))
    }

    /// Writes the checkpoint of the current step and redraws the loss curve.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let state = TrainerState {
            step: self.step,
            blocks_drawn: self.data.drawn(),
            recipe: self.options.recipe.clone(),
            data: self.options.data.clone(),
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
                tokenizer_from: self.tokenizer_from.as_deref(),
            },
        )?;
        plot_loss(self.metrics.lines(), &self.options.out.join("loss.svg"))?;
        Ok(saved)
    }

    /// Trains until `max_steps`, or until `stop_after` steps are done (as if killed right
    /// after that step), validating and checkpointing on the way. Returns the last
    /// checkpoint written, if any.
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    pub fn run(
        &mut self,
        reporter: &mut dyn Reporter,
        stop_after: Option<u64>,
    ) -> Result<Option<PathBuf>> {
        let max_steps = self.options.recipe.max_steps;
        let tokens_per_step =
            (self.options.recipe.global_batch * self.options.recipe.seq_len) as u64;
        let started = Instant::now();
        let first_step = self.step;
        let mut last_checkpoint = None;
        while self.step < max_steps && stop_after.is_none_or(|s| self.step < s) {
            let step_started = Instant::now();
            let (loss, lr, grad_norm) = self.train_step()?;
            let step_s = step_started.elapsed().as_secs_f64();
            let elapsed_s = started.elapsed().as_secs_f64();
            let per_step = elapsed_s / (self.step - first_step) as f64;
            let metrics = StepMetrics {
                step: self.step,
                loss,
                lr,
                grad_norm,
                tokens: self.step * tokens_per_step,
                tokens_per_s: tokens_per_step as f64 / step_s.max(1e-9),
                elapsed_s,
                eta_s: per_step * (max_steps - self.step) as f64,
            };
            self.metrics.append(MetricsLine::Step(metrics.clone()))?;
            reporter.step(&metrics);
            let every = |interval: u64| interval > 0 && self.step % interval == 0;
            if every(self.options.eval_interval)
                || (self.step == max_steps && self.options.eval_interval > 0)
            {
                if let Some(val_loss) = self.validate()? {
                    self.metrics.append(MetricsLine::Validation {
                        step: self.step,
                        val_loss,
                    })?;
                    reporter.validation(self.step, val_loss);
                }
            }
            if every(self.options.save_interval) || self.step == max_steps {
                let dir = self.save_checkpoint()?;
                reporter.checkpoint(self.step, &dir);
                last_checkpoint = Some(dir);
            }
        }
        Ok(last_checkpoint)
    }
}

pub(crate) fn names_and_sizes(model: &TrainableModel) -> (Vec<String>, Vec<usize>) {
    model
        .params
        .iter()
        .map(|(name, var)| (name.clone(), var.elem_count()))
        .unzip()
}

fn describe_mismatch(state: &TrainerState, options: &TrainOptions) -> String {
    let mut differences = field_differences(&state.recipe, &options.recipe);
    if state.data != options.data {
        differences.push("the training data folders or weights".to_owned());
    }
    format!(
        "this run's recipe differs from the checkpoint's ({}); resume with the same settings",
        differences.join("; ")
    )
}

/// The fields of two serialised recipes that differ, as `key: checkpoint A vs now B`.
pub(crate) fn field_differences<T: Serialize>(saved: &T, now: &T) -> Vec<String> {
    let show = |v: serde_json::Value| v.to_string();
    let mut differences = Vec::new();
    let saved = serde_json::to_value(saved).unwrap_or_default();
    let now = serde_json::to_value(now).unwrap_or_default();
    if let (Some(saved), Some(now)) = (saved.as_object(), now.as_object()) {
        for (key, value) in saved {
            let other = now.get(key).cloned().unwrap_or_default();
            if *value != other {
                differences.push(format!(
                    "{key}: checkpoint {} vs now {}",
                    show(value.clone()),
                    show(other)
                ));
            }
        }
    }
    differences
}
