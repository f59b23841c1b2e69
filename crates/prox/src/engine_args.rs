//! The flags of every command that runs a model on the embedded engine, declared once:
//! `--model` and `--revision` ([`ModelArgs`]), and `--dtype`, `--quantize` and `--device`
//! ([`EngineArgs`]), with how they load the model.

use std::io::IsTerminal;

use anyhow::Context;
use prox_engine::{DType, DeviceSpec, GgmlDType, LoadOptions, Model};

/// The values of `--device` (also the training commands' `--device`).
pub const DEVICE_VALUES: &str = "cpu|cuda|cuda:N";
/// The long help of `--device` (one paragraph: clap wraps it to the terminal).
const DEVICE_HELP: &str = "Where the model runs: `cpu`, `cuda` (the first GPU) or `cuda:N` \
    (the GPU of index N). CUDA needs a build with `--features cuda` (scripts/check-cuda.sh \
    builds one) and an NVIDIA driver. On a GPU the projections are cuBLAS products \
    (`--quantize`: candle's quantized CUDA kernels), and `--dtype bf16` or `f16` halves the \
    memory of weights and caches.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ComputeDtype {
    F32,
    Bf16,
    /// Half precision: for GPUs (on the CPU it is slower than bf16 and overflows sooner).
    F16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quantization {
    /// 8-bit blocks of 32 values, computed by the engine's kernel on the CPU.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit k-quant blocks of 256 values, computed by candle.
    #[value(name = "q4_k")]
    Q4K,
    /// a GGUF file's own blocks, whatever their type: less memory, slower on the CPU.
    Keep,
}

/// What runs the model of a command that can use either (`--backend`): the embedded engine,
/// or an OpenAI-compatible server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    Embedded,
    Openai,
}

impl From<BackendKind> for prox_refine::BackendKind {
    fn from(backend: BackendKind) -> Self {
        match backend {
            BackendKind::Embedded => Self::Embedded,
            BackendKind::Openai => Self::Openai,
        }
    }
}

/// How the embedded engine holds and runs a model.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Embedded engine: the compute dtype (the reference refines and evaluates in f32).
    #[arg(long, value_enum, default_value_t = ComputeDtype::F32)]
    pub dtype: ComputeDtype,

    /// Embedded engine: quantize the weight matrices when loading (a GGUF file is
    /// dequantized, then requantized to this type). Unset, on the CPU, a GGUF file's weights
    /// of a type the engine has no kernel for (Q4_0, Q4_1, Q5_*, the K-quants) are
    /// requantized to q8_0; `keep` computes with the file's own blocks instead (candle's
    /// kernels: less memory, several times slower).
    #[arg(long, value_enum)]
    pub quantize: Option<Quantization>,

    /// Embedded engine: where the model runs.
    #[arg(
        long,
        default_value_t = DeviceSpec::Cpu,
        value_name = DEVICE_VALUES,
        long_help = DEVICE_HELP
    )]
    pub device: DeviceSpec,
}

impl EngineArgs {
    /// The engine's load options. Opens the device: an unusable one is an error before any
    /// weight is read.
    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
        let device = self
            .device
            .open()
            .with_context(|| format!("cannot run the model on --device {}", self.device))?;
        Ok(LoadOptions {
            dtype: match self.dtype {
                ComputeDtype::F32 => DType::F32,
                ComputeDtype::Bf16 => DType::BF16,
                ComputeDtype::F16 => DType::F16,
            },
            quantize: match self.quantize {
                Some(Quantization::Q8_0) => Some(GgmlDType::Q8_0),
                Some(Quantization::Q4K) => Some(GgmlDType::Q4K),
                Some(Quantization::Keep) | None => None,
            },
            keep_blocks: self.quantize == Some(Quantization::Keep),
            device,
            ..LoadOptions::default()
        })
    }

    /// Resolves a model name (a path, or a hub id found in or downloaded to the cache) and
    /// loads it with these options.
    pub fn load(&self, name: &str, revision: Option<&str>) -> anyhow::Result<Model> {
        load_model(name, revision, &self.load_options()?)
    }
}

/// The model a command runs, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// A Hugging Face model folder (`config.json`, safetensors, tokenizer), a `.gguf` file,
    /// or a hub id (`org/name`), found in or downloaded to the local Hugging Face cache.
    #[arg(long)]
    pub model: String,

    /// The hub revision (branch, tag or commit) of a hub id.
    #[arg(long)]
    pub revision: Option<String>,

    #[command(flatten)]
    pub engine: EngineArgs,
}

impl ModelArgs {
    /// Loads `--model` at `--revision`.
    pub fn load(&self) -> anyhow::Result<Model> {
        self.engine.load(&self.model, self.revision.as_deref())
    }
}

/// Resolves a model name and loads it with the given options (for callers that adjust the
/// options [`EngineArgs::load_options`] gives).
pub fn load_model(
    name: &str,
    revision: Option<&str>,
    options: &LoadOptions,
) -> anyhow::Result<Model> {
    // A hub id not in the cache is downloaded first: a bar on a terminal, log lines otherwise.
    let reporter =
        crate::commands::download::DownloadReporter::new(std::io::stderr().is_terminal());
    let path = prox_engine::hub::resolve_model_reporting(name, revision, &reporter)
        .with_context(|| format!("cannot find the model {name}"))?;
    reporter.finish();
    let model = Model::load(&path, options)
        .with_context(|| format!("cannot load the model {}", path.display()))?;
    tracing::info!(model = %path.display(), "model loaded");
    Ok(model)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Args {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn options(args: &[&str]) -> LoadOptions {
        let parsed = Args::try_parse_from(std::iter::once("prox").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        parsed
            .engine
            .load_options()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn quantize_keep_keeps_a_gguf_files_blocks_and_quantizes_nothing() {
        for (args, quantize, keep_blocks) in [
            (&[][..], None, false),
            (&["--quantize", "keep"][..], None, true),
            (&["--quantize", "q8_0"][..], Some(GgmlDType::Q8_0), false),
            (&["--quantize", "q4_k"][..], Some(GgmlDType::Q4K), false),
        ] {
            let options = options(args);
            assert_eq!(
                (options.quantize, options.keep_blocks),
                (quantize, keep_blocks),
                "{args:?}"
            );
        }
    }
}
