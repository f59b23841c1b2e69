//! GGUF files of the `llama` architecture (SmolLM2 among them): weights through candle's
//! quantized support, configuration, tokenizer and chat template from the metadata — one
//! file is a complete model.
//!
//! llama.cpp's converter permutes the rows of the query and key projections so that its
//! *interleaved* rotary embedding gives Hugging Face's rotate-half results; the model
//! therefore runs with [`Config::rope_interleaved`]. Attention scores are unchanged by that
//! permutation (queries and keys are permuted alike), so the outputs are those of the
//! original model.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::load::{error_chain, LoadOptions, Model};
use crate::model::{Attention, DecoderLayer, Linear, Llama, Mlp, Q8Kernel, Quantization, RmsNorm};

/// Typed access to a GGUF file's metadata, with errors that name the file and the key.
pub struct Metadata<'a> {
    path: &'a Path,
    map: &'a HashMap<String, Value>,
}

impl<'a> Metadata<'a> {
    pub fn new(path: &'a Path, map: &'a HashMap<String, Value>) -> Self {
        Metadata { path, map }
    }

    /// The file the metadata is from.
    pub fn path(&self) -> &Path {
        self.path
    }

    fn error(&self, key: &str, reason: impl Into<String>) -> Error {
        Error::GgufMetadata {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn require(&self, key: &str) -> Result<&'a Value> {
        self.get(key).ok_or_else(|| self.error(key, "missing"))
    }

    /// An unsigned integer, whatever its stored width.
    pub fn usize(&self, key: &str) -> Result<usize> {
        let value = self.require(key)?;
        let n = match value {
            Value::U8(v) => Some(u64::from(*v)),
            Value::U16(v) => Some(u64::from(*v)),
            Value::U32(v) => Some(u64::from(*v)),
            Value::U64(v) => Some(*v),
            Value::I8(v) => u64::try_from(*v).ok(),
            Value::I16(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        };
        n.and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.error(key, format!("expected an unsigned integer, got {value:?}")))
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::F32(v)) => Ok(f64::from(*v)),
            Some(Value::F64(v)) => Ok(*v),
            Some(other) => Err(self.error(key, format!("expected a float, got {other:?}"))),
        }
    }

    pub fn string(&self, key: &str) -> Result<&'a str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(self.error(key, format!("expected a string, got {other:?}"))),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<&'a str>> {
        match self.require(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.as_str()),
                    other => Err(self.error(key, format!("expected strings, got {other:?}"))),
                })
                .collect(),
            other => Err(self.error(key, format!("expected an array, got {other:?}"))),
        }
    }

    pub fn i64s(&self, key: &str) -> Result<Vec<i64>> {
        match self.require(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::I32(n) => Ok(i64::from(*n)),
                    Value::U32(n) => Ok(i64::from(*n)),
                    Value::I64(n) => Ok(*n),
                    Value::U8(n) => Ok(i64::from(*n)),
                    Value::I8(n) => Ok(i64::from(*n)),
                    other => Err(self.error(key, format!("expected integers, got {other:?}"))),
                })
                .collect(),
            other => Err(self.error(key, format!("expected an array, got {other:?}"))),
        }
    }

    pub fn f32s(&self, key: &str) -> Result<Vec<f32>> {
        match self.require(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::F32(n) => Ok(*n),
                    Value::F64(n) => Ok(*n as f32),
                    other => Err(self.error(key, format!("expected floats, got {other:?}"))),
                })
                .collect(),
            other => Err(self.error(key, format!("expected an array, got {other:?}"))),
        }
    }
}

/// The runtime configuration a `llama` GGUF file describes.
pub fn config_from_metadata(meta: &Metadata, vocab_size: usize) -> Result<Config> {
    let arch = meta.string("general.architecture")?;
    if arch != "llama" {
        return Err(meta.error(
            "general.architecture",
            format!("`{arch}` is not supported (only `llama`)"),
        ));
    }
    let heads = meta.usize("llama.attention.head_count")?;
    let hidden = meta.usize("llama.embedding_length")?;
    let head_dim = meta.usize_or("llama.rope.dimension_count", hidden / heads.max(1))?;
    let config = Config {
        hidden_size: hidden,
        intermediate_size: meta.usize("llama.feed_forward_length")?,
        num_layers: meta.usize("llama.block_count")?,
        num_heads: heads,
        num_kv_heads: meta.usize_or("llama.attention.head_count_kv", heads)?,
        head_dim,
        vocab_size: meta.usize_or("llama.vocab_size", vocab_size)?,
        rms_norm_eps: meta.f64_or("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: meta.f64_or("llama.rope.freq_base", 10_000.0)?,
        max_position_embeddings: meta.usize_or("llama.context_length", 2048)?,
        tie_word_embeddings: false,
        rope_interleaved: true,
        bos_token_id: meta
            .usize_or("tokenizer.ggml.bos_token_id", usize::MAX)
            .ok()
            .filter(|&id| id != usize::MAX)
            .map(|id| id as u32),
        eos_token_ids: match meta.get("tokenizer.ggml.eos_token_id") {
            Some(_) => vec![meta.usize("tokenizer.ggml.eos_token_id")? as u32],
            None => Vec::new(),
        },
    };
    config
        .validate()
        .map_err(|reason| meta.error("llama.*", reason))?;
    Ok(config)
}

/// Loads a GGUF file. The projections and the output head are computed with the file's
/// blocks when the engine has a kernel for them (Q8_0; F32/F16 weights are dense), with
/// blocks requantized to Q8_0 as they are read when it has none (on the CPU: see
/// [`LoadOptions::keep_blocks`]); with every weight requantized to `options.quantize` if
/// given, or dequantized to the compute dtype if `options.dequantize`. Embeddings and norms
/// are dequantized to the compute dtype.
pub fn load_gguf(path: &Path, options: &LoadOptions) -> Result<Model> {
    let file = File::open(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let weights_error = |source| Error::Weights {
        path: path.to_path_buf(),
        source,
    };
    let content = Content::read(&mut reader).map_err(weights_error)?;
    let meta = Metadata::new(path, &content.metadata);

    let embed_info = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| Error::NotAModel {
            path: path.to_path_buf(),
            reason: "no `token_embd.weight` tensor".to_owned(),
        })?;
    // candle reports GGUF shapes in PyTorch order: [vocab, hidden].
    let vocab_from_tensor = embed_info.shape.dims().first().copied().unwrap_or(0);
    let mut config = config_from_metadata(&meta, vocab_from_tensor)?;
    let has_output = content.tensor_infos.contains_key("output.weight");
    config.tie_word_embeddings = !has_output;

    let mut read = |name: &str| -> Result<Arc<QTensor>> {
        content
            .tensor(&mut reader, name, &options.device)
            .map(Arc::new)
            .map_err(|source| Error::Weights {
                path: path.to_path_buf(),
                source: source.context(format!("tensor `{name}`")),
            })
    };
    let dtype = options.dtype;
    let device = &options.device;
    let dense = |q: &Arc<QTensor>| -> Result<Tensor> {
        q.dequantize(device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(weights_error)
    };
    let quantization = options.quantize.map(Quantization::new);
    // On the CPU, blocks of a type the engine has no kernel for go to its Q8_0 kernel.
    let fallback =
        (device.is_cpu() && !options.keep_blocks).then(|| Quantization::new(GgmlDType::Q8_0));
    let linear = |q: Arc<QTensor>| -> Result<Linear> {
        let requantize_to = match quantization {
            Some(quantization) => Some(quantization),
            None if options.dequantize => return Ok(Linear::Float(dense(&q)?)),
            None if has_engine_kernel(q.dtype()) => None,
            None => fallback,
        };
        match requantize_to {
            // From the weight dequantized to f32 (exact for every block type), one weight
            // at a time: the result carries the file's rounding plus the new type's.
            Some(quantization) => q
                .dequantize(device)
                .and_then(|w| {
                    Linear::Float(w).quantize_with(quantization.dtype, quantization.kernel)
                })
                .map_err(weights_error),
            // Q8_0 blocks go to the engine's kernel as they are, other blocks to candle's;
            // F32/F16 tensors come back dense, in the compute dtype.
            None => Linear::from_qtensor(q, dtype, Q8Kernel::Engine).map_err(weights_error),
        }
    };
    let norm = |q: &Arc<QTensor>| -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: dense(q)?,
            eps: config.rms_norm_eps,
        })
    };

    let embed = read("token_embd.weight")?;
    let embed_tokens = dense(&embed)?;
    // The head before the layers: requantizing it holds its float matrix, the largest of
    // the model, and that is cheaper while the layers are not loaded yet.
    let lm_head = if has_output {
        linear(read("output.weight")?)?
    } else if quantization.is_none() && (options.dequantize || !is_quantized(&embed)) {
        // Tied and dense: the head is the embedding matrix itself.
        Linear::Float(embed_tokens.clone())
    } else {
        // Tied: the head computes with the embedding's blocks (or their requantization), as
        // llama.cpp does.
        linear(embed.clone())?
    };
    let layers = (0..config.num_layers)
        .map(|i| {
            let p = format!("blk.{i}");
            let projections = [
                linear(read(&format!("{p}.attn_q.weight"))?)?,
                linear(read(&format!("{p}.attn_k.weight"))?)?,
                linear(read(&format!("{p}.attn_v.weight"))?)?,
                linear(read(&format!("{p}.attn_output.weight"))?)?,
            ];
            Ok(DecoderLayer {
                input_layernorm: norm(&read(&format!("{p}.attn_norm.weight"))?)?,
                self_attn: Attention::from_parts(projections, &config),
                post_attention_layernorm: norm(&read(&format!("{p}.ffn_norm.weight"))?)?,
                mlp: Mlp {
                    gate_proj: linear(read(&format!("{p}.ffn_gate.weight"))?)?,
                    up_proj: linear(read(&format!("{p}.ffn_up.weight"))?)?,
                    down_proj: linear(read(&format!("{p}.ffn_down.weight"))?)?,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let final_norm = norm(&read("output_norm.weight")?)?;
    let llama = Llama::from_parts(embed_tokens, layers, final_norm, lm_head, config)
        .map_err(weights_error)?;

    let tokenizer = match crate::gguf_tokenizer::tokenizer_json(&meta) {
        Ok(Some(json)) => Some(
            prox_tokenizer::Tokenizer::from_json_str(&json, path).map_err(|e| {
                Error::Tokenizer {
                    path: path.to_path_buf(),
                    reason: error_chain(&e),
                }
            })?,
        ),
        Ok(None) => None,
        Err(e) => return Err(e),
    };
    let chat_template = meta
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    Ok(Model {
        llama,
        tokenizer,
        chat_template,
        source: path.to_path_buf(),
    })
}

fn is_float(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

fn is_quantized(q: &QTensor) -> bool {
    !is_float(q.dtype())
}

/// Whether the engine computes weights of `dtype` with its own code: dense products for
/// float types, its Q8_0 kernel for Q8_0 blocks.
fn has_engine_kernel(dtype: GgmlDType) -> bool {
    dtype == GgmlDType::Q8_0 || is_float(dtype)
}
