//! `prox finetune`: supervised fine-tuning of a refiner on prompt → program examples with the
//! paper's recipe, on `prox-train`'s optimiser, checkpoints and log.

use std::path::PathBuf;

use anyhow::Context;
use prox_engine::DeviceSpec;
use prox_train::{SftOptions, SftRecipe, SftTrainer};

use crate::commands::train::StepProgress;
use crate::commands::Completion;
use crate::engine_args::DEVICE_VALUES;

#[derive(Debug, clap::Args)]
#[command(after_help = FINETUNE_AFTER_HELP)]
pub struct FinetuneArgs {
    /// The Hugging Face model folder to fine-tune (config.json, safetensors, tokenizer); its
    /// tokenizer encodes the examples and is copied into every checkpoint.
    #[arg(long, value_name = "HF_DIR")]
    pub init_from: PathBuf,

    /// The examples: JSON lines (plain, .gz, .zst) or Parquet rows with `prompt` (text) or
    /// `prompt_ids`, and `target` (the program).
    #[arg(long, value_name = "SFT.jsonl")]
    pub data: PathBuf,

    /// The run folder: `checkpoints/step-NNNNNNNN/`, `metrics.jsonl`, `loss.svg`,
    /// `data.json`, `rejected.jsonl`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Passes over the training examples.
    #[arg(long, default_value_t = SftRecipe::default().epochs)]
    pub epochs: u64,
    /// Examples per optimiser step.
    #[arg(long, default_value_t = SftRecipe::default().global_batch)]
    pub global_batch: usize,
    /// Examples per forward and backward pass (gradients accumulate up to --global-batch).
    #[arg(long, default_value_t = SftRecipe::default().micro_batch)]
    pub micro_batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = SftRecipe::default().lr)]
    pub lr: f64,
    /// Learning rate at the end of the cosine decay (the last step).
    #[arg(long, default_value_t = SftRecipe::default().min_lr)]
    pub min_lr: f64,
    /// The share of all steps spent in linear warm-up.
    #[arg(long, default_value_t = SftRecipe::default().warmup_ratio)]
    pub warmup_ratio: f64,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = SftRecipe::default().adamw.weight_decay)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = SftRecipe::default().adamw.beta1)]
    pub beta1: f64,
    #[arg(long, default_value_t = SftRecipe::default().adamw.beta2)]
    pub beta2: f64,
    /// Maximum total gradient norm (0: no clipping).
    #[arg(long, default_value_t = SftRecipe::default().grad_clip)]
    pub grad_clip: f64,
    /// Most tokens of prompt + target + EOS; longer examples are rejected, never cut
    /// (default: the model's context).
    #[arg(long, value_name = "N")]
    pub max_length: Option<usize>,
    /// The share of examples held out for the validation loss (drawn with --seed).
    #[arg(long, default_value_t = SftRecipe::default().val_fraction)]
    pub val_fraction: f64,
    /// Seeds the held-out draw and the order of every epoch.
    #[arg(long, default_value_t = SftRecipe::default().seed)]
    pub seed: u64,

    /// Steps between extra checkpoints (every epoch ends with one); 0: epochs only.
    #[arg(long, default_value_t = 0)]
    pub save_interval: u64,
    /// Steps between progress lines on standard error.
    #[arg(long, default_value_t = 10)]
    pub log_interval: u64,

    /// Continue from the last checkpoint in --out (starts afresh if there is none).
    #[arg(long)]
    pub resume: bool,

    /// Where the forward and backward passes run: `cpu`, `cuda` or `cuda:N` (a build with
    /// `--features cuda`); the optimizer steps on the host.
    #[arg(long, default_value_t = DeviceSpec::Cpu, value_name = DEVICE_VALUES)]
    pub device: DeviceSpec,
}

const FINETUNE_AFTER_HELP: &str = "\
The recipe is the paper's (full-parameter SFT with LLaMA-Factory): loss on the target tokens
only, 3 epochs, 64 examples per step, cosine learning rate 1e-5 -> 1e-6 after a linear warm-up
of 10% of the steps, AdamW (betas 0.9/0.999, no weight decay), clipping at 1.0.

A prompt given as text is encoded as `prox generate` encodes text (BOS added); `prompt_ids`
are taken as they are, so give them (as `prox prompts` writes them) for the exact ids a
refiner sees. The target is encoded without BOS and followed by EOS. Examples are packed:
each attends only to itself, and no token is padding. The loss is the mean cross-entropy over
the target tokens of each global batch. Rows that cannot be trained on (no prompt or target,
ids outside the vocabulary, longer than --max-length) are counted by reason in data.json and
listed in rejected.jsonl.

Every epoch ends with the validation loss on the held-out examples and a checkpoint
(checkpoints/step-NNNNNNNN/): a Hugging Face model folder that `prox refine --doc-model` or
`--chunk-model`, `prox generate` and `prox serve` load as it is, plus the optimizer state.
`--resume` with the same settings and data reaches exactly the weights of an uninterrupted
run.";

pub fn run(args: &FinetuneArgs) -> anyhow::Result<Completion> {
    let options = resolve(args)?;
    let mut trainer = SftTrainer::new(options).context("cannot start fine-tuning")?;
    let summary = trainer.summary().clone();
    let rejected: u64 = summary.rejected.values().sum();
    tracing::info!(
        "{} rows: {} examples ({} to train, {} held out), {rejected} rejected",
        summary.rows,
        summary.examples,
        summary.train_examples,
        summary.validation_examples
    );
    if rejected > 0 {
        let reasons: Vec<String> = summary
            .rejected
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        tracing::warn!(
            "rejected rows: {} (listed in {})",
            reasons.join(", "),
            args.out.join("rejected.jsonl").display()
        );
    }
    match trainer.resumed_from() {
        Some(dir) => tracing::info!("resuming from {} (step {})", dir.display(), trainer.step()),
        None => tracing::info!(
            "fine-tuning {} parameters for {} steps ({} per epoch, {} of warm-up)",
            trainer.model().num_parameters(),
            summary.max_steps,
            summary.steps_per_epoch,
            summary.warmup_steps
        ),
    }
    let mut reporter = StepProgress::new(args.log_interval, summary.max_steps);
    let last = trainer.run(&mut reporter, None);
    reporter.finish();
    let last = last.context("fine-tuning failed")?;
    if let Some(dir) = last {
        tracing::info!("done: the fine-tuned model is {}", dir.display());
    }
    Ok(Completion::Clean)
}

fn resolve(args: &FinetuneArgs) -> anyhow::Result<SftOptions> {
    let defaults = SftRecipe::default();
    let mut adamw = defaults.adamw;
    adamw.weight_decay = args.weight_decay;
    adamw.beta1 = args.beta1;
    adamw.beta2 = args.beta2;
    Ok(SftOptions {
        data: args.data.clone(),
        init_from: args.init_from.clone(),
        out: args.out.clone(),
        recipe: SftRecipe {
            epochs: args.epochs,
            micro_batch: args.micro_batch,
            global_batch: args.global_batch,
            lr: args.lr,
            min_lr: args.min_lr,
            warmup_ratio: args.warmup_ratio,
            adamw,
            grad_clip: args.grad_clip,
            max_length: args.max_length,
            val_fraction: args.val_fraction,
            seed: args.seed,
        },
        save_interval: args.save_interval,
        resume: args.resume,
        device: args
            .device
            .open()
            .with_context(|| format!("cannot fine-tune on --device {}", args.device))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: FinetuneArgs,
    }

    #[test]
    fn the_defaults_are_the_papers_recipe() {
        let cli = Cli::try_parse_from(["x", "--init-from", "m", "--data", "d", "--out", "o"])
            .unwrap_or_else(|e| panic!("{e}"));
        let options = resolve(&cli.args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.recipe, SftRecipe::default());
        assert_eq!(
            (options.recipe.epochs, options.recipe.global_batch),
            (3, 64)
        );
        assert_eq!((options.recipe.lr, options.recipe.min_lr), (1e-5, 1e-6));
    }
}
