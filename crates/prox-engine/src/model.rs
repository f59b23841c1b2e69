//! The Llama forward pass: layers built from candle-nn pieces, run over *packed* batches.
//!
//! All sequences of a batch are concatenated into one `[total_tokens, hidden]` matrix, so
//! every projection is one matrix product whatever the prompt lengths; each token carries its
//! own rotary position; attention alone runs per sequence (causal within it), so no mask
//! spanning the batch is ever built.
//!
//! Two paths share the weights:
//! - [`Llama::forward`] writes keys and values into preallocated per-sequence [`KvCache`]s
//!   in place and uses fused kernels (no autograd) — prefill and decoding;
//! - [`Llama::forward_uncached`] uses only differentiable candle ops (matmul attention,
//!   composite RMSNorm and rotary embedding), for log-likelihoods and, later, training.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::config::Config;
use crate::q8::{Kernel, Q8Matrix};

type CResult<T> = candle_core::Result<T>;

/// A weight matrix `[out, in]` applied as `x · Wᵀ`: float, or quantized (GGUF blocks, or
/// quantized when loading).
#[derive(Debug, Clone)]
pub enum Linear {
    Float(Tensor),
    /// Quantized blocks computed by candle (every type but Q8_0 on the CPU, unless asked).
    Quantized(QMatMul),
    /// Q8_0 blocks computed by the engine's tiled kernel ([`Q8Matrix`]).
    Q8(Arc<Q8Matrix>),
}

/// Which kernel computes Q8_0 products on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Q8Kernel {
    /// The engine's tiled kernel ([`Q8Matrix`]), the fastest path this CPU runs.
    #[default]
    Engine,
    /// The engine's portable scalar kernel: the same numbers as [`Q8Kernel::Engine`] (up to
    /// float summation order) on every CPU; slow, for checking the SIMD paths.
    Portable,
    /// candle's `QMatMul`, for comparisons. Its numbers depend on the CPU: with AVX-512 VNNI
    /// or AVX-VNNI, candle 0.11 quantizes activations to 256-value Q8_K blocks instead of
    /// Q8_0's 32-value blocks, which moves results by up to about 1%.
    Candle,
}

/// A quantization applied to every projection weight and the output head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantization {
    pub dtype: GgmlDType,
    pub kernel: Q8Kernel,
}

impl Quantization {
    /// `dtype`, Q8_0 computed by the engine's kernel.
    pub fn new(dtype: GgmlDType) -> Self {
        Quantization {
            dtype,
            kernel: Q8Kernel::Engine,
        }
    }
}

impl Linear {
    /// Loads the `[out, in]` weight `name` in the var builder's dtype.
    pub fn load(vb: &VarBuilder, out_dim: usize, in_dim: usize, name: &str) -> CResult<Self> {
        Ok(Linear::Float(vb.get((out_dim, in_dim), name)?))
    }

    /// [`Linear::load`], then quantized at once when `quantization` is given: the float
    /// matrix is dropped before the next weight is read, so loading never holds more than
    /// one of them. The blocks are those [`Linear::quantize`] gives after loading.
    pub fn load_quantized(
        vb: &VarBuilder,
        out_dim: usize,
        in_dim: usize,
        name: &str,
        quantization: Option<Quantization>,
    ) -> CResult<Self> {
        let linear = Self::load(vb, out_dim, in_dim, name)?;
        match quantization {
            Some(q) => linear.quantize_with(q.dtype, q.kernel),
            None => Ok(linear),
        }
    }

    /// A quantized weight `[out, in]` (from a GGUF file or a quantizer): Q8_0 on the CPU
    /// goes to `kernel`, everything else to candle (on a CUDA device every type, Q8_0
    /// included: the engine's kernel is CPU code). F32/F16 tensors come back dense, in
    /// `dtype`.
    pub fn from_qtensor(q: Arc<QTensor>, dtype: DType, kernel: Q8Kernel) -> CResult<Self> {
        if q.dtype() == GgmlDType::Q8_0 && q.device().is_cpu() {
            let engine_kernel = match kernel {
                Q8Kernel::Engine => Some(Kernel::Best),
                Q8Kernel::Portable => Some(Kernel::Portable),
                Q8Kernel::Candle => None,
            };
            if let Some(engine_kernel) = engine_kernel {
                let matrix = Q8Matrix::from_qtensor(&q)?.with_kernel(engine_kernel);
                return Ok(Linear::Q8(Arc::new(matrix)));
            }
        }
        match QMatMul::from_arc(q)? {
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => Ok(Linear::Float(t.to_dtype(dtype)?)),
            quantized => Ok(Linear::Quantized(quantized)),
        }
    }

    /// Bytes the weight takes in memory (Q8_0: a byte per value and an f32 scale per
    /// 32-value block, not counting the padding of the last panel).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Linear::Float(w)
            | Linear::Quantized(QMatMul::Tensor(w))
            | Linear::Quantized(QMatMul::TensorF16(w)) => tensor_bytes(w),
            Linear::Quantized(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Linear::Q8(m) => m.rows() * m.cols() / 32 * (32 + 4),
        }
    }

    /// Like [`Linear::forward`], for the packed tokens of `batch`: the Q8_0 products of
    /// the sequences with [`Q8_DENSE_MIN_TOKENS`] or more new tokens (prompts being
    /// prefilled) run as one float GEMM on the weights dequantized to f32.
    ///
    /// With AVX2 but no VNNI, a 32-value block product costs as many instructions as the
    /// FMAs it replaces, so the integer kernel saves memory traffic but no arithmetic: it
    /// wins while reading weights is the cost (decoding), and loses to a GEMM once each
    /// weight is reused for hundreds of tokens. A kernel with 8-bit dot products (VNNI)
    /// wins at every length and takes every sequence. The choice is made per sequence, so
    /// a sequence's result does not depend on what it is batched with.
    fn forward_packed(&self, x: &Tensor, batch: &PackedBatch) -> CResult<Tensor> {
        let Linear::Q8(q) = self else {
            return self.forward(x);
        };
        if q.kernel().has_dot_products() || !batch.dense.iter().any(|&dense| dense) {
            return self.forward(x);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let w = Tensor::from_vec(q.dequantize(), (q.rows(), q.cols()), x.device())?;
        let mut pieces = Vec::new();
        let mut start = 0;
        for run in batch.dense_runs() {
            let rows = x.narrow(0, start, run.tokens)?;
            pieces.push(match run.dense {
                true => rows.matmul(&w.t()?)?,
                false => q.forward(&rows)?,
            });
            start += run.tokens;
        }
        Tensor::cat(&pieces, 0)?.to_dtype(dtype)
    }

    /// `x` is `[tokens, in]`; the result `[tokens, out]` has `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Linear::Float(w) => x.matmul(&w.t()?),
            Linear::Quantized(q) => {
                // Quantized kernels take f32 activations.
                let dtype = x.dtype();
                let y = q.forward(&x.to_dtype(DType::F32)?)?;
                y.to_dtype(dtype)
            }
            Linear::Q8(q) => {
                // The engine's kernel works on host memory: weights on a GPU are never built
                // as `Q8` (`from_qtensor` gives them to candle's `QMatMul`, which has CUDA
                // kernels), so this is a CPU weight meeting activations from elsewhere.
                if !x.device().is_cpu() {
                    candle_core::bail!(
                        "the engine's Q8_0 kernel runs on the CPU, but its input is on {:?}",
                        x.device().location()
                    );
                }
                let dtype = x.dtype();
                let y = q.forward(&x.to_dtype(DType::F32)?.contiguous()?)?;
                y.to_dtype(dtype)
            }
        }
    }

    /// The same weight quantized to `dtype` (no-op for already quantized weights), Q8_0
    /// computed by the engine's kernel.
    pub fn quantize(&self, dtype: GgmlDType) -> CResult<Self> {
        self.quantize_with(dtype, Q8Kernel::Engine)
    }

    /// [`Linear::quantize`], Q8_0 computed by `kernel`.
    pub fn quantize_with(&self, dtype: GgmlDType, kernel: Q8Kernel) -> CResult<Self> {
        match self {
            Linear::Float(w) => {
                let (out_dim, in_dim) = w.dims2()?;
                if in_dim % dtype.block_size() != 0 {
                    candle_core::bail!(
                        "cannot quantize a [{out_dim}, {in_dim}] weight to {dtype:?}: its rows \
                         of {in_dim} are not a multiple of the {}-value block",
                        dtype.block_size()
                    );
                }
                // One quantizer for every kernel: candle's.
                let q = QTensor::quantize(&w.to_dtype(DType::F32)?, dtype)?;
                Self::from_qtensor(Arc::new(q), w.dtype(), kernel)
            }
            Linear::Quantized(_) | Linear::Q8(_) => Ok(self.clone()),
        }
    }
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

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
            // The fused kernel has no backward pass; the composite one does.
            candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps as f32)
        } else {
            candle_nn::ops::rms_norm(x, &self.weight, self.eps as f32)
        }
    }
}

/// Rotary position tables for every position of the context.
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
}

impl Rotary {
    pub fn new(cfg: &Config, dtype: DType, device: &Device) -> CResult<Self> {
        let half = cfg.head_dim / 2;
        // Computed in f32 like transformers' LlamaRotaryEmbedding, so that positions far in the
        // context round the same way as the reference.
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (cfg.rope_theta as f32).powf((2 * i) as f32 / cfg.head_dim as f32))
            .collect();
        let positions = cfg.max_position_embeddings;
        let mut freqs = Vec::with_capacity(positions * half);
        for p in 0..positions {
            freqs.extend(inv_freq.iter().map(|f| p as f32 * f));
        }
        let freqs = Tensor::from_vec(freqs, (positions, half), device)?;
        Ok(Rotary {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            interleaved: cfg.rope_interleaved,
        })
    }

    /// Rotates `x` (`[tokens, heads, head_dim]`), each token by its own position.
    fn apply(&self, x: &Tensor, positions: &Tensor, differentiable: bool) -> CResult<Tensor> {
        let cos = self.cos.index_select(positions, 0)?;
        let sin = self.sin.index_select(positions, 0)?;
        if !self.interleaved && !differentiable {
            // `rope_thd` takes the token-major layout directly: no transposes.
            let y = candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0)?.contiguous()?, &cos, &sin)?;
            return y.squeeze(0);
        }
        // The other kernels want [batch, heads, tokens, dim].
        let xt = x.transpose(0, 1)?.contiguous()?.unsqueeze(0)?;
        let y = match (self.interleaved, differentiable) {
            (false, true) => candle_nn::rotary_emb::rope_slow(&xt, &cos, &sin)?,
            (true, true) => candle_nn::rotary_emb::rope_i_slow(&xt, &cos, &sin)?,
            _ => candle_nn::rotary_emb::rope_i(&xt, &cos, &sin)?,
        };
        y.squeeze(0)?.transpose(0, 1)?.contiguous()
    }
}

/// From this many new tokens of a sequence, its Q8_0 products run on dequantized weights
/// ([`Linear::forward_packed`]). Dequantizing a matrix costs about as much as multiplying
/// it by a few dozen tokens.
pub const Q8_DENSE_MIN_TOKENS: usize = 128;

/// Tokens of one packed forward pass: larger batches of sequences run as several passes.
/// Their activations are what a forward pass holds beside the weights and caches: the
/// refiner's prefill of 8 × 512 tokens peaked 38 MiB lower with 512 than with 1024, at the
/// same speed.
const PACKED_TOKENS: usize = 512;
/// From this many new queries of one sequence, attention runs as matrix products.
const GEMM_ATTENTION_MIN_QUERIES: usize = 16;
/// Queries per block of GEMM attention: the scores of a block are `heads × block × keys`
/// floats (16 × 128 × 2048 × 4 B = 16 MiB at the refiners' longest context).
const ATTENTION_QUERY_BLOCK: usize = 128;

/// Self-attention with any number of key/value heads (multi-head, grouped, multi-query).
#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn load(
        vb: &VarBuilder,
        cfg: &Config,
        quantization: Option<Quantization>,
    ) -> CResult<Self> {
        let q = cfg.num_heads * cfg.head_dim;
        let kv = cfg.num_kv_heads * cfg.head_dim;
        let h = cfg.hidden_size;
        let linear = |name: &str, out_dim, in_dim| {
            Linear::load_quantized(&vb.pp(name), out_dim, in_dim, "weight", quantization)
        };
        Ok(Attention {
            q_proj: linear("q_proj", q, h)?,
            k_proj: linear("k_proj", kv, h)?,
            v_proj: linear("v_proj", kv, h)?,
            o_proj: linear("o_proj", h, q)?,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        })
    }

    pub fn from_parts([q_proj, k_proj, v_proj, o_proj]: [Linear; 4], cfg: &Config) -> Self {
        Attention {
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            num_heads: cfg.num_heads,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        batch: &PackedBatch,
        rotary: &Rotary,
        caches: Option<(&[&mut KvCache], usize)>,
    ) -> CResult<Tensor> {
        let tokens = x.dim(0)?;
        let differentiable = caches.is_none();
        let q = self.q_proj.forward_packed(x, batch)?.reshape((
            tokens,
            self.num_heads,
            self.head_dim,
        ))?;
        let k = self.k_proj.forward_packed(x, batch)?.reshape((
            tokens,
            self.num_kv_heads,
            self.head_dim,
        ))?;
        let v = self.v_proj.forward_packed(x, batch)?.reshape((
            tokens,
            self.num_kv_heads,
            self.head_dim,
        ))?;
        let q = rotary.apply(&q, &batch.positions, differentiable)?;
        let k = rotary.apply(&k, &batch.positions, differentiable)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();

        let mut outputs = Vec::with_capacity(batch.lens.len());
        let mut offset = 0;
        match caches {
            Some((caches, layer)) => {
                for (len, cache) in batch.lens.iter().zip(caches.iter()) {
                    let q_i = q.narrow(0, offset, *len)?;
                    let k_i = k.narrow(0, offset, *len)?.contiguous()?;
                    let v_i = v.narrow(0, offset, *len)?.contiguous()?;
                    let start = cache.len;
                    let (k_cache, v_cache) = &cache.layers[layer];
                    // Written in place: the cache is never re-concatenated.
                    k_cache.slice_set(&k_i, 0, start)?;
                    v_cache.slice_set(&v_i, 0, start)?;
                    let k_all = k_cache.narrow(0, 0, start + len)?;
                    let v_all = v_cache.narrow(0, 0, start + len)?;
                    outputs.push(self.attend_cached(&q_i, &k_all, &v_all, scale)?);
                    offset += len;
                }
            }
            None => {
                for len in &batch.lens {
                    let q_i = q.narrow(0, offset, *len)?;
                    let k_i = k.narrow(0, offset, *len)?;
                    let v_i = v.narrow(0, offset, *len)?;
                    outputs.push(self.attend_matmul(&q_i, &k_i, &v_i, scale, true)?);
                    offset += len;
                }
            }
        }
        let y = Tensor::cat(&outputs, 0)?.reshape((tokens, self.num_heads * self.head_dim))?;
        self.o_proj.forward_packed(&y, batch)
    }

    /// Attention of one sequence's new queries over its cache. Many queries (prefill) go
    /// through matrix products, a block of queries at a time, so that the score matrix stays
    /// small; a few queries (decoding) use the fused CPU kernel when it applies (f32 on CPU:
    /// online softmax, no score matrix), whose per-pair dot products are slower than a GEMM
    /// but need no buffers. Elsewhere (a CUDA device, or bf16/f16) decoding takes the GEMM
    /// path too: candle's fused varlen kernel is CPU-only, and on a GPU the products are
    /// cuBLAS calls.
    fn attend_cached(&self, q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> CResult<Tensor> {
        let (lq, lk) = (q.dim(0)?, k.dim(0)?);
        if lq >= GEMM_ATTENTION_MIN_QUERIES {
            let offset = lk - lq;
            let mut blocks = Vec::with_capacity(lq.div_ceil(ATTENTION_QUERY_BLOCK));
            let mut start = 0;
            while start < lq {
                let len = ATTENTION_QUERY_BLOCK.min(lq - start);
                // The block's queries are the last `len` positions of the keys up to them.
                let visible = offset + start + len;
                blocks.push(self.attend_matmul(
                    &q.narrow(0, start, len)?,
                    &k.narrow(0, 0, visible)?,
                    &v.narrow(0, 0, visible)?,
                    scale,
                    false,
                )?);
                start += len;
            }
            return Tensor::cat(&blocks, 0);
        }
        // Dispatch on the device first: `flash_attn_varlen_cpu` reads CPU storage only.
        if q.device().is_cpu() && q.dtype() == DType::F32 {
            let device = q.device();
            let seqlens_q = Tensor::new(&[lq as u32], device)?;
            let seqlens_k = Tensor::new(&[lk as u32], device)?;
            return candle_nn::attention::flash_attn_varlen_cpu(
                &q.contiguous()?,
                k,
                v,
                None,
                &seqlens_q,
                &seqlens_k,
                lq,
                lk,
                scale as f32,
                true,
                None,
                None,
            );
        }
        self.attend_matmul(q, k, v, scale, false)
    }

    /// Differentiable attention of one sequence: `q` `[lq, heads, dim]` over `k`, `v`
    /// `[lk, kv_heads, dim]`, the queries being the last `lq` of the `lk` positions. The
    /// causal mask is only this sequence's `[lq, lk]`.
    fn attend_matmul(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
        differentiable: bool,
    ) -> CResult<Tensor> {
        let (lq, lk) = (q.dim(0)?, k.dim(0)?);
        let rep = self.num_heads / self.num_kv_heads;
        let dtype = q.dtype();
        // Heads sharing a key/value head are stacked, so one matmul per kv head serves them.
        let q = q.transpose(0, 1)?.contiguous()?.reshape((
            self.num_kv_heads,
            rep * lq,
            self.head_dim,
        ))?;
        let k = k.transpose(0, 1)?.contiguous()?;
        let v = v.transpose(0, 1)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
        let scores = if lq > 1 {
            let offset = lk - lq;
            let mask: Vec<f32> = (0..lq)
                .flat_map(|i| {
                    (0..lk).map(move |j| {
                        if j > i + offset {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            let mask = Tensor::from_vec(mask, (lq, lk), scores.device())?;
            scores
                .reshape((self.num_kv_heads, rep, lq, lk))?
                .broadcast_add(&mask)?
                .reshape((self.num_kv_heads, rep * lq, lk))?
        } else {
            scores
        };
        // Softmax in f32 whatever the compute dtype.
        // The fused kernel has no backward pass (its gradient would silently be dropped).
        let probs = if differentiable {
            candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let probs = probs.to_dtype(dtype)?;
        probs
            .matmul(&v)?
            .reshape((self.num_heads, lq, self.head_dim))?
            .transpose(0, 1)
    }
}

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
        let linear = |name: &str, out_dim, in_dim| {
            Linear::load_quantized(&vb.pp(name), out_dim, in_dim, "weight", quantization)
        };
        Ok(Mlp {
            gate_proj: linear("gate_proj", i, h)?,
            up_proj: linear("up_proj", i, h)?,
            down_proj: linear("down_proj", h, i)?,
        })
    }

    fn forward(&self, x: &Tensor, batch: &PackedBatch) -> CResult<Tensor> {
        let gate = self.gate_proj.forward_packed(x, batch)?.silu()?;
        let up = self.up_proj.forward_packed(x, batch)?;
        self.down_proj.forward_packed(&(gate * up)?, batch)
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
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::load(
                &vb.pp("input_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
            self_attn: Attention::load(&vb.pp("self_attn"), cfg, quantization)?,
            post_attention_layernorm: RmsNorm::load(
                &vb.pp("post_attention_layernorm"),
                cfg.hidden_size,
                cfg.rms_norm_eps,
            )?,
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

/// The token layout of one forward call.
struct PackedBatch {
    lens: Vec<usize>,
    /// Each token's position in its sequence (`u32`, `[total_tokens]`).
    positions: Tensor,
    /// Per sequence: whether its Q8_0 products run on dequantized weights.
    dense: Vec<bool>,
}

/// Consecutive sequences of a packed batch that take the same Q8_0 path.
struct DenseRun {
    tokens: usize,
    dense: bool,
}

impl PackedBatch {
    fn dense_runs(&self) -> Vec<DenseRun> {
        let mut runs: Vec<DenseRun> = Vec::new();
        for (&tokens, &dense) in self.lens.iter().zip(&self.dense) {
            match runs.last_mut() {
                Some(run) if run.dense == dense => run.tokens += tokens,
                _ => runs.push(DenseRun { tokens, dense }),
            }
        }
        runs
    }
}

/// A sequence's keys and values for every layer, preallocated to a fixed capacity and
/// written in place as the sequence grows.
#[derive(Debug)]
pub struct KvCache {
    /// `(keys, values)` per layer, each `[capacity, kv_heads, head_dim]`.
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for up to `capacity` tokens (at most the model's context).
    pub fn new(model: &Llama, capacity: usize) -> candle_core::Result<Self> {
        let cfg = &model.config;
        let capacity = capacity.min(cfg.max_position_embeddings);
        let shape = (capacity, cfg.num_kv_heads, cfg.head_dim);
        let layers = (0..cfg.num_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, model.dtype, &model.device)?,
                    Tensor::zeros(shape, model.dtype, &model.device)?,
                ))
            })
            .collect::<CResult<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
        })
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets the tokens after the first `len` (to score alternatives after one prefill).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A cache that holds nothing and can hold nothing.
    pub fn empty() -> Self {
        KvCache {
            layers: Vec::new(),
            len: 0,
            capacity: 0,
        }
    }

    /// A copy holding the same tokens (its own storage).
    pub fn try_clone(&self) -> candle_core::Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| Ok((k.copy()?, v.copy()?)))
            .collect::<CResult<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: self.len,
            capacity: self.capacity,
        })
    }
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
            let head = vb.pp("lm_head");
            let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
            Linear::load_quantized(&head, vocab, hidden, "weight", quantization)?
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
        // A tied head that was not quantized is the embedding tensor itself.
        let shares_embedding =
            self.config.tie_word_embeddings && matches!(self.lm_head, Linear::Float(_));
        let head = if shares_embedding {
            0
        } else {
            self.lm_head.weight_bytes()
        };
        tensor_bytes(&self.embed_tokens) + layers + tensor_bytes(&self.norm.weight) + head
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_config() -> Config {
        Config {
            hidden_size: 16,
            intermediate_size: 24,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 4,
            vocab_size: 50,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 32,
            tie_word_embeddings: true,
            rope_interleaved: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
        }
    }

    fn random_model(cfg: &Config) -> Llama {
        Llama::random(cfg, DType::F32, &Device::Cpu, 7).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn the_cached_path_equals_the_differentiable_path_at_every_position() {
        for interleaved in [false, true] {
            let mut cfg = tiny_config();
            cfg.rope_interleaved = interleaved;
            let model = random_model(&cfg);
            let seqs: [&[u32]; 2] = [&[1, 5, 7, 9, 11], &[1, 3]];
            let mut a = KvCache::new(&model, 8).unwrap();
            let mut b = KvCache::new(&model, 8).unwrap();
            let cached = model
                .forward(&seqs, &mut [&mut a, &mut b], &LogitsAt::All)
                .unwrap();
            let plain = model.forward_uncached(&seqs, &LogitsAt::All).unwrap();
            assert_eq!(cached.dims(), &[7, 50]);
            assert!(max_abs_diff(&cached, &plain) < 1e-5);
        }
    }

    #[test]
    fn long_prompts_in_blocks_and_groups_equal_the_differentiable_path() {
        // 700 queries span several attention blocks; 1,350 tokens exceed one packed pass.
        let cfg = Config {
            max_position_embeddings: 1024,
            ..tiny_config()
        };
        let model = random_model(&cfg);
        let prompts: Vec<Vec<u32>> = [700usize, 450, 200]
            .iter()
            .enumerate()
            .map(|(s, &len)| prompt(len, s))
            .collect();
        let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let mut caches: Vec<KvCache> = (0..3).map(|_| KvCache::new(&model, 720).unwrap()).collect();
        let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
        let cached = model.forward(&seqs, &mut refs, &LogitsAt::Last).unwrap();
        let plain = model.forward_uncached(&seqs, &LogitsAt::Last).unwrap();
        assert_eq!(cached.dims(), &[3, 50]);
        assert!(max_abs_diff(&cached, &plain) < 1e-4);
        let lens: Vec<usize> = caches.iter().map(KvCache::len).collect();
        assert_eq!(lens, [700, 450, 200]);
    }

    #[test]
    fn chosen_rows_and_all_rows_in_groups_equal_the_differentiable_path() {
        let cfg = Config {
            max_position_embeddings: 1024,
            ..tiny_config()
        };
        let model = random_model(&cfg);
        // More tokens than one packed pass: the prompts run in groups.
        let prompts: Vec<Vec<u32>> = [700usize, 450, 200]
            .iter()
            .map(|&len| (0..len).map(|i| 3 + (i % 45) as u32).collect())
            .collect();
        let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let plain = model.forward_uncached(&seqs, &LogitsAt::All).unwrap();
        // Out of batch order, a row twice; then rows of the second group only.
        for rows in [vec![1349, 3, 699, 1000, 3], vec![1200, 800]] {
            let mut caches: Vec<KvCache> =
                (0..3).map(|_| KvCache::new(&model, 700).unwrap()).collect();
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            let at = LogitsAt::Rows(rows.clone());
            let cached = model.forward(&seqs, &mut refs, &at).unwrap();
            let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
            let expected = plain
                .index_select(&Tensor::new(index.as_slice(), &Device::Cpu).unwrap(), 0)
                .unwrap();
            assert_eq!(cached.dims(), &[rows.len(), 50]);
            assert!(max_abs_diff(&cached, &expected) < 1e-4);
            let lens: Vec<usize> = caches.iter().map(KvCache::len).collect();
            assert_eq!(lens, [700, 450, 200], "every group fills its caches");
        }
        let mut caches: Vec<KvCache> = (0..3).map(|_| KvCache::new(&model, 700).unwrap()).collect();
        let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
        let all = model.forward(&seqs, &mut refs, &LogitsAt::All).unwrap();
        assert!(max_abs_diff(&all, &plain) < 1e-4);
        let mut caches: Vec<KvCache> = (0..3).map(|_| KvCache::new(&model, 700).unwrap()).collect();
        let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
        assert!(model
            .forward(&seqs, &mut refs, &LogitsAt::Rows(vec![1350]))
            .is_err());
    }

    #[test]
    fn decoding_token_by_token_equals_one_prefill() {
        let model = random_model(&tiny_config());
        let seq: &[u32] = &[1, 5, 7, 9, 11];
        let full = model.forward_uncached(&[seq], &LogitsAt::Last).unwrap();
        let mut cache = KvCache::new(&model, 8).unwrap();
        model
            .forward(&[&seq[..3]], &mut [&mut cache], &LogitsAt::Last)
            .unwrap();
        model
            .forward(&[&seq[3..4]], &mut [&mut cache], &LogitsAt::Last)
            .unwrap();
        let last = model
            .forward(&[&seq[4..]], &mut [&mut cache], &LogitsAt::Last)
            .unwrap();
        assert_eq!(cache.len(), 5);
        assert!(max_abs_diff(&full, &last) < 1e-5);
    }

    #[test]
    fn a_full_cache_is_an_error_not_a_panic() {
        let model = random_model(&tiny_config());
        let mut cache = KvCache::new(&model, 2).unwrap();
        let err = model.forward(&[&[1, 2, 3]], &mut [&mut cache], &LogitsAt::Last);
        assert!(err.is_err());
    }

    #[test]
    fn bf16_compute_stays_close_to_f32() {
        let cfg = tiny_config();
        let model = random_model(&cfg);
        // The same seed gives the same weights, rounded to bf16.
        let bf16 = Llama::random(&cfg, DType::BF16, &Device::Cpu, 7).unwrap();
        let seqs: [&[u32]; 1] = [&[1, 5, 7, 9]];
        let mut c32 = KvCache::new(&model, 8).unwrap();
        let mut c16 = KvCache::new(&bf16, 8).unwrap();
        let a = model
            .forward(&seqs, &mut [&mut c32], &LogitsAt::All)
            .unwrap();
        let b = bf16
            .forward(&seqs, &mut [&mut c16], &LogitsAt::All)
            .unwrap();
        assert_eq!(b.dtype(), DType::F32);
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 0.1, "{diff}");
    }

    #[test]
    fn quantized_projections_stay_close_to_float() {
        let cfg = Config {
            hidden_size: 64,
            intermediate_size: 64,
            head_dim: 16,
            ..tiny_config()
        };
        let model = random_model(&cfg);
        let mut q8 = model.clone();
        q8.quantize(GgmlDType::Q8_0).unwrap();
        let seqs: [&[u32]; 1] = [&[1, 5, 7, 9]];
        let a = model.forward_uncached(&seqs, &LogitsAt::All).unwrap();
        let b = q8.forward_uncached(&seqs, &LogitsAt::All).unwrap();
        let diff = max_abs_diff(&a, &b);
        let scale = max_abs_diff(&a, &a.zeros_like().unwrap());
        // 8-bit weights and activations: about 1% of the logit range.
        assert!(diff < 0.02 * scale, "{diff} of {scale}");
    }

    /// A Q8_0 model of 64-wide layers, and the same model with its layer projections
    /// dequantized to float (the head stays Q8_0).
    fn q8_and_dequantized_layers(kernel: Q8Kernel) -> (Llama, Llama) {
        let cfg = Config {
            hidden_size: 64,
            intermediate_size: 64,
            head_dim: 16,
            max_position_embeddings: 512,
            ..tiny_config()
        };
        let mut q8 = random_model(&cfg);
        q8.quantize_with(GgmlDType::Q8_0, kernel).unwrap();
        let mut dense = q8.clone();
        for layer in &mut dense.layers {
            for linear in layer.linears_mut() {
                let Linear::Q8(q) = &*linear else {
                    panic!("a projection was not quantized to the engine's Q8_0");
                };
                let w = Tensor::from_vec(q.dequantize(), (q.rows(), q.cols()), &Device::Cpu);
                *linear = Linear::Float(w.unwrap());
            }
        }
        (q8, dense)
    }

    fn prompt(len: usize, seed: usize) -> Vec<u32> {
        (0..len)
            .map(|i| 3 + ((i * 7 + seed * 13) % 45) as u32)
            .collect()
    }

    fn last_logits(model: &Llama, prompts: &[Vec<u32>]) -> Tensor {
        let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let mut caches: Vec<KvCache> = prompts
            .iter()
            .map(|p| KvCache::new(model, p.len()).unwrap())
            .collect();
        let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
        model.forward(&seqs, &mut refs, &LogitsAt::Last).unwrap()
    }

    #[test]
    fn q8_prompts_of_many_tokens_run_on_dequantized_weights_without_dot_products() {
        let (q8, dense) = q8_and_dequantized_layers(Q8Kernel::Portable);
        let long = vec![prompt(Q8_DENSE_MIN_TOKENS, 1)];
        let short = vec![prompt(Q8_DENSE_MIN_TOKENS - 1, 2)];
        // A long prompt computes its layers as the float model with the dequantized weights.
        let diff = max_abs_diff(&last_logits(&q8, &long), &last_logits(&dense, &long));
        assert!(diff < 1e-5, "{diff}");
        // A short one keeps the 8-bit activations, so it differs from the float layers.
        let diff = max_abs_diff(&last_logits(&q8, &short), &last_logits(&dense, &short));
        assert!(diff > 1e-4, "{diff}");
        // A kernel with 8-bit dot products keeps them for long prompts too.
        if crate::q8::Kernel::best().has_dot_products() {
            let (q8, dense) = q8_and_dequantized_layers(Q8Kernel::Engine);
            let diff = max_abs_diff(&last_logits(&q8, &long), &last_logits(&dense, &long));
            assert!(diff > 1e-4, "{diff}");
        }
    }

    #[test]
    fn q8_paths_are_chosen_per_sequence_not_per_batch() {
        let (q8, _) = q8_and_dequantized_layers(Q8Kernel::Engine);
        let prompts = vec![
            prompt(3, 1),
            prompt(Q8_DENSE_MIN_TOKENS + 20, 2),
            prompt(40, 3),
            prompt(Q8_DENSE_MIN_TOKENS, 4),
            prompt(1, 5),
        ];
        let batched = last_logits(&q8, &prompts);
        for (i, p) in prompts.iter().enumerate() {
            let alone = last_logits(&q8, std::slice::from_ref(p));
            let row = batched.narrow(0, i, 1).unwrap();
            assert_eq!(
                row.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "sequence {i}"
            );
        }
    }

    #[test]
    fn decoding_by_matrix_products_as_on_a_gpu_equals_the_fused_cpu_kernel() {
        // A CUDA device (or bf16/f16) decodes through `attend_matmul` with the causal offset;
        // the CPU in f32 through candle's fused kernel. From the same cache they must agree,
        // whatever the number of new queries below the GEMM threshold.
        let cfg = tiny_config();
        let model = random_model(&cfg);
        let attn = &model.layers[0].self_attn;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let lk = 12;
        let k = Tensor::randn(
            0f32,
            1.0,
            (lk, cfg.num_kv_heads, cfg.head_dim),
            &Device::Cpu,
        )
        .unwrap();
        let v = Tensor::randn(
            0f32,
            1.0,
            (lk, cfg.num_kv_heads, cfg.head_dim),
            &Device::Cpu,
        )
        .unwrap();
        for lq in [1, 2, 5, GEMM_ATTENTION_MIN_QUERIES - 4] {
            let q =
                Tensor::randn(0f32, 1.0, (lq, cfg.num_heads, cfg.head_dim), &Device::Cpu).unwrap();
            let fused = attn.attend_cached(&q, &k, &v, scale).unwrap();
            let gemm = attn.attend_matmul(&q, &k, &v, scale, false).unwrap();
            assert_eq!(fused.dims(), gemm.dims());
            let diff = max_abs_diff(&fused, &gemm);
            assert!(diff < 1e-5, "{lq} queries: {diff}");
        }
    }
}
