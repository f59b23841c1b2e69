//! Model configuration: a serde mirror of Hugging Face's `config.json` for the Llama family,
//! turned into the runtime [`Config`] the forward pass reads.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// `eos_token_id` is a number or a list of numbers in Hugging Face configs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

fn default_rope_theta() -> f64 {
    10_000.0
}

fn default_max_positions() -> usize {
    2048
}

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> String {
    "silu".to_owned()
}

/// The fields of a Hugging Face Llama `config.json` that matter to the forward pass.
/// Unknown fields are ignored: real configs carry many (`initializer_range`, `torch_dtype`…).
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Absent in older configs: then every head has its own keys and values.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub model_type: Option<String>,
}

impl HfConfig {
    /// Reads and parses a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks that this engine can run the model and gives the runtime configuration.
    /// `path` names the file in errors.
    pub fn into_config(self, path: &Path) -> Result<Config> {
        let unsupported = |reason: String| Error::Unsupported {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(model_type) = &self.model_type {
            if model_type != "llama" {
                return Err(unsupported(format!(
                    "model_type `{model_type}` (only `llama` is supported)"
                )));
            }
        }
        if self.hidden_act != "silu" {
            return Err(unsupported(format!(
                "hidden_act `{}` (only `silu` is supported)",
                self.hidden_act
            )));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(unsupported("rope_scaling is not supported".to_owned()));
        }
        if self.attention_bias || self.mlp_bias {
            return Err(unsupported("biases are not supported".to_owned()));
        }
        let config = Config {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            vocab_size: self.vocab_size,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings,
            rope_interleaved: false,
            bos_token_id: self.bos_token_id,
            eos_token_ids: self.eos_token_id.map(|e| e.to_vec()).unwrap_or_default(),
        };
        config.validate().map_err(unsupported)?;
        Ok(config)
    }
}

/// What the forward pass needs to know about a Llama model.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Key/value heads: equal to `num_heads` (multi-head), fewer (grouped-query) or 1
    /// (multi-query, the ProX refiners).
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// The context: no sequence may hold more tokens than this.
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Rotary embedding on interleaved pairs instead of Hugging Face's rotate-half. GGUF
    /// files need it: llama.cpp's converter permutes the q/k weights for its interleaved rope.
    pub rope_interleaved: bool,
    pub bos_token_id: Option<u32>,
    /// Generation stops at any of these.
    pub eos_token_ids: Vec<u32>,
}

impl Config {
    /// The Hugging Face `config.json` of this configuration, for `LlamaForCausalLM`: what
    /// [`HfConfig`] reads back as the same configuration.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let eos = match self.eos_token_ids.as_slice() {
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        };
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
            "use_cache": true,
        })
    }

    /// Checks the shape is consistent; the error says what is wrong.
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than rust-version
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.num_heads == 0 || self.num_kv_heads == 0 {
            return Err("zero attention heads".to_owned());
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return Err(format!(
                "head dimension {} is not a positive even number",
                self.head_dim
            ));
        }
        if self.num_layers == 0 || self.vocab_size == 0 || self.max_position_embeddings == 0 {
            return Err("zero layers, vocabulary or context".to_owned());
        }
        Ok(())
    }

    /// The number of parameters (weights only, as stored).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let per_layer = h * q + 2 * h * kv + q * h + 3 * h * self.intermediate_size + 2 * h;
        let embeddings = self.vocab_size * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            embeddings
        };
        embeddings + self.num_layers * per_layer + h + head
    }

    /// The full shape of the ProX refiners (section 2 of the spec), for benchmarks.
    pub fn prox_refiner() -> Self {
        Config {
            hidden_size: 1280,
            intermediate_size: 2048,
            num_layers: 24,
            num_heads: 16,
            num_kv_heads: 1,
            head_dim: 80,
            vocab_size: 32000,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
            rope_interleaved: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refiner_shape_has_the_published_parameter_count() {
        assert_eq!(Config::prox_refiner().num_parameters(), 354_284_800);
    }

    #[test]
    fn a_config_without_kv_heads_is_multi_head() {
        let json = r#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 10, "eos_token_id": [2, 3]}"#;
        let hf: HfConfig = serde_json::from_str(json).unwrap();
        let config = hf.into_config(Path::new("config.json")).unwrap();
        assert_eq!(config.num_kv_heads, 2);
        assert_eq!(config.head_dim, 4);
        assert_eq!(config.eos_token_ids, vec![2, 3]);
    }

    #[test]
    fn an_unsupported_activation_is_refused_with_the_path() {
        let json = r#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 10, "hidden_act": "gelu"}"#;
        let hf: HfConfig = serde_json::from_str(json).unwrap();
        let err = hf.into_config(Path::new("m/config.json")).unwrap_err();
        assert!(err.to_string().contains("m/config.json"), "{err}");
        assert!(err.to_string().contains("gelu"), "{err}");
    }
}
