//! `prox train`: pre-train a proxy model on litgpt packed data with ProX's recipe.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use prox_engine::DeviceSpec;
use prox_train::{DataSource, ModelInit, Recipe, Reporter, StepMetrics, TrainOptions, Trainer};

use crate::commands::Completion;
use crate::engine_args::DEVICE_VALUES;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
#[command(after_help = TRAIN_AFTER_HELP)]
pub struct TrainArgs {
    /// A folder of packed files (`*.bin`, as `prox tokenize` writes them), or
    /// `dir=DIR[,prefix=P][,weight=W]` for only the files named `P*.bin` and a mixture weight.
    /// Repeat to mix folders.
    #[arg(long, value_name = "DIR")]
    pub data: Vec<DataFolder>,

    /// The mixture weight of each --data folder, in order (default: equal).
    #[arg(long, value_name = "W")]
    pub weight: Vec<f64>,

    /// A folder of held-out packed files for the validation loss (read in order), or
    /// `dir=DIR[,prefix=P][,weight=W]`.
    #[arg(long, value_name = "DIR")]
    pub val_data: Vec<DataFolder>,

    /// The run folder: `metrics.jsonl`, `loss.svg`, `checkpoints/step-NNNNNNNN/`.
    #[arg(long)]
    pub out: PathBuf,

    /// A YAML file whose keys are this command's flags (`seq_len` or `seq-len`, `max_steps`,
    /// `data: [{dir, prefix, weight}]`…); flags given on the command line win, and --data,
    /// --weight and --val-data add to the file's.
    #[arg(long, value_name = "FILE.yaml")]
    pub config: Option<PathBuf>,

    /// The model shape of a fresh model: `tiny` (hidden 256, 8 layers), `0.3b` (the ProX
    /// refiner / TLM-XS shape), or a Hugging Face `config.json`.
    #[arg(long, value_name = "tiny|0.3b|CONFIG.json")]
    pub model_config: Option<String>,

    /// Continue training the weights of a Hugging Face model folder instead of a fresh model.
    #[arg(long, value_name = "DIR", conflicts_with = "model_config")]
    pub init_from: Option<PathBuf>,

    /// Override the vocabulary size of a named --model-config (default 32000, Llama-2's).
    #[arg(long)]
    pub vocab_size: Option<usize>,

    /// A folder whose tokenizer files (`tokenizer.json`, `tokenizer.model`,
    /// `tokenizer_config.json`…) are copied into every checkpoint (default: --init-from's).
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,

    /// Tokens per training sequence.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Sequences per forward and backward pass.
    #[arg(long)]
    pub micro_batch: Option<usize>,
    /// Sequences per optimiser step (a multiple of --micro-batch: gradients accumulate).
    #[arg(long)]
    pub global_batch: Option<usize>,
    /// Optimiser steps of the whole run (the cosine ends here).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning rate at the end of the cosine decay.
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// Steps of linear warm-up.
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Decoupled weight decay (every parameter).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub beta1: Option<f64>,
    #[arg(long)]
    pub beta2: Option<f64>,
    /// Maximum total gradient norm (0: no clipping).
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Seeds the initial weights, the file order and the block order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Files read together, whose blocks are shuffled together (the reference's `n_chunks`).
    #[arg(long)]
    pub window_files: Option<usize>,

    /// Steps between checkpoints (the last step always gets one).
    #[arg(long)]
    pub save_interval: Option<u64>,
    /// Steps between validations (with --val-data).
    #[arg(long)]
    pub eval_interval: Option<u64>,
    /// Micro-batches per validation.
    #[arg(long)]
    pub eval_iters: Option<u64>,
    /// Steps between progress lines on standard error.
    #[arg(long)]
    pub log_interval: Option<u64>,

    /// Continue from the last checkpoint in --out (starts afresh if there is none).
    #[arg(long)]
    pub resume: bool,

    /// Where the forward and backward passes run: `cpu`, `cuda` or `cuda:N` (a build with
    /// `--features cuda`). The optimizer steps on the host either way: gradients come back
    /// and weights go out once per step.
    #[arg(long, default_value_t = DeviceSpec::Cpu, value_name = DEVICE_VALUES)]
    pub device: DeviceSpec,
}

const TRAIN_AFTER_HELP: &str = "\
The recipe is the reference's (its 0.3B pretraining config): AdamW with decoupled weight decay
on every parameter (eps 1e-8), linear warm-up then cosine decay to --min-lr at --max-steps,
gradient clipping by total norm, gradient accumulation from --micro-batch to --global-batch,
mean next-token cross-entropy, float32. Blocks of --seq-len + 1 tokens are read from the packed
files as litgpt's PackedDataset reads them, shuffled with --seed; several --data folders are
mixed by --weight, as the reference's train_data_config.

Each checkpoint (checkpoints/step-NNNNNNNN/) is a Hugging Face model folder that `prox eval`
and `prox generate` load as it is, plus optimizer.safetensors and trainer_state.json. A killed
run loses at most the steps since its last checkpoint: `--resume` with the same settings
reaches exactly the state an uninterrupted run would have.

Runs at the reference's scale (0.3B-1.7B models, billions of tokens, many GPUs) belong to
litgpt, which reads the same packed files.";

/// The progress of `prox train` and `prox finetune`: a bar of optimiser steps on a terminal,
/// off one a line every `interval` steps (and at the first and the last); validations, epochs
/// and checkpoints logged either way.
pub(crate) struct StepProgress {
    bar: Progress,
    interval: u64,
    max_steps: u64,
}

impl StepProgress {
    pub(crate) fn new(interval: u64, max_steps: u64) -> Self {
        StepProgress {
            bar: Progress::new(max_steps, "{wide_bar} {msg}", None),
            interval: interval.max(1),
            max_steps,
        }
    }

    fn log(&self, line: std::fmt::Arguments) {
        self.bar.suspend(|| tracing::info!("{line}"));
    }

    pub(crate) fn finish(&self) {
        self.bar.finish();
    }
}

impl Reporter for StepProgress {
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    fn step(&mut self, m: &StepMetrics) {
        self.bar.set_position(m.step);
        let line = format!(
            "step {}/{}  loss {:.4}  lr {:.3e}  grad-norm {:.3}  {:.0} tokens/s  ETA {}",
            m.step,
            self.max_steps,
            m.loss,
            m.lr,
            m.grad_norm,
            m.tokens_per_s,
            duration(m.eta_s)
        );
        if m.step == self.max_steps {
            // The last step's numbers outlive the bar, on a terminal too.
            self.log(format_args!("{line}"));
        } else {
            self.bar
                .line(m.step % self.interval == 0 || m.step == 1, || line);
        }
    }

    fn validation(&mut self, step: u64, loss: f64) {
        self.log(format_args!("step {step}: validation loss {loss:.4}"));
    }

    fn epoch(&mut self, epoch: u64, step: u64) {
        self.log(format_args!("epoch {epoch} done at step {step}"));
    }

    fn checkpoint(&mut self, step: u64, dir: &Path) {
        self.log(format_args!("step {step}: checkpoint {}", dir.display()));
    }
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A `--data` or `--val-data` value: a folder, or `dir=DIR[,prefix=P][,weight=W]` (the form
/// a config file's `data: [{dir, prefix, weight}]` entries arrive in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataFolder {
    dir: PathBuf,
    /// Only the files whose names start with this.
    prefix: Option<String>,
    /// `weight=`, which leaves --weight nothing to say about this folder.
    weight: Option<f64>,
}

impl FromStr for DataFolder {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if !value.contains('=') {
            return Ok(DataFolder {
                dir: value.into(),
                ..DataFolder::default()
            });
        }
        let mut folder = DataFolder::default();
        for pair in value.split(',') {
            let Some((key, text)) = pair.split_once('=') else {
                return Err(format!(
                    "`{pair}` in `{value}` is not KEY=VALUE (dir=DIR[,prefix=P][,weight=W])"
                ));
            };
            match key {
                "dir" => folder.dir = text.into(),
                "prefix" => folder.prefix = Some(text.to_owned()),
                "weight" => {
                    let weight = text.parse::<f64>().ok();
                    match weight.filter(|w| w.is_finite() && *w > 0.0) {
                        Some(weight) => folder.weight = Some(weight),
                        None => return Err(format!("weight={text}: not a positive number")),
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown key `{key}` in `{value}`: the keys are dir, prefix and weight \
                         (a folder whose name holds `=` is given as dir=DIR)"
                    ))
                }
            }
        }
        if folder.dir.as_os_str().is_empty() {
            return Err(format!("`{value}` names no folder: give dir=DIR"));
        }
        Ok(folder)
    }
}

impl DataFolder {
    fn source(&self, weight: Option<f64>) -> DataSource {
        DataSource {
            dir: self.dir.clone(),
            prefix: self.prefix.clone(),
            weight: self.weight.or(weight).unwrap_or(1.0),
        }
    }
}

pub fn run(args: &TrainArgs) -> anyhow::Result<Completion> {
    let resolved;
    let args = match &args.config {
        Some(path) => {
            resolved = crate::config_file::with_config_file::<TrainArgs>("prox-train", path)?;
            &resolved
        }
        None => args,
    };
    let options = resolve(args)?;
    let max_steps = options.recipe.max_steps;
    let mut trainer = Trainer::new(options).context("cannot start training")?;
    match trainer.resumed_from() {
        Some(dir) => tracing::info!("resuming from {} (step {})", dir.display(), trainer.step()),
        None => tracing::info!(
            "training a model of {} parameters for {max_steps} steps",
            trainer.model().num_parameters()
        ),
    }
    let mut reporter = StepProgress::new(args.log_interval.unwrap_or(10), max_steps);
    let last = trainer.run(&mut reporter, None);
    reporter.finish();
    let last = last.context("training failed")?;
    if let Some(dir) = last {
        tracing::info!("done: the final model is {}", dir.display());
    }
    Ok(Completion::Clean)
}

/// The run's options: the arguments (the config file's already among them) over the defaults.
fn resolve(args: &TrainArgs) -> anyhow::Result<TrainOptions> {
    if !args.weight.is_empty() {
        if args.weight.len() != args.data.len() {
            anyhow::bail!(
                "{} --weight values for {} --data folders: give one per folder, or none",
                args.weight.len(),
                args.data.len()
            );
        }
        if args.data.iter().any(|folder| folder.weight.is_some()) {
            anyhow::bail!("give the mixture weights as --weight or as --data's weight=, not both");
        }
    }
    let data: Vec<DataSource> = args
        .data
        .iter()
        .enumerate()
        .map(|(i, folder)| folder.source(args.weight.get(i).copied()))
        .collect();
    if data.is_empty() {
        anyhow::bail!("no training data: give --data DIR (or `data:` in --config)");
    }
    let val_data = args.val_data.iter().map(|f| f.source(None)).collect();

    let model = match (&args.init_from, &args.model_config) {
        (Some(dir), None) => ModelInit::Pretrained(dir.clone()),
        (Some(_), Some(_)) => anyhow::bail!("give --init-from or --model-config, not both"),
        (None, name) => {
            let name = name.as_deref().unwrap_or("tiny");
            let mut cfg = match prox_train::named_config(name) {
                Some(cfg) => cfg,
                None if Path::new(name).is_file() => {
                    prox_train::model::config_from_file(Path::new(name))?
                }
                None => anyhow::bail!(
                    "--model-config {name}: neither a named shape ({}) nor a config.json file",
                    prox_train::NAMED_CONFIGS.join(", ")
                ),
            };
            if let Some(vocab) = args.vocab_size {
                cfg.vocab_size = vocab;
            }
            ModelInit::Fresh(cfg)
        }
    };

    let defaults = Recipe::default();
    let mut adamw = defaults.adamw;
    adamw.weight_decay = args.weight_decay.unwrap_or(adamw.weight_decay);
    adamw.beta1 = args.beta1.unwrap_or(adamw.beta1);
    adamw.beta2 = args.beta2.unwrap_or(adamw.beta2);
    let recipe = Recipe {
        seq_len: args.seq_len.unwrap_or(defaults.seq_len),
        micro_batch: args.micro_batch.unwrap_or(defaults.micro_batch),
        global_batch: args.global_batch.unwrap_or(defaults.global_batch),
        max_steps: args.max_steps.unwrap_or(defaults.max_steps),
        lr: args.lr.unwrap_or(defaults.lr),
        min_lr: args.min_lr.unwrap_or(defaults.min_lr),
        warmup_steps: args.warmup.unwrap_or(defaults.warmup_steps),
        adamw,
        grad_clip: args.grad_clip.unwrap_or(defaults.grad_clip),
        seed: args.seed.unwrap_or(defaults.seed),
        window_files: args.window_files.unwrap_or(defaults.window_files),
    };
    Ok(TrainOptions {
        data,
        val_data,
        out: args.out.clone(),
        model,
        tokenizer: args.tokenizer.clone(),
        recipe,
        save_interval: args.save_interval.unwrap_or(100),
        eval_interval: args.eval_interval.unwrap_or(100),
        eval_iters: args.eval_iters.unwrap_or(10),
        resume: args.resume,
        device: args
            .device
            .open()
            .with_context(|| format!("cannot train on --device {}", args.device))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_file::with_config_file_and;

    /// `prox train --config FILE ARGS` with `yaml` in FILE, resolved.
    fn with_file(yaml: &str, args: &[&str]) -> anyhow::Result<TrainOptions> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("train.yaml");
        std::fs::write(&path, yaml)?;
        let args = args.iter().map(|a| a.to_string());
        resolve(&with_config_file_and::<TrainArgs>(
            "prox-train",
            &path,
            args,
        )?)
    }

    fn error(result: anyhow::Result<TrainOptions>) -> String {
        format!("{:#}", result.map(|_| ()).unwrap_err())
    }

    #[test]
    fn flags_win_over_the_config_file_which_wins_over_defaults() {
        let options = with_file(
            "lr: 2.0e-3\nmax_steps: 50\nmodel_config: 0.3b\n",
            &[
                "--data", "a", "--data", "b", "--weight", "3", "--weight", "1", "--out", "o",
                "--lr", "1e-3",
            ],
        )
        .unwrap();
        assert_eq!(options.recipe.lr, 1e-3);
        assert_eq!(options.recipe.max_steps, 50);
        assert_eq!(options.recipe.seq_len, 2048);
        assert_eq!(options.data[0].weight, 3.0);
        assert_eq!(options.data[1].weight, 1.0);
        assert!(matches!(options.model, ModelInit::Fresh(ref c) if c.hidden_size == 1280));
    }

    #[test]
    fn unknown_settings_and_mismatched_weights_are_refused() {
        let unknown = error(with_file(
            "learning_rate: 1\n",
            &["--data", "a", "--out", "o"],
        ));
        assert!(
            unknown.contains("learning-rate") && unknown.contains("train.yaml"),
            "{unknown}"
        );
        let mismatched = error(with_file(
            "",
            &[
                "--data", "a", "--weight", "3", "--weight", "1", "--out", "o",
            ],
        ));
        assert!(mismatched.contains("--weight"), "{mismatched}");
        let both = error(with_file(
            "data: [{dir: a, weight: 2}]\nweight: [3]\n",
            &["--out", "o"],
        ));
        assert!(both.contains("not both"), "{both}");
    }

    #[test]
    fn data_entries_of_the_config_file_keep_their_prefix_and_weight() {
        let options = with_file(
            "data: [{dir: a, prefix: p, weight: 3}]\nval_data: [{dir: v, prefix: q}]\n",
            &["--out", "o"],
        )
        .unwrap();
        assert_eq!(
            options.data,
            [DataSource {
                dir: "a".into(),
                prefix: Some("p".into()),
                weight: 3.0
            }]
        );
        assert_eq!(
            options.val_data,
            [DataSource {
                prefix: Some("q".into()),
                ..DataSource::new("v")
            }]
        );
    }

    #[test]
    fn data_on_the_command_line_adds_to_the_config_files_as_refines_input_does() {
        let options = with_file("data: [a]\n", &["--data", "b", "--out", "o"]).unwrap();
        let dirs: Vec<_> = options.data.iter().map(|s| s.dir.clone()).collect();
        assert_eq!(dirs, [PathBuf::from("a"), PathBuf::from("b")]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refine.yaml");
        std::fs::write(&path, "input: [a]\n").unwrap();
        let refine: crate::commands::refine::RefineArgs =
            with_config_file_and("prox-refine", &path, ["--input".into(), "b".into()]).unwrap();
        assert_eq!(refine.input, [PathBuf::from("a"), PathBuf::from("b")]);
    }

    #[test]
    fn a_malformed_data_value_is_refused_with_what_is_wrong() {
        for (value, expected) in [
            ("dir=a,prefx=p", "unknown key `prefx`"),
            ("dir=a,weight=heavy", "weight=heavy: not a positive number"),
            ("dir=a,weight=0", "weight=0: not a positive number"),
            ("prefix=p,weight=2", "names no folder"),
            ("dir=a,p", "`p` in `dir=a,p` is not KEY=VALUE"),
        ] {
            let err = value.parse::<DataFolder>().unwrap_err();
            assert!(err.contains(expected), "{value}: {err}");
        }
        assert_eq!(
            "runs/a".parse(),
            Ok(DataFolder {
                dir: "runs/a".into(),
                ..DataFolder::default()
            })
        );
        let through_clap = error(with_file("", &["--data", "dir=a,weight=x", "--out", "o"]));
        assert!(through_clap.contains("weight=x"), "{through_clap}");
    }
}
