//! Loading a model from disk: a Hugging Face folder (`config.json` + safetensors, single or
//! sharded) or a GGUF file, with its tokenizer and chat template when it has them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
pub(crate) use prox_error::error_chain;
use prox_tokenizer::Tokenizer;

use crate::config::HfConfig;
use crate::error::{Error, Result};
use crate::model::{Llama, Quantization};
use crate::weights::SafetensorsWeights;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The compute dtype (`F32` or `BF16`); float weights are converted to it.
    pub dtype: DType,
    pub device: Device,
    /// Quantize the projection weights and the output head to this type when loading
    /// (Q8_0, Q4_K…), each as soon as it is read, so that the float weights are never all
    /// in memory. A GGUF file is requantized: each weight dequantized to f32, then quantized.
    pub quantize: Option<GgmlDType>,
    /// GGUF only: dequantize every weight to the compute dtype instead of computing with
    /// the quantized blocks (unless `quantize` is given).
    pub dequantize: bool,
    /// GGUF only: compute with the file's own blocks, whatever their type (candle's
    /// quantized kernels for every type but Q8_0). By default (`false`), on the CPU, the
    /// weights of a type the engine has no kernel for (Q4_0, Q4_1, Q5_0, Q5_1, the K-quants…)
    /// are requantized to Q8_0 as they are read, for the engine's Q8_0 kernel ([`Q8Matrix`]):
    /// several times faster than candle's CPU kernels for those types (9 to 18 times for
    /// SmolLM2-135M's Q4_1 file), for 9 bits a weight (Q8_0 with f32 scales) instead of 4.5
    /// to 6.5, and numbers within the Q8_0 rounding of the file's. Q8_0 and float weights are used as they are either way,
    /// and so is everything on a GPU (candle's CUDA kernels take every type).
    ///
    /// [`Q8Matrix`]: crate::Q8Matrix
    pub keep_blocks: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            quantize: None,
            dequantize: false,
            keep_blocks: false,
        }
    }
}

/// A loaded model with what it came with.
#[derive(Debug)]
pub struct Model {
    pub llama: Llama,
    /// From `tokenizer.json`/`tokenizer.model` in the folder, or from GGUF metadata.
    pub tokenizer: Option<Tokenizer>,
    /// The Jinja chat template (`tokenizer_config.json` or `tokenizer.chat_template`).
    pub chat_template: Option<String>,
    /// Where it was loaded from.
    pub source: PathBuf,
}

impl Model {
    /// Loads a Hugging Face model folder or a `.gguf` file.
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Self> {
        if path.is_dir() {
            load_hf_dir(path, options)
        } else if path.is_file() {
            crate::gguf::load_gguf(path, options)
        } else {
            Err(Error::NotAModel {
                path: path.to_path_buf(),
                reason: "no such file or folder".to_owned(),
            })
        }
    }
}

/// The safetensors files of a folder: `model.safetensors`, or the shards its
/// `model.safetensors.index.json` names.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::NotAModel {
            path: dir.to_path_buf(),
            reason: "neither model.safetensors nor model.safetensors.index.json".to_owned(),
        });
    }
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read_to_string(&index).map_err(|source| Error::Read {
        path: index.clone(),
        source,
    })?;
    let parsed: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index.clone(),
        source,
    })?;
    // Sorted and deduplicated: many tensors share a shard.
    let shards: BTreeSet<String> = parsed.weight_map.into_values().collect();
    Ok(shards.into_iter().map(|s| dir.join(s)).collect())
}

fn load_hf_dir(dir: &Path, options: &LoadOptions) -> Result<Model> {
    let config_path = dir.join("config.json");
    let config = HfConfig::from_file(&config_path)?.into_config(&config_path)?;
    // Each tensor is read when the model asks for it (see `SafetensorsWeights`).
    let weights = SafetensorsWeights::open(&safetensors_files(dir)?)?;
    let vb = VarBuilder::from_backend(Box::new(&weights), options.dtype, options.device.clone());
    let quantization = options.quantize.map(Quantization::new);
    let llama = Llama::load_quantized(&vb, &config, quantization).map_err(|source| {
        // A read failure is reported with its file and tensor.
        weights.take_failure().unwrap_or_else(|| Error::Weights {
            path: dir.to_path_buf(),
            source,
        })
    })?;
    let has_tokenizer =
        dir.join("tokenizer.json").is_file() || dir.join("tokenizer.model").is_file();
    let tokenizer = if has_tokenizer {
        Some(Tokenizer::from_dir(dir).map_err(|e| Error::Tokenizer {
            path: dir.to_path_buf(),
            reason: error_chain(&e),
        })?)
    } else {
        None
    };
    let chat_template = tokenizer
        .as_ref()
        .and_then(|t| t.config().chat_template.clone());
    Ok(Model {
        llama,
        tokenizer,
        chat_template,
        source: dir.to_path_buf(),
    })
}
