//! What pre-training ([`crate::Trainer`]) and fine-tuning ([`crate::SftTrainer`]) share: the
//! model with host copies of its parameters, the optimiser, the step count and the metrics
//! log ([`Run`]), gradient accumulation and the optimiser step, checkpoints, and the loop that
//! steps, logs, validates and saves ([`run`]). The two differ only in where batches come
//! from, how their loss is taken, and when they validate and save ([`Steps`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use prox_engine::Config;
use serde::Serialize;

use crate::checkpoint::{self, CheckpointContents};
use crate::error::{Error, Result};
use crate::metrics::{plot_loss, MetricsLine, MetricsLog, StepMetrics};
use crate::model::TrainableModel;
use crate::optim::{clip_by_total_norm, AdamW, AdamWConfig};
use crate::trainer::Reporter;

/// The state every training run carries from step to step.
pub(crate) struct Run {
    pub(crate) model: TrainableModel,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    pub(crate) params: Vec<Vec<f32>>,
    optimizer: AdamW,
    /// Optimiser steps completed.
    pub(crate) step: u64,
    /// Tokens trained on so far.
    pub(crate) tokens: u64,
    max_steps: u64,
    metrics: MetricsLog,
    config_json: serde_json::Value,
    out: PathBuf,
}

impl Run {
    /// A run of `max_steps` at `step` (having trained on `tokens`), logging into `out`
    /// (whose metrics past `step` are dropped, as a resumed run computes them again).
    pub(crate) fn new(
        model: TrainableModel,
        optimizer: AdamW,
        step: u64,
        tokens: u64,
        max_steps: u64,
        out: &Path,
    ) -> Result<Self> {
        let metrics = MetricsLog::open(&out.join("metrics.jsonl"), step)?;
        let (names, _) = names_and_sizes(&model);
        let shapes = model
            .params
            .iter()
            .map(|(_, v)| v.dims().to_vec())
            .collect();
        let params = model.host_params()?;
        let config_json = model.config.to_hf_json();
        Ok(Run {
            model,
            names,
            shapes,
            params,
            optimizer,
            step,
            tokens,
            max_steps,
            metrics,
            config_json,
            out: out.to_path_buf(),
        })
    }

    pub(crate) fn max_steps(&self) -> u64 {
        self.max_steps
    }

    /// One optimiser step with the gradients of a global batch of `tokens` tokens whose loss
    /// is `loss`: clip, AdamW at rate `lr`, parameters copied back into the model. Refuses a
    /// loss or gradient norm that is not finite, since every later step would be garbage.
    /// Returns the gradient norm before clipping.
    pub(crate) fn apply(
        &mut self,
        loss: f64,
        grads: Vec<Vec<f32>>,
        lr: f64,
        grad_clip: f64,
        tokens: u64,
    ) -> Result<f64> {
        let step = self.step + 1;
        let not_finite = |what, value: f64| Error::NotFinite { step, what, value };
        if !loss.is_finite() {
            return Err(not_finite("loss", loss));
        }
        let norm = apply_step(
            &self.model,
            &mut self.params,
            &mut self.optimizer,
            grads,
            lr,
            grad_clip,
        )?;
        if !norm.is_finite() {
            return Err(not_finite("gradient norm", norm));
        }
        self.step = step;
        self.tokens += tokens;
        Ok(norm)
    }

    /// Writes the checkpoint of the current step, with `state` as its trainer state, and
    /// redraws the loss curve.
    pub(crate) fn save<S: Serialize>(
        &self,
        state: &S,
        tokenizer_from: Option<&Path>,
    ) -> Result<PathBuf> {
        let dir = checkpoint::checkpoint_dir(&self.out, self.step);
        let saved = checkpoint::save(
            &dir,
            &CheckpointContents {
                config_json: &self.config_json,
                names: &self.names,
                shapes: &self.shapes,
                params: &self.params,
                optimizer: &self.optimizer,
                state,
                tokenizer_from,
            },
        )?;
        plot_loss(self.metrics.lines(), &self.out.join("loss.svg"))?;
        Ok(saved)
    }
}

/// The model and optimiser of checkpoint `dir`, saved after `step` steps. `expected`: the
/// configuration the run asks for, when it names one.
pub(crate) fn load_checkpoint(
    dir: &Path,
    step: u64,
    expected: Option<&Config>,
    device: &Device,
) -> Result<(TrainableModel, AdamW)> {
    let resume_error = |reason: String| Error::Resume {
        path: dir.to_path_buf(),
        reason,
    };
    let cfg = crate::model::config_from_file(&dir.join(checkpoint::CONFIG_FILE))?;
    if expected.is_some_and(|e| *e != cfg) {
        return Err(resume_error(
            "the checkpoint's model configuration differs from this run's".into(),
        ));
    }
    let model = TrainableModel::load(&cfg, &[dir.join(checkpoint::MODEL_FILE)], device, dir)?;
    let (names, sizes) = names_and_sizes(&model);
    let optimizer = checkpoint::load_optimizer(dir, &names, &sizes)?;
    if optimizer.steps != step {
        return Err(resume_error(format!(
            "the optimiser took {} steps, the trainer {step}",
            optimizer.steps
        )));
    }
    Ok((model, optimizer))
}

/// The model of a Hugging Face folder (`config.json` + safetensors) and a fresh optimiser.
pub(crate) fn load_pretrained(
    dir: &Path,
    adamw: AdamWConfig,
    device: &Device,
) -> Result<(TrainableModel, AdamW)> {
    let cfg = crate::model::config_from_file(&dir.join(checkpoint::CONFIG_FILE))?;
    let files = prox_engine::safetensors_files(dir)?;
    let model = TrainableModel::load(&cfg, &files, device, dir)?;
    let optimizer = fresh_optimizer(&model, adamw);
    Ok((model, optimizer))
}

/// AdamW with no steps taken, for `model`'s parameters.
pub(crate) fn fresh_optimizer(model: &TrainableModel, adamw: AdamWConfig) -> AdamW {
    let (_, sizes) = names_and_sizes(model);
    AdamW::new(adamw, &sizes)
}

fn names_and_sizes(model: &TrainableModel) -> (Vec<String>, Vec<usize>) {
    model
        .params
        .iter()
        .map(|(name, var)| (name.clone(), var.elem_count()))
        .unzip()
}

/// Checks the optimiser settings both recipes share.
pub(crate) fn validate_optimizer(
    lr: f64,
    min_lr: f64,
    grad_clip: f64,
    adamw: &AdamWConfig,
) -> Result<()> {
    let rates = [lr, min_lr, grad_clip, adamw.weight_decay];
    if rates.iter().any(|r| !r.is_finite() || *r < 0.0) || min_lr > lr {
        return Err(Error::Options(
            "learning rates, weight decay and clipping must be finite and non-negative, and \
             the minimum rate at most the rate"
                .into(),
        ));
    }
    let betas = [adamw.beta1, adamw.beta2];
    if betas.iter().any(|b| !(0.0..1.0).contains(b)) || adamw.eps <= 0.0 {
        return Err(Error::Options(
            "betas must lie in [0, 1) and eps be positive".into(),
        ));
    }
    Ok(())
}

/// Forward and backward passes over micro-batches, adding up their gradients. `loss` gives a
/// micro-batch's loss as the value to add to the returned total and the tensor to
/// differentiate (already scaled to its share of the global batch). Returns the total and
/// one gradient vector per parameter.
pub(crate) fn accumulate<B>(
    model: &TrainableModel,
    micro_batches: &[B],
    mut loss: impl FnMut(&B) -> Result<(f64, Tensor)>,
) -> Result<(f64, Vec<Vec<f32>>)> {
    let mut grads: Vec<Vec<f32>> = model
        .params
        .iter()
        .map(|(_, v)| vec![0.0; v.elem_count()])
        .collect();
    let mut total = 0.0;
    for batch in micro_batches {
        let (value, differentiable) = loss(batch)?;
        total += value;
        let store = differentiable.backward()?;
        for ((_, var), acc) in model.params.iter().zip(&mut grads) {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = g.flatten_all()?.to_vec1::<f32>()?;
                for (a, x) in acc.iter_mut().zip(g) {
                    *a += x;
                }
            }
        }
    }
    Ok((total, grads))
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

/// What one optimiser step did.
pub(crate) struct Stepped {
    pub(crate) loss: f64,
    pub(crate) lr: f64,
    pub(crate) grad_norm: f64,
    /// Tokens of the step's batch.
    pub(crate) tokens: u64,
}

impl From<(f64, f64, f64, u64)> for Stepped {
    fn from((loss, lr, grad_norm, tokens): (f64, f64, f64, u64)) -> Self {
        Stepped {
            loss,
            lr,
            grad_norm,
            tokens,
        }
    }
}

/// What is due after a step.
pub(crate) struct Due {
    pub(crate) validate: bool,
    /// The epoch (1-based) the step finished, if it finished one.
    pub(crate) epoch: Option<u64>,
    pub(crate) checkpoint: bool,
}

/// What a kind of training run adds to [`Run`].
pub(crate) trait Steps {
    fn run_state(&mut self) -> &mut Run;
    /// One optimiser step on the next global batch.
    fn next_step(&mut self) -> Result<Stepped>;
    /// The validation loss; `None` without validation data.
    fn validate(&self) -> Result<Option<f64>>;
    /// Writes the checkpoint of the current step and redraws the loss curve.
    fn save_checkpoint(&self) -> Result<PathBuf>;
    /// What is due after step `step` (1-based).
    fn due(&self, step: u64) -> Due;
}

/// Trains until the last step, or until `stop_after` steps are done (as if killed right after
/// that step), logging every step and validating and checkpointing when due. Returns the last
/// checkpoint written, if any. Freed memory is kept for the next step
/// ([`crate::allocator::keep_freed_memory`]).
pub(crate) fn run(
    steps: &mut impl Steps,
    reporter: &mut dyn Reporter,
    stop_after: Option<u64>,
) -> Result<Option<PathBuf>> {
    crate::allocator::keep_freed_memory();
    let max_steps = steps.run_state().max_steps;
    let started = Instant::now();
    let first_step = steps.run_state().step;
    let mut last_checkpoint = None;
    loop {
        let step = steps.run_state().step;
        if step >= max_steps || stop_after.is_some_and(|s| step >= s) {
            return Ok(last_checkpoint);
        }
        let step_started = Instant::now();
        let stepped = steps.next_step()?;
        let step_s = step_started.elapsed().as_secs_f64();
        let elapsed_s = started.elapsed().as_secs_f64();
        let run_state = steps.run_state();
        let step = run_state.step;
        let per_step = elapsed_s / (step - first_step) as f64;
        let metrics = StepMetrics {
            step,
            loss: stepped.loss,
            lr: stepped.lr,
            grad_norm: stepped.grad_norm,
            tokens: run_state.tokens,
            tokens_per_s: stepped.tokens as f64 / step_s.max(1e-9),
            elapsed_s,
            eta_s: per_step * (max_steps - step) as f64,
        };
        run_state
            .metrics
            .append(MetricsLine::Step(metrics.clone()))?;
        reporter.step(&metrics);
        let due = steps.due(step);
        if due.validate {
            if let Some(val_loss) = steps.validate()? {
                let log = &mut steps.run_state().metrics;
                log.append(MetricsLine::Validation { step, val_loss })?;
                reporter.validation(step, val_loss);
            }
        }
        if let Some(epoch) = due.epoch {
            reporter.epoch(epoch, step);
        }
        if due.checkpoint {
            let dir = steps.save_checkpoint()?;
            reporter.checkpoint(step, &dir);
            last_checkpoint = Some(dir);
        }
    }
}

/// The error for a checkpoint whose recipe or data differ from this run's, listing
/// `differences`.
pub(crate) fn recipe_mismatch(dir: &Path, differences: &[String]) -> Error {
    Error::Resume {
        path: dir.to_path_buf(),
        reason: format!(
            "this run's recipe differs from the checkpoint's ({}); resume with the same settings",
            differences.join("; ")
        ),
    }
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
