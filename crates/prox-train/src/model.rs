//! The model being trained: the engine's Llama over trainable variables, created from a
//! configuration with the reference's initialisation or loaded from a Hugging Face folder.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use prox_engine::{Config, HfConfig, Llama};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// A configuration by name: `tiny` (hidden 256, 8 layers: a proxy that trains on a CPU) or
/// `0.3b` (the ProX refiner / TLM-XS shape, 354M parameters).
pub fn named_config(name: &str) -> Option<Config> {
    let refiner = Config::prox_refiner();
    match name {
        "0.3b" | "0.3B" => Some(refiner),
        "tiny" => Some(Config {
            hidden_size: 256,
            intermediate_size: 704,
            num_layers: 8,
            num_heads: 8,
            num_kv_heads: 1,
            head_dim: 32,
            ..refiner
        }),
        _ => None,
    }
}

/// The names of the named configurations.
pub const NAMED_CONFIGS: &[&str] = &["tiny", "0.3b"];

/// Reads a Hugging Face `config.json` into the engine's configuration.
pub fn config_from_file(path: &Path) -> Result<Config> {
    Ok(HfConfig::from_file(path)?.into_config(path)?)
}

/// The parameter names and shapes of a configuration, in a fixed order (Hugging Face names).
pub fn parameter_shapes(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let mut shapes = vec![(
        "model.embed_tokens.weight".to_owned(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_layers {
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![q, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, q]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            shapes.push((format!("model.layers.{l}.{name}"), shape));
        }
    }
    shapes.push(("model.norm.weight".to_owned(), vec![h]));
    if !cfg.tie_word_embeddings {
        shapes.push(("lm_head.weight".to_owned(), vec![cfg.vocab_size, h]));
    }
    shapes
}

/// Fresh weights as the reference initialises them (TinyLlama `GPT._init_weights`, after
/// GPT-NeoX): embeddings and projections normal with std `sqrt(2 / (5 · hidden))`, the output
/// projections of attention and MLP with std `1 / sqrt(hidden) / layers`, norms at one.
pub fn init_weights(cfg: &Config, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Rng::for_stream(seed, 3);
    let std_small = (2.0 / 5.0 / cfg.hidden_size as f64).sqrt();
    let std_out = 1.0 / (cfg.hidden_size as f64).sqrt() / cfg.num_layers as f64;
    parameter_shapes(cfg)
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let values = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                let std = if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
                    std_out
                } else {
                    std_small
                };
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            };
            (name, shape, values)
        })
        .collect()
}

/// The engine's Llama whose weights are trainable variables, with their names.
pub struct TrainableModel {
    pub llama: Llama,
    /// `(name, variable)` in [`parameter_shapes`] order.
    pub params: Vec<(String, Var)>,
    pub config: Config,
}

impl TrainableModel {
    /// Builds the model from named float32 tensors; every name of [`parameter_shapes`] must be
    /// present with its shape. `origin` names the source in errors.
    pub fn from_tensors(
        cfg: &Config,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
        origin: &Path,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        let mut params = Vec::new();
        {
            let mut vars = varmap
                .data()
                .lock()
                .map_err(|_| Error::Options("the variable map is poisoned".to_owned()))?;
            for (name, shape) in parameter_shapes(cfg) {
                let tensor = tensors.remove(&name).ok_or_else(|| Error::Resume {
                    path: origin.to_path_buf(),
                    reason: format!("the weights lack `{name}`"),
                })?;
                if tensor.dims() != shape.as_slice() {
                    return Err(Error::Resume {
                        path: origin.to_path_buf(),
                        reason: format!(
                            "`{name}` has shape {:?}, the configuration says {shape:?}",
                            tensor.dims()
                        ),
                    });
                }
                let var = Var::from_tensor(&tensor.to_dtype(DType::F32)?.to_device(device)?)?;
                vars.insert(name.clone(), var.clone());
                params.push((name, var));
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let llama = Llama::load(&vb, cfg)?;
        Ok(TrainableModel {
            llama,
            params,
            config: cfg.clone(),
        })
    }

    /// A fresh model with the reference's initialisation.
    pub fn init(cfg: &Config, seed: u64, device: &Device) -> Result<Self> {
        let tensors = init_weights(cfg, seed)
            .into_iter()
            .map(|(name, shape, values)| Ok((name, Tensor::from_vec(values, shape, device)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Self::from_tensors(cfg, tensors, device, Path::new("<initialisation>"))
    }

    /// Loads the weights of safetensors files (a Hugging Face folder's, or a checkpoint's).
    pub fn load(
        cfg: &Config,
        files: &[std::path::PathBuf],
        device: &Device,
        origin: &Path,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in files {
            let shard =
                candle_core::safetensors::load(file, device).map_err(|source| Error::Tensors {
                    path: file.clone(),
                    source,
                })?;
            tensors.extend(shard);
        }
        Self::from_tensors(cfg, tensors, device, origin)
    }

    /// Every parameter as a host vector, in order.
    pub fn host_params(&self) -> Result<Vec<Vec<f32>>> {
        self.params
            .iter()
            .map(|(_, var)| Ok(var.as_tensor().flatten_all()?.to_vec1::<f32>()?))
            .collect()
    }

    /// Overwrites every parameter from host vectors (same order and sizes).
    pub fn set_params(&self, values: &[Vec<f32>]) -> Result<()> {
        for ((_, var), value) in self.params.iter().zip(values) {
            let tensor = Tensor::from_slice(value, var.shape(), var.device())?;
            var.set(&tensor)?;
        }
        Ok(())
    }

    /// The number of trainable values.
    pub fn num_parameters(&self) -> usize {
        self.params.iter().map(|(_, v)| v.elem_count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_list_counts_what_the_engine_counts() {
        for name in NAMED_CONFIGS {
            let cfg = named_config(name).unwrap();
            let total: usize = parameter_shapes(&cfg)
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(total, cfg.num_parameters(), "{name}");
        }
    }

    #[test]
    fn the_written_config_reads_back_as_the_same_configuration() {
        let cfg = named_config("tiny").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, cfg.to_hf_json().to_string()).unwrap();
        assert_eq!(config_from_file(&path).unwrap(), cfg);
    }

    #[test]
    fn initial_weights_have_the_reference_scales() {
        let cfg = Config {
            vocab_size: 1000,
            ..named_config("tiny").unwrap()
        };
        let weights = init_weights(&cfg, 1);
        let std = |name: &str| {
            let (_, _, v) = weights.iter().find(|(n, _, _)| n == name).unwrap();
            let n = v.len() as f64;
            (v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n).sqrt()
        };
        let small = (2.0 / 5.0 / 256.0f64).sqrt();
        assert!((std("model.embed_tokens.weight") / small - 1.0).abs() < 0.02);
        assert!((std("model.layers.3.mlp.gate_proj.weight") / small - 1.0).abs() < 0.02);
        let out = 1.0 / 16.0 / 8.0;
        assert!((std("model.layers.3.mlp.down_proj.weight") / out - 1.0).abs() < 0.02);
        assert_eq!(std("model.norm.weight"), 1.0);
    }
}
