//! Self-attention over packed batches, with rotary position embeddings.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::{CResult, KvCache, Linear, PackedBatch, Quantization};
use crate::config::Config;

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
    pub(super) fn apply(
        &self,
        x: &Tensor,
        positions: &Tensor,
        differentiable: bool,
    ) -> CResult<Tensor> {
        let cos = self.cos.index_select(positions, 0)?;
        let sin = self.sin.index_select(positions, 0)?;
        let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32;
        match (self.interleaved, differentiable) {
            // The fused kernel gives `rope_thd`'s bits, its rows in parallel: candle's CPU
            // kernel splits the work by sequence only, so a prefill ran on one thread.
            (false, _) if cpu_f32 => crate::fused::rope(x, &cos, &sin),
            // `rope_thd` takes the token-major layout directly: no transposes.
            (false, false) => {
                candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0)?.contiguous()?, &cos, &sin)?
                    .squeeze(0)
            }
            (false, true) => crate::fused::rope(x, &cos, &sin),
            (true, _) => {
                // The interleaved kernels want [batch, heads, tokens, dim].
                let xt = x.transpose(0, 1)?.contiguous()?.unsqueeze(0)?;
                let y = if differentiable {
                    candle_nn::rotary_emb::rope_i_slow(&xt, &cos, &sin)?
                } else {
                    candle_nn::rotary_emb::rope_i(&xt, &cos, &sin)?
                };
                y.squeeze(0)?.transpose(0, 1)?.contiguous()
            }
        }
    }
}

/// From this many new queries of one sequence, attention runs as matrix products.
pub(super) const GEMM_ATTENTION_MIN_QUERIES: usize = 16;
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
        let linear = |module, shape| Linear::load_module(vb, module, shape, quantization);
        Ok(Attention {
            q_proj: linear("q_proj", (q, h))?,
            k_proj: linear("k_proj", (kv, h))?,
            v_proj: linear("v_proj", (kv, h))?,
            o_proj: linear("o_proj", (h, q))?,
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

    pub(super) fn forward(
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

        let y = match caches {
            Some((caches, layer)) => {
                let mut outputs = Vec::with_capacity(batch.lens.len());
                let mut offset = 0;
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
                Tensor::cat(&outputs, 0)?
            }
            None => crate::fused::packed_causal_attention(&q, &k, &v, &batch.lens, scale)?,
        };
        let y = y.reshape((tokens, self.num_heads * self.head_dim))?;
        self.o_proj.forward_packed(&y, batch)
    }

    /// Attention of one sequence's new queries over its cache. Many queries (prefill) go
    /// through matrix products, a block of queries at a time, so that the score matrix stays
    /// small; a few queries (decoding) use the fused CPU kernel when it applies (f32 on CPU:
    /// online softmax, no score matrix), whose per-pair dot products are slower than a GEMM
    /// but need no buffers. Elsewhere (a CUDA device, or bf16/f16) decoding takes the GEMM
    /// path too: candle's fused varlen kernel is CPU-only, and on a GPU the products are
    /// cuBLAS calls.
    pub(super) fn attend_cached(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
    ) -> CResult<Tensor> {
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
        self.attend_matmul(q, k, v, scale)
    }

    /// Attention of one sequence by matrix products: `q` `[lq, heads, dim]` over `k`, `v`
    /// `[lk, kv_heads, dim]`, the queries being the last `lq` of the `lk` positions. The causal
    /// mask is only this sequence's `[lq, lk]`.
    pub(super) fn attend_matmul(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
    ) -> CResult<Tensor> {
        let queries = q.dim(0)?;
        let [q, k, v] = [q, k, v].map(|x| crate::fused::stack_heads(x, self.num_kv_heads));
        let y = crate::fused::causal_attention(&q?, &k?, &v?, scale, queries)?;
        crate::fused::unstack_heads(&y, self.num_heads)
    }
}
