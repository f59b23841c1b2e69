//! The training loop: micro-batches accumulated into a global batch, mean next-token
//! cross-entropy, clipping by total norm, AdamW, the warm-up + cosine schedule; periodic
//! validation and checkpoints; resuming from the last checkpoint to exactly the state of an
//! uninterrupted run.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use prox_engine::{Config, LogitsAt};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, TrainerState};
use crate::data::{DataSource, MixedStream, DEFAULT_WINDOW_FILES};
use crate::error::{Error, Result};
use crate::metrics::StepMetrics;
use crate::model::TrainableModel;
use crate::optim::AdamWConfig;
use crate::run::{self, Due, Run, Stepped, Steps};
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

    /// The blocks of `sources` this recipe reads (`seq_len + 1` tokens), shuffled or in order.
    fn open(&self, sources: &[DataSource], shuffle: bool) -> Result<MixedStream> {
        MixedStream::open(
            sources,
            self.seq_len + 1,
            self.window_files,
            shuffle,
            self.seed,
        )
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
        run::validate_optimizer(self.lr, self.min_lr, self.grad_clip, &self.adamw)
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
    let picked = prox_engine::fused::target_log_probs(&logits, &targets)?;
    Ok(picked.sum_all()?.affine(-1.0 / targets.len() as f64, 0.0)?)
}

/// Forward and backward passes over micro-batches, gradients summed as PyTorch accumulates
/// `loss / accumulation` over them. Returns the mean loss and one gradient vector per
/// parameter.
pub fn accumulate_gradients(
    model: &TrainableModel,
    micro_batches: &[Vec<Vec<u32>>],
) -> Result<(f64, Vec<Vec<f32>>)> {
    let scale = 1.0 / micro_batches.len().max(1) as f64;
    let (loss_sum, grads) = run::accumulate(model, micro_batches, |blocks| {
        let loss = block_loss(model, blocks)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        let scaled = if micro_batches.len() == 1 {
            loss
        } else {
            loss.affine(scale, 0.0)?
        };
        Ok((value, scaled))
    })?;
    Ok((loss_sum * scale, grads))
}

/// A training run in progress.
pub struct Trainer {
    options: TrainOptions,
    run: Run,
    data: MixedStream,
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
                    let mut differences = run::field_differences(&state.recipe, &options.recipe);
                    if state.data != options.data {
                        differences.push("the training data folders or weights".to_owned());
                    }
                    return Err(run::recipe_mismatch(dir, &differences));
                }
                let expected = match &options.model {
                    ModelInit::Fresh(cfg) => Some(cfg),
                    ModelInit::Pretrained(_) => None,
                };
                let (model, optimizer) =
                    run::load_checkpoint(dir, state.step, expected, &options.device)?;
                let tokenizer = options.tokenizer.clone().or_else(|| Some(dir.clone()));
                (model, optimizer, state.step, state.blocks_drawn, tokenizer)
            }
            None => {
                let adamw = options.recipe.adamw;
                let (model, optimizer, tokenizer) = match &options.model {
                    ModelInit::Fresh(cfg) => {
                        let model =
                            TrainableModel::init(cfg, options.recipe.seed, &options.device)?;
                        let optimizer = run::fresh_optimizer(&model, adamw);
                        (model, optimizer, options.tokenizer.clone())
                    }
                    ModelInit::Pretrained(dir) => {
                        let (model, optimizer) = run::load_pretrained(dir, adamw, &options.device)?;
                        let tokenizer = options.tokenizer.clone().or_else(|| Some(dir.clone()));
                        (model, optimizer, tokenizer)
                    }
                };
                (model, optimizer, 0, 0, tokenizer)
            }
        };
        options.recipe.validate(&model.config)?;

        let recipe = &options.recipe;
        let mut data = recipe.open(&options.data, true)?;
        data.skip(blocks_drawn);
        if !options.val_data.is_empty() {
            // Opened once here so that a bad validation folder stops the run before training.
            recipe.open(&options.val_data, false)?;
        }
        let tokens = step * tokens_per_step(recipe);
        let run = Run::new(model, optimizer, step, tokens, recipe.max_steps, out)?;
        Ok(Trainer {
            options,
            run,
            data,
            tokenizer_from,
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

    /// Blocks drawn from the training data so far.
    pub fn blocks_drawn(&self) -> u64 {
        self.data.drawn()
    }

    /// One optimiser step on the next global batch. Returns the loss, rate and gradient norm
    /// (timings are the caller's).
    pub fn train_step(&mut self) -> Result<(f64, f64, f64)> {
        let recipe = &self.options.recipe;
        let vocab = self.run.model.config.vocab_size;
        let micro_batches = (0..recipe.accumulation())
            .map(|_| {
                (0..recipe.micro_batch)
                    .map(|_| self.data.next_block(vocab))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let (loss, grads) = accumulate_gradients(&self.run.model, &micro_batches)?;
        let lr = recipe.schedule().lr(self.run.step);
        let tokens = tokens_per_step(recipe);
        let norm = self.run.apply(loss, grads, lr, recipe.grad_clip, tokens)?;
        Ok((loss, lr, norm))
    }

    /// Trains until `max_steps`, or until `stop_after` steps are done (as if killed right
    /// after that step), validating and checkpointing on the way. Returns the last
    /// checkpoint written, if any.
    pub fn run(
        &mut self,
        reporter: &mut dyn Reporter,
        stop_after: Option<u64>,
    ) -> Result<Option<PathBuf>> {
        run::run(self, reporter, stop_after)
    }
}

fn tokens_per_step(recipe: &Recipe) -> u64 {
    (recipe.global_batch * recipe.seq_len) as u64
}

impl Steps for Trainer {
    fn run_state(&mut self) -> &mut Run {
        &mut self.run
    }

    fn next_step(&mut self) -> Result<Stepped> {
        let (loss, lr, grad_norm) = self.train_step()?;
        Ok((loss, lr, grad_norm, tokens_per_step(&self.options.recipe)).into())
    }

    /// The mean loss over the first `eval_iters` micro-batches of the validation folders.
    fn validate(&self) -> Result<Option<f64>> {
        let options = &self.options;
        if options.val_data.is_empty() || options.eval_iters == 0 {
            return Ok(None);
        }
        let recipe = &options.recipe;
        let mut stream = recipe.open(&options.val_data, false)?;
        let model = &self.run.model;
        let mut total = 0.0;
        for _ in 0..options.eval_iters {
            let blocks = (0..recipe.micro_batch)
                .map(|_| stream.next_block(model.config.vocab_size))
                .collect::<Result<Vec<_>>>()?;
            let loss = block_loss(model, &blocks)?.detach();
            total += f64::from(loss.to_scalar::<f32>()?);
        }
        Ok(Some(total / options.eval_iters as f64))
    }

    /// Writes the checkpoint of the current step and redraws the loss curve.
    fn save_checkpoint(&self) -> Result<PathBuf> {
        let state = TrainerState {
            step: self.run.step,
            blocks_drawn: self.data.drawn(),
            recipe: self.options.recipe.clone(),
            data: self.options.data.clone(),
        };
        self.run.save(&state, self.tokenizer_from.as_deref())
    }

    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    fn due(&self, step: u64) -> Due {
        let every = |interval: u64| interval > 0 && step % interval == 0;
        let (eval_interval, last) = (self.options.eval_interval, step == self.run.max_steps());
        Due {
            validate: every(eval_interval) || (last && eval_interval > 0),
            epoch: None,
            checkpoint: every(self.options.save_interval) || last,
        }
    }
}
