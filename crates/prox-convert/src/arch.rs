//! Model architectures: the reference's `lit_gpt/config.py` entries for the ProX models, a
//! litgpt config from JSON or from a checkpoint's `hparams`, and the Hugging Face `config.json`
//! that `convert_config_lit_to_hf` writes for it.

// `is_multiple_of` is newer than the workspace's rust-version.
#![allow(clippy::manual_is_multiple_of)]

use std::path::Path;

use serde_json::{json, Map, Value as Json};

use crate::error::{io, Error, Result};
use crate::pickle::Value;

/// The litgpt configuration fields a Llama conversion depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct LitConfig {
    pub name: String,
    /// `max_position_embeddings` in the Hugging Face config.
    pub block_size: u64,
    /// Written to `config.json`, as the reference does.
    pub vocab_size: u64,
    /// The rows of the embedding and of the output head.
    pub padded_vocab_size: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_embd: u64,
    /// Key/value heads.
    pub n_query_groups: u64,
    pub intermediate_size: u64,
    pub norm_eps: f64,
    pub rope_base: f64,
}

/// The architectures `--arch` knows by name (ProX's `lit_gpt/config.py`).
pub const KNOWN_ARCHS: &[&str] = &[
    "tiny_LLaMA_0_3b",
    "tiny_LLaMA_0_7b",
    "tiny_LLaMA_1b",
    "tiny_LLaMA_1_7b",
    "tiny_LLaMA_3b",
    "tiny_LLaMA_120M",
];

/// `find_multiple` of litgpt: `n` rounded up to a multiple of `k`.
fn find_multiple(n: u64, k: u64) -> u64 {
    if k == 0 || n % k == 0 {
        n
    } else {
        n + k - n % k
    }
}

impl LitConfig {
    /// One of [`KNOWN_ARCHS`].
    pub fn from_name(name: &str) -> Option<LitConfig> {
        // (layers, heads, width, query groups, intermediate); every ProX model has a block of
        // 2048, the Llama-2 vocabulary padded to a multiple of 64, RMSNorm 1e-5, rope base 1e4.
        let (n_layer, n_head, n_embd, n_query_groups, intermediate_size) = match name {
            "tiny_LLaMA_0_3b" => (24, 16, 1280, 1, 2048),
            "tiny_LLaMA_0_7b" => (24, 24, 1536, 2, 4864),
            "tiny_LLaMA_1b" => (22, 32, 2048, 4, 5632),
            // No `n_query_groups` in config.py: one group per head.
            "tiny_LLaMA_1_7b" => (24, 32, 2048, 32, 8192),
            "tiny_LLaMA_3b" => (26, 32, 3200, 32, 8640),
            "tiny_LLaMA_120M" => (12, 12, 768, 1, 2048),
            _ => return None,
        };
        Some(LitConfig {
            name: name.to_owned(),
            block_size: 2048,
            vocab_size: 32000,
            padded_vocab_size: find_multiple(32000, 64),
            n_layer,
            n_head,
            n_embd,
            n_query_groups,
            intermediate_size,
            norm_eps: 1e-5,
            rope_base: 10000.0,
        })
    }

    /// A name from [`KNOWN_ARCHS`], or a JSON file of litgpt `Config` fields
    /// (`lit_config.json`, as `asdict(config)` writes it).
    pub fn from_arch(arch: &str) -> Result<LitConfig> {
        if let Some(config) = LitConfig::from_name(arch) {
            return Ok(config);
        }
        let path = Path::new(arch);
        if !path.is_file() {
            return Err(Error::Arch(format!(
                "{arch:?} is neither a known architecture ({}) nor a JSON file",
                KNOWN_ARCHS.join(", ")
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| Error::Arch(format!("{}: {e}", path.display())))?;
        let fields = Fields::Json(&json);
        fields
            .config()
            .map_err(|e| Error::Arch(format!("{}: {e}", path.display())))?
            .ok_or_else(|| {
                Error::Arch(format!(
                    "{}: lacks some of {}",
                    path.display(),
                    REQUIRED.join(", ")
                ))
            })
    }

    /// The architecture a checkpoint's `hparams` describe, when they describe one: either
    /// every field a conversion needs, or the name of a known architecture under `model` (as
    /// ProX's `TinyLMConfig` records it). `Ok(None)` when they describe none.
    pub fn from_hparams(hparams: &Value) -> std::result::Result<Option<LitConfig>, String> {
        let fields = Fields::Pickle(hparams);
        if let Some(config) = fields.config()? {
            return Ok(Some(config));
        }
        for key in ["model", "model_name"] {
            if let Some(config) = hparams
                .get(key)
                .and_then(Value::as_str)
                .and_then(LitConfig::from_name)
            {
                return Ok(Some(config));
            }
        }
        Ok(None)
    }

    /// The fields of `self` that `hparams` state differently, as `field: arch vs hparams`.
    pub fn differences_from_hparams(&self, hparams: &Value) -> Vec<String> {
        let mut differences = Vec::new();
        let ints = [
            ("block_size", self.block_size),
            ("vocab_size", self.vocab_size),
            ("padded_vocab_size", self.padded_vocab_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("n_query_groups", self.n_query_groups),
            ("intermediate_size", self.intermediate_size),
        ];
        for (key, ours) in ints {
            if let Some(theirs) = hparams.get(key).and_then(Value::as_int) {
                if u64::try_from(theirs) != Ok(ours) {
                    differences.push(format!("{key}: {ours} vs {theirs}"));
                }
            }
        }
        for (key, ours) in [("norm_eps", self.norm_eps), ("rope_base", self.rope_base)] {
            if let Some(theirs) = hparams.get(key).and_then(Value::as_f64) {
                if theirs != ours {
                    differences.push(format!("{key}: {ours} vs {theirs}"));
                }
            }
        }
        for key in ["model", "model_name"] {
            if let Some(name) = hparams.get(key).and_then(Value::as_str) {
                if let Some(named) = LitConfig::from_name(name) {
                    if !named.same_shape(self) {
                        differences.push(format!("{key}: {name}, another architecture"));
                    }
                }
            }
        }
        differences
    }

    /// Equal in every field but the name.
    fn same_shape(&self, other: &LitConfig) -> bool {
        LitConfig {
            name: other.name.clone(),
            ..self.clone()
        } == *other
    }

    pub fn head_size(&self) -> u64 {
        self.n_embd / self.n_head
    }

    /// Checks what litgpt's `Config.__post_init__` asserts, and what a Llama conversion needs.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| Err(Error::Arch(format!("{}: {reason}", self.name)));
        if self.n_head == 0 || self.n_embd % self.n_head != 0 {
            return fail(format!(
                "n_embd {} is not a multiple of n_head {}",
                self.n_embd, self.n_head
            ));
        }
        if self.n_query_groups == 0 || self.n_head % self.n_query_groups != 0 {
            return fail(format!(
                "n_head {} is not a multiple of n_query_groups {}",
                self.n_head, self.n_query_groups
            ));
        }
        if !self.name.to_lowercase().contains("llama") {
            // convert_config_lit_to_hf picks the Llama config by this test.
            return fail("the reference converts only configurations named *llama*".to_owned());
        }
        Ok(())
    }

    /// Every tensor of the litgpt model and its shape, in the order litgpt registers them.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>)> {
        let (e, v, i) = (self.n_embd, self.padded_vocab_size, self.intermediate_size);
        let qkv = (self.n_head + 2 * self.n_query_groups) * self.head_size();
        let mut out = vec![("transformer.wte.weight".to_owned(), vec![v, e])];
        for l in 0..self.n_layer {
            let h = |s: &str| format!("transformer.h.{l}.{s}");
            out.extend([
                (h("norm_1.weight"), vec![e]),
                (h("attn.attn.weight"), vec![qkv, e]),
                (h("attn.proj.weight"), vec![e, e]),
                (h("norm_2.weight"), vec![e]),
                (h("mlp.fc_1.weight"), vec![i, e]),
                (h("mlp.fc_2.weight"), vec![i, e]),
                (h("mlp.proj.weight"), vec![e, i]),
            ]);
        }
        out.push(("transformer.ln_f.weight".to_owned(), vec![e]));
        out.push(("lm_head.weight".to_owned(), vec![v, e]));
        out
    }

    /// The number of parameters of the litgpt model.
    pub fn num_parameters(&self) -> u64 {
        self.expected_tensors()
            .iter()
            .map(|(_, shape)| shape.iter().product::<u64>())
            .sum()
    }

    /// `config.json` as the reference's `convert_config_lit_to_hf` makes it: its TinyLlama
    /// template with eight fields filled in, in the template's key order.
    pub fn hf_config(&self) -> Json {
        let mut config = Map::new();
        let template = [
            ("architectures", json!(["LlamaForCausalLM"])),
            ("bos_token_id", json!(1)),
            ("eos_token_id", json!(2)),
            ("hidden_act", json!("silu")),
            ("hidden_size", json!(self.n_embd)),
            ("initializer_range", json!(0.02)),
            ("intermediate_size", json!(self.intermediate_size)),
            ("max_position_embeddings", json!(self.block_size)),
            ("model_type", json!("llama")),
            ("num_attention_heads", json!(self.n_head)),
            ("num_hidden_layers", json!(self.n_layer)),
            ("num_key_value_heads", json!(self.n_query_groups)),
            ("pretraining_tp", json!(1)),
            ("rms_norm_eps", json!(self.norm_eps)),
            ("rope_scaling", Json::Null),
            ("tie_word_embeddings", json!(false)),
            ("torch_dtype", json!("float32")),
            ("transformers_version", json!("4.31.0.dev0")),
            ("use_cache", json!(true)),
            ("vocab_size", json!(self.vocab_size)),
        ];
        for (key, value) in template {
            config.insert(key.to_owned(), value);
        }
        // The reference writes no rope_theta, which transformers then takes as 10000; a
        // configuration with another base keeps it, where the reference would lose it.
        if self.rope_base != 10000.0 {
            config.insert("rope_theta".to_owned(), json!(self.rope_base));
        }
        Json::Object(config)
    }
}

/// The fields without which a configuration is incomplete.
const REQUIRED: &[&str] = &[
    "name",
    "block_size",
    "vocab_size",
    "n_layer",
    "n_head",
    "n_embd",
    "intermediate_size",
];

/// Configuration fields from a JSON file or from pickled hparams.
enum Fields<'a> {
    Json(&'a Json),
    Pickle(&'a Value),
}

impl Fields<'_> {
    fn int(&self, key: &str) -> std::result::Result<Option<u64>, String> {
        let value = match self {
            Fields::Json(j) => match j.get(key) {
                None | Some(Json::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .ok_or_else(|| format!("{key} is not a count: {v}"))?,
                ),
            },
            Fields::Pickle(p) => match p.get(key) {
                None | Some(Value::None) => None,
                Some(v) => Some(
                    v.as_int()
                        .and_then(|i| u64::try_from(i).ok())
                        .ok_or_else(|| format!("{key} is not a count: {v:?}"))?,
                ),
            },
        };
        Ok(value)
    }

    fn float(&self, key: &str) -> std::result::Result<Option<f64>, String> {
        let value = match self {
            Fields::Json(j) => match j.get(key) {
                None | Some(Json::Null) => None,
                Some(v) => Some(
                    v.as_f64()
                        .ok_or_else(|| format!("{key} is not a number: {v}"))?,
                ),
            },
            Fields::Pickle(p) => match p.get(key) {
                None | Some(Value::None) => None,
                Some(v) => Some(
                    v.as_f64()
                        .ok_or_else(|| format!("{key} is not a number: {v:?}"))?,
                ),
            },
        };
        Ok(value)
    }

    fn str(&self, key: &str) -> Option<String> {
        match self {
            Fields::Json(j) => j.get(key).and_then(Json::as_str).map(str::to_owned),
            Fields::Pickle(p) => p.get(key).and_then(Value::as_str).map(str::to_owned),
        }
    }

    /// The configuration, with litgpt's defaults for what may be left out; `None` when a
    /// required field is missing.
    fn config(&self) -> std::result::Result<Option<LitConfig>, String> {
        let Some(name) = self.str("name") else {
            return Ok(None);
        };
        let (
            Some(block_size),
            Some(vocab_size),
            Some(n_layer),
            Some(n_head),
            Some(n_embd),
            Some(intermediate_size),
        ) = (
            self.int("block_size")?,
            self.int("vocab_size")?,
            self.int("n_layer")?,
            self.int("n_head")?,
            self.int("n_embd")?,
            self.int("intermediate_size")?,
        )
        else {
            return Ok(None);
        };
        if let Some(mlp) = self.str("_mlp_class") {
            if mlp != "LLaMAMLP" {
                return Err(format!(
                    "_mlp_class {mlp}: only LLaMAMLP models are converted"
                ));
            }
        }
        let padding_multiple = self.int("padding_multiple")?.unwrap_or(512);
        let padded_vocab_size = self
            .int("padded_vocab_size")?
            .unwrap_or_else(|| find_multiple(vocab_size, padding_multiple));
        Ok(Some(LitConfig {
            name,
            block_size,
            vocab_size,
            padded_vocab_size,
            n_layer,
            n_head,
            n_embd,
            n_query_groups: self.int("n_query_groups")?.unwrap_or(n_head),
            intermediate_size,
            norm_eps: self.float("norm_eps")?.unwrap_or(1e-5),
            rope_base: self.float("rope_base")?.unwrap_or(10000.0),
        }))
    }
}

/// JSON as Python's `json.dump(..., indent=4)` writes it: floats in `repr` form (`1e-05`,
/// `0.02`), so that the file matches the reference's byte for byte.
pub fn to_python_json(value: &Json) -> String {
    let mut out = String::new();
    write_python_json(value, 0, &mut out);
    out
}

fn write_python_json(value: &Json, level: usize, out: &mut String) {
    let indent = |level: usize, out: &mut String| {
        out.push('\n');
        out.push_str(&"    ".repeat(level));
    };
    match value {
        Json::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                write_python_json(item, level + 1, out);
            }
            indent(level, out);
            out.push(']');
        }
        Json::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                out.push_str(&Json::String(key.clone()).to_string());
                out.push_str(": ");
                write_python_json(item, level + 1, out);
            }
            indent(level, out);
            out.push('}');
        }
        Json::Number(n) if n.is_f64() => {
            out.push_str(&python_float_repr(n.as_f64().unwrap_or(0.0)))
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Python's `repr(float)`: the shortest digits that read back the same, in positional form for
/// exponents from -4 to 15 and with a two-digit exponent otherwise.
fn python_float_repr(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".to_owned()
        } else if x > 0.0 {
            "Infinity".to_owned()
        } else {
            "-Infinity".to_owned()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "1.5e-5", "2e-2".
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let positional = format!("{x}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tiny_llama_0_3b_has_the_published_parameter_count() {
        let config = LitConfig::from_name("tiny_LLaMA_0_3b").unwrap();
        assert_eq!(config.num_parameters(), 354_284_800);
        assert_eq!(
            (config.n_layer, config.n_head, config.n_embd),
            (24, 16, 1280)
        );
        assert_eq!((config.n_query_groups, config.intermediate_size), (1, 2048));
    }

    #[test]
    fn every_known_architecture_is_valid() {
        for name in KNOWN_ARCHS {
            LitConfig::from_name(name).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn floats_are_written_as_python_writes_them() {
        for (x, repr) in [
            (1e-5, "1e-05"),
            (1e-6, "1e-06"),
            (0.02, "0.02"),
            (10000.0, "10000.0"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (123.25, "123.25"),
        ] {
            assert_eq!(python_float_repr(x), repr, "{x}");
        }
    }

    #[test]
    fn nested_json_is_indented_by_four_spaces() {
        let value = json!({"a": [1, "x"], "b": {}, "c": 1e-5, "d": null});
        assert_eq!(
            to_python_json(&value),
            "{\n    \"a\": [\n        1,\n        \"x\"\n    ],\n    \"b\": {},\n    \"c\": 1e-05,\n    \"d\": null\n}"
        );
    }
}
