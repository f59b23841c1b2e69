//! The model: embeddings, decoder layers (attention and SwiGLU MLP, each after an RMSNorm),
//! the final norm and the output head, run over packed batches with or without caches.

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::linear::tensor_bytes;
use super::{
    Attention, CResult, KvCache, Linear, PackedBatch, Q8Kernel, Quantization, Rotary,
    Q8_DENSE_MIN_TOKENS,
};
use crate::config::Config;

/// Root-mean-square normalisation with a learned scale.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(vb: &VarBuilder, size: usize, eps: f64) -> CResult<Self> {
        Ok(RmsNorm {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor, differentiable: bool) -> CResult<Tensor> {
        if differentiable {
            // candle's fused kernel has no backward pass.
            crate::fused::rms_norm(x, &self.weight, self.eps as f32)
        } else {
            candle_nn::ops::rms_norm(x, &self.weight, self.eps as f32)
        }
    }
}

/// Tokens of one packed forward pass: larger batches of sequences run as several passes.
/// Their activations are what a forward pass holds beside the weights and caches: the
/// refiner's prefill of 8 × 512 tokens peaked 38 MiB lower with 512 than with 1024, at the
/// same speed.
const PACKED_TOKENS: usize = 512;

/// The SwiGLU feed-forward block.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn load(
        vb: &VarBuilder,
        cfg: &Config,
        quantization: Option<Quantization>,
    ) -> CResult<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let linear = |module, shape| Linear::load_module(vb, module, shape, quantization);
        Ok(Mlp {
            gate_proj: linear("gate_proj", (i, h))?,
            up_proj: linear("up_proj", (i, h))?,
            down_proj: linear("down_proj", (h, i))?,
        })
    }

    fn forward(&self, x: &Tensor, batch: &PackedBatch) -> CResult<Tensor> {
        let gate = self.gate_proj.forward_packed(x, batch)?;
        let up = self.up_proj.forward_packed(x, batch)?;
        self.down_proj
            .forward_packed(&crate::fused::swiglu(&gate, &up)?, batch)
    }
}

/// One transformer block: pre-norm attention and pre-norm MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    pub fn load(
        vb: &VarBuilder,
        cfg: &Config,
        quantization: Option<Quantization>,
    ) -> CResult<Self> {
        let norm = |name| RmsNorm::load(&vb.pp(name), cfg.hidden_size, cfg.rms_norm_eps);
        Ok(DecoderLayer {
            input_layernorm: norm("input_layernorm")?,
            self_attn: Attention::load(&vb.pp("self_attn"), cfg, quantization)?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            mlp: Mlp::load(&vb.pp("mlp"), cfg, quantization)?,
        })
    }

    /// The layer's weight matrices: the attention's query, key, value and output
    /// projections, then the MLP's gate, up and down projections.
    pub fn linears(&self) -> [&Linear; 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }

    /// [`DecoderLayer::linears`], to replace them.
    pub fn linears_mut(&mut self) -> [&mut Linear; 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            &mut a.q_proj,
            &mut a.k_proj,
            &mut a.v_proj,
            &mut a.o_proj,
            &mut m.gate_proj,
            &mut m.up_proj,
            &mut m.down_proj,
        ]
    }

    fn forward(
        &self,
        x: &Tensor,
        batch: &PackedBatch,
        rotary: &Rotary,
        caches: Option<(&[&mut KvCache], usize)>,
    ) -> CResult<Tensor> {
        let differentiable = caches.is_none();
        let h = self.input_layernorm.forward(x, differentiable)?;
        let x = (x + self.self_attn.forward(&h, batch, rotary, caches)?)?;
        let h = self.post_attention_layernorm.forward(&x, differentiable)?;
        x + self.mlp.forward(&h, batch)?
    }
}

/// Which positions to compute logits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogitsAt {
    /// The last token of every sequence: `[sequences, vocab]` (generation).
    Last,
    /// Every token: `[total_tokens, vocab]`, sequences one after the other (log-likelihoods).
    All,
    /// Chosen rows of the packed batch (indices into the concatenated tokens).
    Rows(Vec<usize>),
}

/// A Llama causal language model.
#[derive(Debug, Clone)]
pub struct Llama {
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    rotary: Rotary,
    config: Config,
    dtype: DType,
    device: Device,
}

impl Llama {
    /// Loads a model with Hugging Face weight names (`model.layers.N.self_attn.q_proj.weight`…).
    /// Every tensor is converted to the var builder's dtype.
    pub fn load(vb: &VarBuilder, cfg: &Config) -> CResult<Self> {
        Self::load_quantized(vb, cfg, None)
    }

    /// [`Llama::load`], each projection and the output head quantized as soon as it is
    /// read (see [`Linear::load_quantized`]); the result equals loading, then
    /// [`Llama::quantize_with`].
    pub fn load_quantized(
        vb: &VarBuilder,
        cfg: &Config,
        quantization: Option<Quantization>,
    ) -> CResult<Self> {
        let model = vb.pp("model");
        let embed_tokens = model.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        // The head before the layers: quantizing it holds its float matrix, the largest of
        // the model, and that is cheaper while the layers are not loaded yet.
        let lm_head = if cfg.tie_word_embeddings {
            let head = Linear::Float(embed_tokens.clone());
            match quantization {
                Some(q) => head.quantize_with(q.dtype, q.kernel)?,
                None => head,
            }
        } else {
            let shape = (cfg.vocab_size, cfg.hidden_size);
            Linear::load_module(vb, "lm_head", shape, quantization)?
        };
        let layers = (0..cfg.num_layers)
            .map(|i| DecoderLayer::load(&model.pp(format!("layers.{i}")), cfg, quantization))
            .collect::<CResult<Vec<_>>>()?;
        let norm = RmsNorm::load(&model.pp("norm"), cfg.hidden_size, cfg.rms_norm_eps)?;
        Self::from_parts(embed_tokens, layers, norm, lm_head, cfg.clone())
    }

    /// Assembles a model from loaded pieces (the GGUF loader, tests).
    pub fn from_parts(
        embed_tokens: Tensor,
        layers: Vec<DecoderLayer>,
        norm: RmsNorm,
        lm_head: Linear,
        config: Config,
    ) -> CResult<Self> {
        let dtype = embed_tokens.dtype();
        let device = embed_tokens.device().clone();
        let rotary = Rotary::new(&config, dtype, &device)?;
        Ok(Llama {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            config,
            dtype,
            device,
        })
    }

    /// A model with deterministic pseudo-random weights (benchmarks and tests): uniform in
    /// ±1/√fan_in for projections, around 1 for norms.
    pub fn random(cfg: &Config, dtype: DType, device: &Device, seed: u64) -> CResult<Self> {
        let tensors = Self::random_weights(cfg, dtype, device, seed)?;
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        Self::load(&vb, cfg)
    }

    /// The weights of [`Llama::random`] under their Hugging Face names, to save them as a
    /// model folder.
    pub fn random_weights(
        cfg: &Config,
        dtype: DType,
        device: &Device,
        seed: u64,
    ) -> CResult<std::collections::HashMap<String, Tensor>> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut tensor = |shape: (usize, usize), center: f32, scale: f32| {
            let data: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| {
                    // xorshift64*: cheap, and reproducible across platforms.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
                    center + scale * (r as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
                })
                .collect();
            Tensor::from_vec(data, shape, device)?.to_dtype(dtype)
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let q = cfg.num_heads * cfg.head_dim;
        let kv = cfg.num_kv_heads * cfg.head_dim;
        let mut tensors = std::collections::HashMap::new();
        let mut add = |name: String, t: Tensor| {
            tensors.insert(name, t);
        };
        add(
            "model.embed_tokens.weight".into(),
            tensor((cfg.vocab_size, h), 0.0, 1.0)?,
        );
        let fan = |n: usize| 1.0 / (n as f32).sqrt();
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            for (name, shape) in [
                ("self_attn.q_proj", (q, h)),
                ("self_attn.k_proj", (kv, h)),
                ("self_attn.v_proj", (kv, h)),
                ("self_attn.o_proj", (h, q)),
                ("mlp.gate_proj", (i, h)),
                ("mlp.up_proj", (i, h)),
                ("mlp.down_proj", (h, i)),
            ] {
                add(
                    format!("{p}.{name}.weight"),
                    tensor(shape, 0.0, fan(shape.1))?,
                );
            }
            for name in ["input_layernorm", "post_attention_layernorm"] {
                add(
                    format!("{p}.{name}.weight"),
                    tensor((1, h), 1.0, 0.1)?.squeeze(0)?,
                );
            }
        }
        add(
            "model.norm.weight".into(),
            tensor((1, h), 1.0, 0.1)?.squeeze(0)?,
        );
        if !cfg.tie_word_embeddings {
            add(
                "lm_head.weight".into(),
                tensor((cfg.vocab_size, h), 0.0, fan(h))?,
            );
        }
        Ok(tensors)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Bytes the weights take in memory (a tied output head counted once).
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.linears()
                    .into_iter()
                    .map(Linear::weight_bytes)
                    .sum::<usize>()
                    + tensor_bytes(&l.input_layernorm.weight)
                    + tensor_bytes(&l.post_attention_layernorm.weight)
            })
            .sum();
        let head = if self.head_is_embedding() {
            0
        } else {
            self.lm_head.weight_bytes()
        };
        tensor_bytes(&self.embed_tokens) + layers + tensor_bytes(&self.norm.weight) + head
    }

    /// Bytes of weights one decoding step reads, whatever the batch: all of
    /// [`Llama::weight_bytes`] but the embedding table, of which each token reads one row,
    /// unless the table is also the (float, tied) output head. Decoding a single sequence is
    /// bound by this traffic, not by arithmetic.
    pub fn weight_bytes_per_step(&self) -> usize {
        if self.head_is_embedding() {
            self.weight_bytes()
        } else {
            self.weight_bytes() - tensor_bytes(&self.embed_tokens)
        }
    }

    /// Whether the output head is the embedding tensor itself: tied, and not quantized.
    fn head_is_embedding(&self) -> bool {
        self.config.tie_word_embeddings && matches!(self.lm_head, Linear::Float(_))
    }

    /// Bytes of a [`KvCache`] of `capacity` tokens for this model.
    pub fn kv_cache_bytes(&self, capacity: usize) -> usize {
        let cfg = &self.config;
        let capacity = capacity.min(cfg.max_position_embeddings);
        2 * cfg.num_layers * capacity * cfg.num_kv_heads * cfg.head_dim * self.dtype.size_in_bytes()
    }

    /// Quantizes every projection matrix (not the embeddings or norms) to `dtype`.
    pub fn quantize(&mut self, dtype: GgmlDType) -> CResult<()> {
        self.quantize_with(dtype, Q8Kernel::Engine)
    }

    /// [`Llama::quantize`], Q8_0 products computed by `kernel`.
    pub fn quantize_with(&mut self, dtype: GgmlDType, kernel: Q8Kernel) -> CResult<()> {
        for layer in &mut self.layers {
            for linear in layer.linears_mut() {
                *linear = linear.quantize_with(dtype, kernel)?;
            }
        }
        self.lm_head = self.lm_head.quantize_with(dtype, kernel)?;
        Ok(())
    }

    /// Runs `sequences` (new tokens of each) through the model, appending their keys and
    /// values to `caches` (one per sequence; a sequence continues where its cache ends).
    /// Returns f32 logits at the positions `at` selects.
    pub fn forward(
        &self,
        sequences: &[&[u32]],
        caches: &mut [&mut KvCache],
        at: &LogitsAt,
    ) -> CResult<Tensor> {
        if caches.len() != sequences.len() {
            candle_core::bail!("{} sequences but {} caches", sequences.len(), caches.len());
        }
        for (i, (seq, cache)) in sequences.iter().zip(caches.iter()).enumerate() {
            if cache.len + seq.len() > cache.capacity {
                candle_core::bail!(
                    "sequence {i}: {} cached + {} new tokens exceed the cache capacity {}",
                    cache.len,
                    seq.len(),
                    cache.capacity
                );
            }
        }
        let total: usize = sequences.iter().map(|s| s.len()).sum();
        if total > PACKED_TOKENS && sequences.len() > 1 {
            return self.forward_in_groups(sequences, caches, at, total);
        }
        let starts: Vec<usize> = caches.iter().map(|c| c.len).collect();
        let batch = self.pack(sequences, &starts)?;
        let mut x = self.embed(sequences)?;
        for (index, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &batch, &self.rotary, Some((&*caches, index)))?;
        }
        for (cache, seq) in caches.iter_mut().zip(sequences) {
            cache.len += seq.len();
        }
        self.logits(&x, &batch, at, false)
    }

    /// [`Llama::forward`] over groups of sequences of at most [`PACKED_TOKENS`] tokens (or
    /// one longer sequence). Sequences never see each other, so groups give the same logits,
    /// while a group's activations stay small: they stay in cache where a packed batch of
    /// thousands of tokens would not (measured: 8 × 512 tokens at once, 20% slower per
    /// token), and they bound the memory a forward pass holds beside the weights.
    fn forward_in_groups(
        &self,
        sequences: &[&[u32]],
        caches: &mut [&mut KvCache],
        at: &LogitsAt,
        total: usize,
    ) -> CResult<Tensor> {
        if let LogitsAt::Rows(rows) = at {
            if let Some(bad) = rows.iter().find(|&&r| r >= total) {
                candle_core::bail!("logits row {bad} is outside the {total} tokens of the batch");
            }
        }
        let mut groups = Vec::new();
        let (mut first, mut tokens) = (0, 0);
        for (i, seq) in sequences.iter().enumerate() {
            if i > first && tokens + seq.len() > PACKED_TOKENS {
                groups.push(first..i);
                (first, tokens) = (i, 0);
            }
            tokens += seq.len();
        }
        groups.push(first..sequences.len());

        let mut logits = Vec::with_capacity(groups.len());
        // For `Rows`: the index in `rows` of each row computed, in the order computed.
        let mut order = Vec::new();
        let mut start = 0;
        for group in groups {
            let end = start
                + sequences[group.clone()]
                    .iter()
                    .map(|s| s.len())
                    .sum::<usize>();
            let group_at = match at {
                LogitsAt::Rows(rows) => {
                    let local: Vec<usize> = rows
                        .iter()
                        .enumerate()
                        .filter(|(_, &r)| (start..end).contains(&r))
                        .map(|(i, &r)| {
                            order.push(i);
                            r - start
                        })
                        .collect();
                    // A group without chosen rows still fills its caches; its last-position
                    // logits are computed and dropped.
                    (!local.is_empty()).then_some(LogitsAt::Rows(local))
                }
                other => Some(other.clone()),
            };
            let caches = &mut caches[group.clone()];
            match group_at {
                Some(group_at) => {
                    logits.push(self.forward(&sequences[group], caches, &group_at)?);
                }
                None => {
                    self.forward(&sequences[group], caches, &LogitsAt::Last)?;
                }
            }
            start = end;
        }
        if logits.is_empty() {
            return Tensor::zeros((0, self.config.vocab_size), DType::F32, &self.device);
        }
        let logits = Tensor::cat(&logits, 0)?;
        if order.iter().enumerate().all(|(k, &i)| k == i) {
            return Ok(logits);
        }
        // Rows not in batch order: put each back where `rows` asked for it.
        let mut position = vec![0u32; order.len()];
        for (k, &i) in order.iter().enumerate() {
            position[i] = k as u32;
        }
        let n = position.len();
        logits.index_select(&Tensor::from_vec(position, n, &self.device)?, 0)
    }

    /// Runs whole sequences from position 0 without caches, using only differentiable
    /// operations. Returns logits at the positions `at` selects (f32).
    pub fn forward_uncached(&self, sequences: &[&[u32]], at: &LogitsAt) -> CResult<Tensor> {
        let starts = vec![0; sequences.len()];
        let batch = self.pack(sequences, &starts)?;
        let mut x = self.embed(sequences)?;
        for layer in &self.layers {
            x = layer.forward(&x, &batch, &self.rotary, None)?;
        }
        self.logits(&x, &batch, at, true)
    }

    fn pack(&self, sequences: &[&[u32]], starts: &[usize]) -> CResult<PackedBatch> {
        let mut positions = Vec::with_capacity(sequences.iter().map(|s| s.len()).sum());
        for (seq, start) in sequences.iter().zip(starts) {
            if seq.is_empty() {
                candle_core::bail!("a sequence without tokens");
            }
            if start + seq.len() > self.config.max_position_embeddings {
                candle_core::bail!(
                    "{} tokens exceed the context of {}",
                    start + seq.len(),
                    self.config.max_position_embeddings
                );
            }
            positions.extend((*start..start + seq.len()).map(|p| p as u32));
        }
        let total = positions.len();
        Ok(PackedBatch {
            lens: sequences.iter().map(|s| s.len()).collect(),
            positions: Tensor::from_vec(positions, total, &self.device)?,
            dense: sequences
                .iter()
                .map(|s| s.len() >= Q8_DENSE_MIN_TOKENS)
                .collect(),
        })
    }

    fn embed(&self, sequences: &[&[u32]]) -> CResult<Tensor> {
        let ids: Vec<u32> = sequences.iter().flat_map(|s| s.iter().copied()).collect();
        if let Some(bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            candle_core::bail!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            );
        }
        let total = ids.len();
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        self.embed_tokens.index_select(&ids, 0)
    }

    fn logits(
        &self,
        x: &Tensor,
        batch: &PackedBatch,
        at: &LogitsAt,
        differentiable: bool,
    ) -> CResult<Tensor> {
        let rows: Option<Vec<u32>> = match at {
            LogitsAt::All => None,
            LogitsAt::Last => Some(
                batch
                    .lens
                    .iter()
                    .scan(0usize, |end, len| {
                        *end += len;
                        Some(*end as u32 - 1)
                    })
                    .collect(),
            ),
            LogitsAt::Rows(rows) => Some(rows.iter().map(|&r| r as u32).collect()),
        };
        // Select before the norm and the head: the head is the largest matmul of decoding.
        let x = match rows {
            Some(rows) => {
                let n = rows.len();
                x.index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?
            }
            None => x.clone(),
        };
        let x = self.norm.forward(&x, differentiable)?;
        self.lm_head.forward(&x)?.to_dtype(DType::F32)
    }
}
