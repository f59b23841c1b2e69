//! `prox convert litgpt`: litgpt checkpoints (one `.pth`, or a training run's folder of them)
//! to Hugging Face Llama folders, as the ProX reference's `convert_lit_checkpoint.py` and
//! `batch_model_conversion.py` make them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use prox_convert::{
    convert_checkpoint, convert_series, list_series, ConvertOptions, Outcome, Progress,
    SeriesOptions, KNOWN_ARCHS,
};

use crate::commands::Completion;

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    #[command(subcommand)]
    pub format: ConvertFormat,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConvertFormat {
    /// litgpt checkpoints (fabric's `iter-NNNNNN-ckpt.pth`, or `lit_model.pth`) to Hugging
    /// Face Llama folders: `model.safetensors` (sharded past 5 GB) and `config.json`.
    Litgpt(LitgptArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = LITGPT_AFTER_HELP)]
pub struct LitgptArgs {
    /// A checkpoint file, or a folder of `iter-NNNNNN-ckpt.pth` checkpoints from one run.
    #[arg(long, value_name = "CKPT_DIR|FILE.pth")]
    pub input: PathBuf,

    /// The Hugging Face folder (for a file), or the folder that receives one `{N}B/` folder
    /// per checkpoint (for a folder of checkpoints).
    #[arg(long, value_name = "HF_DIR")]
    pub output: PathBuf,

    /// The architecture: a name from ProX's lit_gpt/config.py (tiny_LLaMA_0_3b,
    /// tiny_LLaMA_0_7b, tiny_LLaMA_1b, tiny_LLaMA_1_7b, tiny_LLaMA_3b, tiny_LLaMA_120M) or a
    /// litgpt config JSON file. Without it, the checkpoint's hparams must describe it; with
    /// it, they must agree.
    #[arg(long, value_name = "NAME|CONFIG.json")]
    pub arch: Option<String>,

    /// A folder whose tokenizer files (all but weights and config.json) are copied into each
    /// converted folder.
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,

    /// Folder of checkpoints: billions of training tokens between two checkpoints; the i-th
    /// checkpoint in step order goes to `{(i+1)·interval + base}B/`.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub save_token_interval: u64,

    /// Folder of checkpoints: billions of tokens before the first checkpoint.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub base_token: u64,

    /// Folder of checkpoints: convert only these steps (their folders keep the names they
    /// have in the whole series).
    #[arg(long, value_delimiter = ',', value_name = "STEP,...")]
    pub steps: Option<Vec<u64>>,
}

const LITGPT_AFTER_HELP: &str = "\
Tensors are converted exactly as the reference's copy_weights_llama does (the fused attention
weight split per query group into q, k and v) and written one at a time, so memory stays near
one tensor's size; the optimizer state is never read. Pickled code is never executed. Each
output folder is written under a temporary name and renamed when complete; a rerun skips
folders already converted.

Examples:
  prox convert litgpt --input out/tinyllama_0_3b --output hf/tinyllama_0_3b --arch tiny_LLaMA_0_3b
  prox convert litgpt --input out/run/iter-020000-ckpt.pth --output hf/20B --tokenizer vocab/llama_hf";

pub fn run(args: &ConvertArgs) -> anyhow::Result<Completion> {
    match &args.format {
        ConvertFormat::Litgpt(args) => litgpt(args),
    }
}

fn litgpt(args: &LitgptArgs) -> anyhow::Result<Completion> {
    let options = ConvertOptions {
        arch: args.arch.clone(),
        tokenizer: args.tokenizer.clone(),
        ..ConvertOptions::default()
    };
    if args.input.is_dir() {
        return litgpt_series(args, &options);
    }
    if args.steps.is_some() || args.save_token_interval != 1 || args.base_token != 0 {
        bail!(
            "--steps, --save-token-interval and --base-token name the folders of a series; {} is a single checkpoint\nhint: give the folder of checkpoints as --input",
            args.input.display()
        );
    }
    let start = Instant::now();
    let outcome = convert_checkpoint(&args.input, &args.output, &options)
        .map_err(|error| conversion_failed(&args.input, error))?;
    report(&args.output, &outcome, start);
    Ok(Completion::Clean)
}

fn litgpt_series(args: &LitgptArgs, options: &ConvertOptions) -> anyhow::Result<Completion> {
    let series_options = SeriesOptions {
        save_token_interval: args.save_token_interval,
        base_token: args.base_token,
        steps: args.steps.clone(),
    };
    let series = list_series(&args.input, &series_options)
        .with_context(|| format!("cannot list the checkpoints of {}", args.input.display()))?;
    for ignored in &series.ignored {
        tracing::warn!(
            "{}: no step in its name (iter-NNNNNN-ckpt.pth), not part of the series; convert it alone with --input {0}",
            ignored.display()
        );
    }
    let mut start = Instant::now();
    let mut current = None;
    let result = convert_series(&series, &args.output, options, |progress| match progress {
        Progress::Start(checkpoint) => {
            tracing::info!(
                "step {}: {} -> {}",
                checkpoint.step,
                checkpoint.input.display(),
                args.output.join(&checkpoint.name).display()
            );
            current = Some(checkpoint.input.clone());
            start = Instant::now();
        }
        Progress::Done(checkpoint, outcome) => {
            report(&args.output.join(&checkpoint.name), outcome, start);
        }
    });
    match result {
        Ok(done) => {
            println!(
                "{} checkpoint(s) of {} in {}",
                done.len(),
                args.input.display(),
                args.output.display()
            );
            Ok(Completion::Clean)
        }
        Err(error) => {
            let input = current.unwrap_or_else(|| args.input.clone());
            Err(conversion_failed(&input, error))
        }
    }
}

/// The library's error, which names the file, under the command's own line; errors about the
/// architecture end with the names `--arch` knows.
fn conversion_failed(input: &Path, error: prox_convert::Error) -> anyhow::Error {
    let about_arch = matches!(
        error,
        prox_convert::Error::Arch(_) | prox_convert::Error::ArchMismatch { .. }
    );
    let context = format!("cannot convert {}", input.display());
    if about_arch {
        anyhow::anyhow!(
            "{context}: {error}\nhint: architectures --arch knows by name: {}",
            KNOWN_ARCHS.join(", ")
        )
    } else {
        anyhow::Error::new(error).context(context)
    }
}

fn report(output: &Path, outcome: &Outcome, start: Instant) {
    match outcome {
        Outcome::Converted { files } => println!(
            "{}: {} in {:.1} s",
            output.display(),
            files.join(", "),
            start.elapsed().as_secs_f64()
        ),
        Outcome::AlreadyDone => println!("{}: already converted, left as it is", output.display()),
    }
}
