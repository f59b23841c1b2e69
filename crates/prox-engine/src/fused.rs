//! Fused float32 CPU operations with backward passes, for the differentiable forward pass
//! (training and log-likelihoods): causal attention and its softmax, RMS norm, the rotary
//! embedding, the SwiGLU of the MLP, and the log probability of each row's target.
//!
//! candle's composite forms of these allocate and traverse a tensor for every elementary
//! step, forward and backward (a softmax alone is six passes forward and as many backward, plus
//! a zero-filled gradient and an addition per node), and its fused kernels have no backward
//! pass. On the CPU these passes, not the matrix products, took most of a fine-tuning step.
//! Each operation here is one node of the graph, one pass forward and one or two backward; on
//! other devices and dtypes each function falls back to the composite form.
//!
//! The forward passes give the composite forms' bits (the same roundings, in the same order),
//! so inference and log-likelihoods are unchanged, and so are the cached path's prefill and
//! SwiGLU, which use them too; the backward passes agree to rounding. Every reduction runs
//! within one row (or, for RMS norm's scale gradient, over rows in a fixed order), so the bits
//! do not depend on the number of threads.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use candle_core::cpu::kernels::VecOps;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

use crate::exp::exp_in_place;

/// Causal attention of packed sequences: `q` `[tokens, heads, dim]`, `k` and `v`
/// `[tokens, kv_heads, dim]`, the tokens of each sequence (`lens`, in order) attending to that
/// sequence's tokens up to their own; returns `[tokens, heads, dim]`. The softmax is taken in
/// f32 whatever the dtype.
///
/// On the CPU in f32 it is one node of the autograd graph. Per sequence, the heads' layouts,
/// the score and probability matrices (the largest tensors of a training step) never become
/// nodes, each of which candle's backward pass would give a zero-filled gradient and an
/// addition of its size. The probabilities are kept for the backward pass.
pub fn packed_causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lens: &[usize],
    scale: f64,
) -> Result<Tensor> {
    let (tokens, heads, _) = q.dims3()?;
    let kv_heads = k.dim(1)?;
    if lens.iter().sum::<usize>() != tokens || kv_heads == 0 || heads % kv_heads != 0 {
        candle_core::bail!(
            "packed attention: sequences of {lens:?} tokens over q {:?}, k {:?}",
            q.dims(),
            k.dims()
        );
    }
    if is_cpu_f32(q) && is_cpu_f32(k) && is_cpu_f32(v) {
        let op = PackedAttention {
            lens: lens.to_vec(),
            scale,
            kv_heads,
            probs: Mutex::new(Vec::new()),
        };
        return q
            .contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, Fused(op));
    }
    let [qs, ks, vs] = [q, k, v].map(|x| stacked_per_sequence(x, lens, kv_heads));
    let (qs, ks, vs) = (qs?, ks?, vs?);
    let mut outputs = Vec::with_capacity(lens.len());
    for (((q, k), v), &len) in qs.iter().zip(&ks).zip(&vs).zip(lens) {
        outputs.push(unstack_heads(
            &causal_attention(q, k, v, scale, len)?,
            heads,
        )?);
    }
    Tensor::cat(&outputs, 0)
}

/// `[len, heads, dim]` → `[kv_heads, heads / kv_heads · len, dim]`: the heads that share a
/// key/value head stacked, so that one matrix product per key/value head serves them.
pub fn stack_heads(x: &Tensor, kv_heads: usize) -> Result<Tensor> {
    let (len, heads, dim) = x.dims3()?;
    x.transpose(0, 1)?
        .contiguous()?
        .reshape((kv_heads, heads / kv_heads * len, dim))
}

/// The inverse of [`stack_heads`]: `[kv_heads, rows, dim]` → `[len, heads, dim]`.
pub fn unstack_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (kv_heads, rows, dim) = x.dims3()?;
    x.reshape((heads, kv_heads * rows / heads, dim))?
        .transpose(0, 1)
}

/// Causal attention of one sequence's stacked heads ([`stack_heads`]) as separate operations
/// (the cached path's prefill, and [`packed_causal_attention`] off the CPU):
/// `softmax(q·kᵀ · scale) · v` with the mask of [`causal_softmax`], `q` `[kv_heads, rows, dim]`
/// (rows = heads per kv head · `queries`), `k` and `v` `[kv_heads, keys, dim]`; returns
/// `[kv_heads, rows, dim]`.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    queries: usize,
) -> Result<Tensor> {
    let scores = match crate::float_gemm::batched_product(q, k, true)? {
        Some(scores) => scores,
        None => q.matmul(&k.t()?)?.to_dtype(DType::F32)?,
    };
    let probs = causal_softmax(&scores, scale, queries)?;
    match crate::float_gemm::batched_product(&probs, v, false)? {
        Some(y) => Ok(y),
        None => probs.to_dtype(v.dtype())?.matmul(v),
    }
}

/// `softmax(scores · scale)` over the last dimension with a causal mask, for the stacked
/// heads of [`crate::Attention`]: `scores` is `[.., rows, keys]`, row `r` belongs to query
/// `r % queries`, and query `i` sees the keys up to `i + offset` (the queries being the last
/// `queries` of the `keys` positions, `offset = keys - queries`). Masked entries are zero.
pub fn causal_softmax(scores: &Tensor, scale: f64, queries: usize) -> Result<Tensor> {
    let keys = scores.dim(D::Minus1)?;
    let op = CausalSoftmax::new(scale, queries, keys)?;
    if is_cpu_f32(scores) {
        return scores.contiguous()?.apply_op1(Fused(op));
    }
    let scaled = (scores * scale)?;
    // One query (a decoding step) is the last position: it sees every key.
    let scores = match queries {
        1 => scaled,
        _ => op.masked(&scaled)?,
    };
    if scores.track_op() {
        candle_nn::ops::softmax(&scores, D::Minus1)
    } else {
        // The fused forward kernel, on the devices candle has it for.
        candle_nn::ops::softmax_last_dim(&scores)
    }
}

/// Root-mean-square normalisation of the last dimension with a learned scale `alpha`:
/// `x / sqrt(mean(x²) + eps) · alpha`.
pub fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f32) -> Result<Tensor> {
    if is_cpu_f32(x) && is_cpu_f32(alpha) && x.dim(D::Minus1)? == alpha.dims1()? {
        return x
            .contiguous()?
            .apply_op2(&alpha.contiguous()?, Fused(RmsNorm { eps }));
    }
    candle_nn::ops::rms_norm_slow(x, alpha, eps)
}

/// `silu(gate) · up`, the SwiGLU of the MLP, elementwise.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(gate) && is_cpu_f32(up) && gate.shape() == up.shape() {
        return gate
            .contiguous()?
            .apply_op2(&up.contiguous()?, Fused(SwiGlu));
    }
    gate.silu()? * up
}

/// The rotary embedding of `x` `[tokens, heads, dim]` (halves rotated, not interleaved), each
/// token by its own row of `cos` and `sin` `[tokens, dim / 2]`: candle's `rope_slow` in the
/// token-major layout, without its transposes.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (tokens, _, dim) = x.dims3()?;
    if cos.dims() != [tokens, dim / 2] || sin.dims() != cos.dims() || dim % 2 != 0 {
        candle_core::bail!(
            "rope: x {:?} against cos {:?} and sin {:?}",
            x.dims(),
            cos.dims(),
            sin.dims()
        );
    }
    if is_cpu_f32(x) && is_cpu_f32(cos) && is_cpu_f32(sin) {
        return x.contiguous()?.apply_op3(
            &cos.contiguous()?,
            &sin.contiguous()?,
            Fused(Rope { inverse: false }),
        );
    }
    let xt = x.transpose(0, 1)?.contiguous()?.unsqueeze(0)?;
    candle_nn::rotary_emb::rope_slow(&xt, cos, sin)?
        .squeeze(0)?
        .transpose(0, 1)?
        .contiguous()
}

/// `log_softmax(logits)[r, targets[r]]` for each row of `logits` `[rows, vocab]`: the log
/// probability of every row's target, `[rows]`.
pub fn target_log_probs(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (rows, vocab) = logits.dims2()?;
    if targets.len() != rows {
        candle_core::bail!("{} targets for {rows} rows of logits", targets.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("target {t} is outside the vocabulary of {vocab}");
    }
    if is_cpu_f32(logits) {
        return logits.contiguous()?.apply_op1(Fused(TargetLogProbs {
            targets: Arc::new(targets.to_vec()),
        }));
    }
    let targets = Tensor::from_slice(targets, (rows, 1), logits.device())?;
    candle_nn::ops::log_softmax(logits, D::Minus1)?
        .gather(&targets, 1)?
        .squeeze(1)
}

fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The contiguous f32 values of a CPU operand.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let all = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => candle_core::bail!("a fused operation needs a contiguous operand"),
    }
}

/// The sum of `a[i] · b[i]`, in eight lanes so that it vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The sum of a row as candle's CPU reductions (`sum_keepdim`, its softmax) add it, so that
/// the fused passes round as the composite ones do.
#[allow(unsafe_code)]
fn candle_sum(x: &[f32]) -> f32 {
    let mut total = 0f32;
    // SAFETY: `x` holds `x.len()` values and `total` is a valid place for the result.
    unsafe { <f32 as VecOps>::vec_reduce_sum(x.as_ptr(), &mut total, x.len()) };
    total
}

/// The maximum of a row (minus infinity for an empty one).
fn max(x: &[f32]) -> f32 {
    x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// What one CPU operation computes on `N` contiguous float32 operands (the operations here,
/// and [`crate::float_rows`]' few-row product); [`Fused`] gives it candle's trait for `N`
/// operands, so that no operation repeats candle's signatures and operand checks.
pub(crate) trait Kernel<const N: usize>: Send + Sync + 'static {
    const NAME: &'static str;

    /// The result of the operands, each given as its values and layout.
    fn forward(&self, operands: [(&[f32], &Layout); N]) -> Result<(Vec<f32>, Shape)>;

    /// The operands' gradients from the result's (contiguous) gradient. Operations used only
    /// inside another's backward pass have none.
    fn backward(
        &self,
        _operands: [&Tensor; N],
        _result: &Tensor,
        _grad: &Tensor,
    ) -> Result<[Option<Tensor>; N]> {
        Err(candle_core::Error::BackwardNotSupported { op: Self::NAME })
    }
}

/// A [`Kernel`] as a candle custom operation.
pub(crate) struct Fused<K>(pub K);

impl<K> Fused<K> {
    fn run<const N: usize>(
        &self,
        operands: [(&CpuStorage, &Layout); N],
    ) -> Result<(CpuStorage, Shape)>
    where
        K: Kernel<N>,
    {
        let operands: Vec<(&[f32], &Layout)> = operands
            .iter()
            .map(|&(storage, layout)| Ok((values(storage, layout)?, layout)))
            .collect::<Result<_>>()?;
        let operands = <[_; N]>::try_from(operands)
            .map_err(|_| candle_core::Error::Msg(format!("{}: not {N} operands", K::NAME)))?;
        let (out, shape) = self.0.forward(operands)?;
        Ok((CpuStorage::F32(out), shape))
    }
}

impl<K: Kernel<1>> CustomOp1 for Fused<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run([(s1, l1)])
    }

    fn bwd(&self, a1: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let [g1] = self.0.backward([a1], res, &grad.contiguous()?)?;
        Ok(g1)
    }
}

impl<K: Kernel<2>> CustomOp2 for Fused<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run([(s1, l1), (s2, l2)])
    }

    fn bwd(
        &self,
        a1: &Tensor,
        a2: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let [g1, g2] = self.0.backward([a1, a2], res, &grad.contiguous()?)?;
        Ok((g1, g2))
    }
}

impl<K: Kernel<3>> CustomOp3 for Fused<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run([(s1, l1), (s2, l2), (s3, l3)])
    }

    fn bwd(
        &self,
        a1: &Tensor,
        a2: &Tensor,
        a3: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [g1, g2, g3] = self.0.backward([a1, a2, a3], res, &grad.contiguous()?)?;
        Ok((g1, g2, g3))
    }
}

/// The last dimension of a layout.
fn last_dim(layout: &Layout) -> usize {
    layout.shape().dims().last().copied().unwrap_or(1)
}

/// Results of fewer values than this are written on the calling thread: waking the pool
/// cost more than it saved on a decoding step's small results (the rotary embedding of 8
/// tokens in parallel made Q8_0 decoding of 8 sequences 10% slower on the Xeon).
const PARALLEL_MIN_VALUES: usize = 1 << 15;

/// A result of `len` values written a row of `width` at a time, rows in parallel (from
/// [`PARALLEL_MIN_VALUES`] values): `row(r, out)` writes row `r` (zero-filled before).
///
/// Each row is zeroed by the thread that then writes it, while it is in that core's cache,
/// not the whole result up front by one thread: that pass over fresh memory cost about 5% of
/// prefill.
#[allow(unsafe_code)]
fn by_rows(len: usize, width: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    let write = |(r, out): (usize, &mut [MaybeUninit<f32>])| {
        for value in out.iter_mut() {
            value.write(0.0);
        }
        // SAFETY: every element of `out` was just initialized, and `MaybeUninit<f32>` has
        // the layout of `f32`.
        let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
        row(r, out)
    };
    let rows = &mut out.spare_capacity_mut()[..len];
    match len < PARALLEL_MIN_VALUES {
        true => rows.chunks_mut(width).enumerate().for_each(write),
        false => rows.par_chunks_mut(width).enumerate().for_each(write),
    }
    // SAFETY: the rows cover the first `len` elements, each initialized above.
    unsafe { out.set_len(len) };
    out
}

/// Row `r` of a matrix of rows of `width`.
fn row(values: &[f32], width: usize, r: usize) -> &[f32] {
    &values[r * width..(r + 1) * width]
}

#[derive(Debug, Clone, Copy)]
struct CausalSoftmax {
    scale: f32,
    queries: usize,
    offset: usize,
}

impl CausalSoftmax {
    /// The softmax of `queries` queries over `keys` keys; refuses an impossible pair.
    fn new(scale: f64, queries: usize, keys: usize) -> Result<Self> {
        if queries == 0 || queries > keys {
            candle_core::bail!("causal softmax: {queries} queries over {keys} keys");
        }
        Ok(CausalSoftmax {
            scale: scale as f32,
            queries,
            offset: keys - queries,
        })
    }

    /// How many keys row `r` sees.
    fn visible(&self, r: usize) -> usize {
        r % self.queries + self.offset + 1
    }

    /// The composite form's masking: `scaled` (`[.., rows, keys]`) where seen, -inf elsewhere.
    /// The mask is made on `scaled`'s device from two short ranges: built on the host, a
    /// GPU's prefill uploaded a mask of every score, per block, per layer, per sequence.
    fn masked(&self, scaled: &Tensor) -> Result<Tensor> {
        let (rows, keys) = scaled
            .dims()
            .split_last()
            .and_then(|(&keys, rest)| rest.last().map(|&rows| (rows, keys)))
            .ok_or_else(|| candle_core::Error::Msg("causal softmax: scores of rank < 2".into()))?;
        let device = scaled.device();
        let key = Tensor::arange(0u32, keys as u32, device)?.reshape((1, keys))?;
        // Row r sees `visible(r)` keys: the row's query is r % queries.
        let first = (self.offset + 1) as u32;
        let visible = Tensor::arange(first, first + self.queries as u32, device)?
            .reshape((1, self.queries))?
            .broadcast_as((rows / self.queries, self.queries))?
            .reshape((rows, 1))?;
        let seen = key.broadcast_lt(&visible)?.broadcast_as(scaled.shape())?;
        let hidden = Tensor::new(f32::NEG_INFINITY, device)?
            .to_dtype(scaled.dtype())?
            .broadcast_as(scaled.shape())?;
        seen.where_cond(scaled, &hidden)
    }
}

impl Kernel<1> for CausalSoftmax {
    const NAME: &'static str = "causal-softmax";

    fn forward(&self, [(scores, layout)]: [(&[f32], &Layout); 1]) -> Result<(Vec<f32>, Shape)> {
        let keys = last_dim(layout);
        let probs = by_rows(scores.len(), keys, |r, p| {
            let s = row(scores, keys, r);
            let n = self.visible(r);
            let max = s[..n]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &x| m.max(x * self.scale));
            for (p, &x) in p.iter_mut().zip(&s[..n]) {
                *p = x * self.scale - max;
            }
            exp_in_place(&mut p[..n]);
            // Over the whole row, masked zeros included, as the masked softmax adds.
            let total = candle_sum(p);
            for p in &mut p[..n] {
                *p /= total;
            }
        });
        Ok((probs, layout.shape().clone()))
    }

    fn backward(
        &self,
        _scores: [&Tensor; 1],
        probs: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 1]> {
        Ok([Some(
            probs.apply_op2_no_bwd(grad, &Fused(CausalSoftmaxGrad(*self)))?,
        )])
    }
}

/// The backward pass of [`CausalSoftmax`] from `(probs, grad)`: `scale · p · (g - Σ p·g)` per
/// row.
struct CausalSoftmaxGrad(CausalSoftmax);

impl Kernel<2> for CausalSoftmaxGrad {
    const NAME: &'static str = "causal-softmax-grad";

    fn forward(
        &self,
        [(probs, layout), (grad, _)]: [(&[f32], &Layout); 2],
    ) -> Result<(Vec<f32>, Shape)> {
        let keys = last_dim(layout);
        let out = by_rows(probs.len(), keys, |r, o| {
            let n = self.0.visible(r);
            let (o, p, g) = (
                &mut o[..n],
                &row(probs, keys, r)[..n],
                &row(grad, keys, r)[..n],
            );
            let inner = dot(p, g);
            for ((o, &p), &g) in o.iter_mut().zip(p).zip(g) {
                *o = self.0.scale * p * (g - inner);
            }
        });
        Ok((out, layout.shape().clone()))
    }
}

struct PackedAttention {
    lens: Vec<usize>,
    scale: f64,
    kv_heads: usize,
    /// The forward pass's probabilities, a tensor per sequence, taken by the backward pass.
    probs: Mutex<Vec<Tensor>>,
}

/// Each sequence's part of a packed `[tokens, heads, dim]` tensor (sequences of `lens`
/// tokens, in order), its heads stacked ([`stack_heads`]).
fn stacked_per_sequence(x: &Tensor, lens: &[usize], kv_heads: usize) -> Result<Vec<Tensor>> {
    let mut offset = 0;
    let mut parts = Vec::with_capacity(lens.len());
    for &len in lens {
        parts.push(stack_heads(&x.narrow(0, offset, len)?, kv_heads)?);
        offset += len;
    }
    Ok(parts)
}

impl PackedAttention {
    fn stacked(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        stacked_per_sequence(x, &self.lens, self.kv_heads)
    }

    fn softmax(&self, queries: usize) -> Result<CausalSoftmax> {
        CausalSoftmax::new(self.scale, queries, queries)
    }

    /// A sequence's probabilities, outside the autograd graph.
    fn probs(&self, q: &Tensor, k: &Tensor, len: usize) -> Result<Tensor> {
        q.matmul(&k.t()?)?
            .apply_op1_no_bwd(&Fused(self.softmax(len)?))
    }

    fn kept_probs(&self) -> Result<std::sync::MutexGuard<'_, Vec<Tensor>>> {
        self.probs.lock().map_err(|_| {
            candle_core::Error::Msg(
                "packed attention: a panic poisoned the kept probabilities".into(),
            )
        })
    }
}

/// A CPU operand as a tensor of its own (a copy: the operands are the small `q`, `k`, `v`).
fn operand((values, layout): (&[f32], &Layout)) -> Result<Tensor> {
    Tensor::from_slice(values, layout.shape(), &candle_core::Device::Cpu)
}

impl Kernel<3> for PackedAttention {
    const NAME: &'static str = "packed-causal-attention";

    fn forward(&self, [q, k, v]: [(&[f32], &Layout); 3]) -> Result<(Vec<f32>, Shape)> {
        let (q, k, v) = (operand(q)?, operand(k)?, operand(v)?);
        let heads = q.dim(1)?;
        let (qs, ks, vs) = (self.stacked(&q)?, self.stacked(&k)?, self.stacked(&v)?);
        let mut outputs = Vec::with_capacity(self.lens.len());
        let mut kept = Vec::with_capacity(self.lens.len());
        for (((q, k), v), &len) in qs.iter().zip(&ks).zip(&vs).zip(&self.lens) {
            let probs = self.probs(q, k, len)?;
            outputs.push(unstack_heads(&probs.matmul(v)?, heads)?);
            kept.push(probs);
        }
        *self.kept_probs()? = kept;
        let out = Tensor::cat(&outputs, 0)?;
        Ok((out.flatten_all()?.to_vec1()?, out.shape().clone()))
    }

    fn backward(
        &self,
        [q, k, v]: [&Tensor; 3],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let heads = q.dim(1)?;
        let [qs, ks, vs, grads] = [q, k, v, grad].map(|x| self.stacked(&x.detach()));
        let (qs, ks, vs, grads) = (qs?, ks?, vs?, grads?);
        let mut kept = std::mem::take(&mut *self.kept_probs()?).into_iter();
        let mut per_sequence = [vec![], vec![], vec![]];
        for (i, &len) in self.lens.iter().enumerate() {
            let (q, k, v, g) = (&qs[i], &ks[i], &vs[i], &grads[i]);
            let probs = match kept.next() {
                Some(probs) => probs,
                None => self.probs(q, k, len)?,
            };
            let grad_v = probs.t()?.matmul(g)?;
            let grad_probs = g.matmul(&v.t()?)?;
            let softmax_grad = Fused(CausalSoftmaxGrad(self.softmax(len)?));
            let grad_scores = probs.apply_op2_no_bwd(&grad_probs, &softmax_grad)?;
            per_sequence[0].push(unstack_heads(&grad_scores.matmul(k)?, heads)?);
            per_sequence[1].push(unstack_heads(&grad_scores.t()?.matmul(q)?, self.kv_heads)?);
            per_sequence[2].push(unstack_heads(&grad_v, self.kv_heads)?);
        }
        let [q, k, v] = per_sequence.map(|grads| Tensor::cat(&grads, 0));
        Ok([Some(q?), Some(k?), Some(v?)])
    }
}

#[derive(Debug, Clone, Copy)]
struct RmsNorm {
    eps: f32,
}

impl RmsNorm {
    /// `sqrt(mean(x²) + eps)` of one row, rounded as candle's composite RMS norm rounds it
    /// (so that the forward pass gives its bits); `squares` is room for the row's squares.
    fn root_mean_square(&self, x: &[f32], squares: &mut Vec<f32>) -> f32 {
        squares.clear();
        squares.extend(x.iter().map(|v| v * v));
        let mean = candle_sum(squares) * (1.0 / x.len() as f64) as f32;
        (mean + self.eps).sqrt()
    }
}

impl Kernel<2> for RmsNorm {
    const NAME: &'static str = "rms-norm";

    fn forward(
        &self,
        [(x, layout), (alpha, _)]: [(&[f32], &Layout); 2],
    ) -> Result<(Vec<f32>, Shape)> {
        let n = alpha.len();
        let y = by_rows(x.len(), n, |r, y| {
            let x = row(x, n, r);
            let rms = self.root_mean_square(x, &mut Vec::with_capacity(n));
            for ((y, &x), &a) in y.iter_mut().zip(x).zip(alpha) {
                *y = x / rms * a;
            }
        });
        Ok((y, layout.shape().clone()))
    }

    fn backward(
        &self,
        [x, alpha]: [&Tensor; 2],
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 2]> {
        let grad_x = x.apply_op3_no_bwd(alpha, grad, &Fused(RmsNormInputGrad(*self)))?;
        let grad_alpha = x.apply_op2_no_bwd(grad, &Fused(RmsNormScaleGrad(*self)))?;
        Ok([Some(grad_x), Some(grad_alpha)])
    }
}

/// `∂/∂x` of RMS norm from `(x, alpha, grad)`: `(g·α)/σ - x · Σ(g·α·x) / (n σ³)` per row, `σ`
/// the row's RMS.
struct RmsNormInputGrad(RmsNorm);

impl Kernel<3> for RmsNormInputGrad {
    const NAME: &'static str = "rms-norm-input-grad";

    fn forward(
        &self,
        [(x, layout), (alpha, _), (grad, _)]: [(&[f32], &Layout); 3],
    ) -> Result<(Vec<f32>, Shape)> {
        let n = alpha.len();
        let out = by_rows(x.len(), n, |r, o| {
            let (x, g) = (row(x, n, r), row(grad, n, r));
            let rms = self.0.root_mean_square(x, &mut Vec::with_capacity(n));
            for ((o, &g), &a) in o.iter_mut().zip(g).zip(alpha) {
                *o = g * a;
            }
            let inner = dot(o, x) / (n as f32 * rms * rms * rms);
            for (o, &x) in o.iter_mut().zip(x) {
                *o = *o / rms - x * inner;
            }
        });
        Ok((out, layout.shape().clone()))
    }
}

/// `∂/∂α` of RMS norm from `(x, grad)`: `Σ_rows g · x / σ`, rows added in order.
struct RmsNormScaleGrad(RmsNorm);

impl Kernel<2> for RmsNormScaleGrad {
    const NAME: &'static str = "rms-norm-scale-grad";

    fn forward(
        &self,
        [(x, layout), (grad, _)]: [(&[f32], &Layout); 2],
    ) -> Result<(Vec<f32>, Shape)> {
        let n = last_dim(layout);
        let mut total = vec![0f32; n];
        let mut squares = Vec::with_capacity(n);
        for (x, g) in x.chunks(n).zip(grad.chunks(n)) {
            let rms = self.0.root_mean_square(x, &mut squares);
            for ((t, &x), &g) in total.iter_mut().zip(x).zip(g) {
                *t += g * (x / rms);
            }
        }
        Ok((total, Shape::from(n)))
    }
}

/// `f(exp(-g), [g, ..])` at each position of equally long slices, `g` being the first: the
/// SwiGLU's gate, whose exponentials are taken a block at a time ([`exp_in_place`]); blocks
/// in parallel.
fn with_gate_exp<const N: usize>(
    inputs: [&[f32]; N],
    f: impl Fn(f32, [f32; N]) -> f32 + Sync,
) -> Vec<f32> {
    const BLOCK: usize = 1 << 12;
    by_rows(inputs[0].len(), BLOCK, |block, out| {
        let start = block * BLOCK;
        for (o, &g) in out.iter_mut().zip(&inputs[0][start..]) {
            *o = -g;
        }
        exp_in_place(out);
        for (i, o) in out.iter_mut().enumerate() {
            *o = f(*o, inputs.map(|x| x[start + i]));
        }
    })
}

/// candle's `silu` (`x / (1 + exp(-x))`), to the bit, from `exp(-x)`.
fn silu(x: f32, exp_minus_x: f32) -> f32 {
    x / (1.0 + exp_minus_x)
}

struct SwiGlu;

impl Kernel<2> for SwiGlu {
    const NAME: &'static str = "swiglu";

    fn forward(
        &self,
        [(gate, layout), (up, _)]: [(&[f32], &Layout); 2],
    ) -> Result<(Vec<f32>, Shape)> {
        let out = with_gate_exp([gate, up], |e, [g, u]| silu(g, e) * u);
        Ok((out, layout.shape().clone()))
    }

    fn backward(
        &self,
        [gate, up]: [&Tensor; 2],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 2]> {
        let of = |wrt_gate| gate.apply_op3_no_bwd(up, grad, &Fused(SwiGluGrad { wrt_gate }));
        Ok([Some(of(true)?), Some(of(false)?)])
    }
}

/// A gradient of [`SwiGlu`] from `(gate, up, grad)`: `grad · up · silu'(gate)` with
/// `silu'(x) = σ(x) · (1 + x · (1 - σ(x)))`, or `grad · silu(gate)`.
struct SwiGluGrad {
    wrt_gate: bool,
}

impl Kernel<3> for SwiGluGrad {
    const NAME: &'static str = "swiglu-grad";

    fn forward(
        &self,
        [(gate, layout), (up, _), (grad, _)]: [(&[f32], &Layout); 3],
    ) -> Result<(Vec<f32>, Shape)> {
        let out = if self.wrt_gate {
            with_gate_exp([gate, up, grad], |e, [g, u, d]| {
                let sigmoid = 1.0 / (1.0 + e);
                d * u * (sigmoid * (1.0 + g * (1.0 - sigmoid)))
            })
        } else {
            with_gate_exp([gate, grad], |e, [g, d]| d * silu(g, e))
        };
        Ok((out, layout.shape().clone()))
    }
}

/// The rotation of [`rope`] from `(x, cos, sin)`; `inverse` rotates by minus the angle, which is
/// its gradient.
struct Rope {
    inverse: bool,
}

impl Kernel<3> for Rope {
    const NAME: &'static str = "rope";

    fn forward(
        &self,
        [(x, layout), (cos, angles), (sin, _)]: [(&[f32], &Layout); 3],
    ) -> Result<(Vec<f32>, Shape)> {
        let half = last_dim(angles);
        let per_token = x.len() / angles.shape().dims()[0];
        let y = by_rows(x.len(), per_token, |t, y| {
            let (x, cos, sin) = (row(x, per_token, t), row(cos, half, t), row(sin, half, t));
            for (y, x) in y.chunks_mut(2 * half).zip(x.chunks(2 * half)) {
                let (x1, x2) = x.split_at(half);
                let (y1, y2) = y.split_at_mut(half);
                for j in 0..half {
                    let (c, s) = (cos[j], if self.inverse { -sin[j] } else { sin[j] });
                    // As rope_slow: x · cos + rotate_half(x) · sin, rotate_half(x) = (-x2, x1).
                    y1[j] = x1[j] * c + -x2[j] * s;
                    y2[j] = x2[j] * c + x1[j] * s;
                }
            }
        });
        Ok((y, layout.shape().clone()))
    }

    fn backward(
        &self,
        [_x, cos, sin]: [&Tensor; 3],
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 3]> {
        let inverse = Rope {
            inverse: !self.inverse,
        };
        let grad_x = grad.apply_op3_no_bwd(cos, sin, &Fused(inverse))?;
        Ok([Some(grad_x), None, None])
    }
}

#[derive(Debug, Clone)]
struct TargetLogProbs {
    targets: Arc<Vec<u32>>,
}

/// `exp(x - max)` of a row into `out`; returns `max` and the sum of `out`.
fn exp_shifted(x: &[f32], out: &mut [f32]) -> (f32, f32) {
    let max = max(x);
    let out = &mut out[..x.len()];
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v - max;
    }
    exp_in_place(out);
    (max, candle_sum(out))
}

impl Kernel<1> for TargetLogProbs {
    const NAME: &'static str = "target-log-probs";

    fn forward(&self, [(logits, layout)]: [(&[f32], &Layout); 1]) -> Result<(Vec<f32>, Shape)> {
        let vocab = last_dim(layout);
        let picked: Vec<f32> = logits
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map_init(
                || vec![0f32; vocab],
                |exps, (row, &t)| {
                    let (max, sum) = exp_shifted(row, exps);
                    (row[t as usize] - max) - sum.ln()
                },
            )
            .collect();
        Ok((picked, Shape::from(self.targets.len())))
    }

    fn backward(
        &self,
        [logits]: [&Tensor; 1],
        _picked: &Tensor,
        grad: &Tensor,
    ) -> Result<[Option<Tensor>; 1]> {
        Ok([Some(logits.apply_op2_no_bwd(
            grad,
            &Fused(TargetLogProbsGrad(self.clone())),
        )?)])
    }
}

/// The backward pass of [`TargetLogProbs`] from `(logits, grad)`: `g_r · (1[j = t_r] -
/// softmax(x_r)_j)`, computed again from the logits with the composite's roundings. They
/// matter: AdamW turns the smallest differences in the output head's many tiny gradients into
/// a drift that the golden steps of prox-train see (other roundings of the same formula doubled
/// it).
struct TargetLogProbsGrad(TargetLogProbs);

impl Kernel<2> for TargetLogProbsGrad {
    const NAME: &'static str = "target-log-probs-grad";

    fn forward(
        &self,
        [(logits, layout), (grad, _)]: [(&[f32], &Layout); 2],
    ) -> Result<(Vec<f32>, Shape)> {
        let vocab = last_dim(layout);
        let out = by_rows(logits.len(), vocab, |r, o| {
            let x = row(logits, vocab, r);
            let t = self.0.targets[r] as usize;
            let (max, sum) = exp_shifted(x, o);
            let g = -grad[r] / sum;
            for o in o.iter_mut() {
                *o *= g;
            }
            o[t] += grad[r];
            // The composite's `x - max` passes `-Σ` of this row's gradient to the maximum;
            // zero but for rounding, and kept so that both round alike.
            let through_max = -candle_sum(o);
            for (o, &x) in o.iter_mut().zip(x) {
                if x == max {
                    *o += through_max;
                }
            }
        });
        Ok((out, layout.shape().clone()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// Deterministic values spread over about [-3, 3].
    pub(crate) fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| {
                (((i as u64 * 2654435761 + seed * 40503) % 10007) as f32 / 10007.0 - 0.5) * 6.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
        assert_eq!(got.dims(), want.dims(), "{what}");
        let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 2e-6 + 2e-5 * w.abs(),
                "{what}[{i}]: fused {g}, composite {w}"
            );
        }
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// The value and the gradient of `Σ f(x) · weights` with respect to each input.
    fn gradients(
        inputs: &[&Tensor],
        weights: &Tensor,
        f: impl Fn(&[Tensor]) -> Tensor,
    ) -> (Tensor, Vec<Tensor>) {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&tensors);
        let grads = (&y * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let grads = tensors
            .iter()
            .map(|t| grads.get(t).unwrap().clone())
            .collect();
        (y, grads)
    }

    #[test]
    fn causal_softmax_equals_the_masked_composite_forward_and_backward() {
        // Two kv heads of three stacked query heads, 4 queries over 7 keys (offset 3), and a
        // prefill of 5 over 5.
        for (shape, queries) in [([2, 12, 7], 4), ([1, 5, 5], 5), ([3, 2, 9], 1)] {
            let scores = tensor(&shape, 1);
            let weights = tensor(&shape, 2);
            let scale = 0.35;
            let (fused, fused_grad) = gradients(&[&scores], &weights, |x| {
                causal_softmax(&x[0], scale, queries).unwrap()
            });
            let op = CausalSoftmax::new(scale, queries, shape[2]).unwrap();
            let (composite, composite_grad) = gradients(&[&scores], &weights, |x| {
                let masked = op.masked(&(&x[0] * scale).unwrap()).unwrap();
                candle_nn::ops::softmax(&masked, D::Minus1).unwrap()
            });
            assert_close(&fused, &composite, "probabilities");
            // Forward, the bits of candle's fused softmax over the masked scores, which
            // prefill used before.
            let masked = op.masked(&(&scores * scale).unwrap()).unwrap();
            let last_dim = candle_nn::ops::softmax_last_dim(&masked).unwrap();
            assert_eq!(bits(&fused), bits(&last_dim), "probabilities");
            assert_close(&fused_grad[0], &composite_grad[0], "score gradient");
            // Row 0 of the first case sees keys 0..=3 only.
            let first = fused.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let visible = op.visible(0);
            assert!(first[visible..shape[2]].iter().all(|&p| p == 0.0));
            assert!((first[..visible].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn packed_attention_equals_attention_per_sequence_forward_and_backward() {
        // Sequences of 3 and 5 tokens, four heads over two key/value heads, head dim 4.
        let (lens, scale) = ([3, 5], 0.5);
        let q = tensor(&[8, 4, 4], 10);
        let k = tensor(&[8, 2, 4], 11);
        let v = tensor(&[8, 2, 4], 12);
        let weights = tensor(&[8, 4, 4], 13);
        let (fused, fused_grads) = gradients(&[&q, &k, &v], &weights, |t| {
            packed_causal_attention(&t[0], &t[1], &t[2], &lens, scale).unwrap()
        });
        let (composite, composite_grads) = gradients(&[&q, &k, &v], &weights, |t| {
            let mut outputs = vec![];
            for (offset, len) in [(0, 3), (3, 5)] {
                let [q, k, v] = [0, 1, 2]
                    .map(|i| stack_heads(&t[i].narrow(0, offset, len).unwrap(), 2).unwrap());
                let y = causal_attention(&q, &k, &v, scale, len).unwrap();
                outputs.push(unstack_heads(&y, 4).unwrap());
            }
            Tensor::cat(&outputs, 0).unwrap()
        });
        assert_eq!(bits(&fused), bits(&composite), "attention");
        for (i, name) in ["q", "k", "v"].iter().enumerate() {
            assert_close(&fused_grads[i], &composite_grads[i], name);
        }
        assert!(packed_causal_attention(&q, &k, &v, &[3, 4], scale).is_err());
    }

    #[test]
    fn rows_are_written_alike_on_the_calling_thread_and_in_parallel() {
        let width = 128;
        for len in [PARALLEL_MIN_VALUES - width, PARALLEL_MIN_VALUES + width] {
            let out = by_rows(len, width, |r, row| {
                for (i, value) in row.iter_mut().enumerate() {
                    assert_eq!(*value, 0.0, "row {r} starts zeroed");
                    *value = (r * width + i) as f32;
                }
            });
            assert_eq!(out.len(), len);
            assert!(
                out.iter().enumerate().all(|(i, &v)| v == i as f32),
                "{len} values"
            );
        }
    }

    #[test]
    fn swiglu_equals_silu_times_up_forward_and_backward() {
        // More values than one parallel block, so that blocks meet, and than
        // PARALLEL_MIN_VALUES, so that they are written in parallel.
        let (gate, up) = (tensor(&[5, 7000], 15), tensor(&[5, 7000], 16));
        let weights = tensor(&[5, 7000], 17);
        let (fused, fused_grads) =
            gradients(&[&gate, &up], &weights, |t| swiglu(&t[0], &t[1]).unwrap());
        let (composite, composite_grads) = gradients(&[&gate, &up], &weights, |t| {
            (t[0].silu().unwrap() * &t[1]).unwrap()
        });
        assert_eq!(bits(&fused), bits(&composite), "swiglu");
        assert_close(&fused_grads[0], &composite_grads[0], "gate gradient");
        assert_close(&fused_grads[1], &composite_grads[1], "up gradient");
    }

    #[test]
    fn rope_equals_candles_rope_slow_and_rope_thd_forward_and_backward() {
        let x = tensor(&[5, 3, 8], 18);
        let angles = tensor(&[5, 4], 19);
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let weights = tensor(&[5, 3, 8], 20);
        let (fused, fused_grads) = gradients(&[&x], &weights, |t| rope(&t[0], &cos, &sin).unwrap());
        let (composite, composite_grads) = gradients(&[&x], &weights, |t| {
            let xt = t[0].transpose(0, 1).unwrap().unsqueeze(0).unwrap();
            candle_nn::rotary_emb::rope_slow(&xt, &cos, &sin)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
        });
        assert_eq!(bits(&fused), bits(&composite), "rotated");
        assert_close(&fused_grads[0], &composite_grads[0], "input gradient");
        assert!(rope(&x, &cos.narrow(0, 0, 4).unwrap(), &sin).is_err());
        // Inference replaced `rope_thd` by this kernel: the same bits.
        let thd = candle_nn::rotary_emb::rope_thd(&x.unsqueeze(0).unwrap(), &cos, &sin).unwrap();
        assert_eq!(bits(&fused), bits(&thd.squeeze(0).unwrap()), "rope_thd");
    }

    #[test]
    fn rms_norm_equals_the_composite_forward_and_backward() {
        for rows in [1, 3, 17] {
            let x = tensor(&[rows, 40], 3);
            let alpha = (tensor(&[40], 4) * 0.5).unwrap();
            let weights = tensor(&[rows, 40], 5);
            let (fused, fused_grads) = gradients(&[&x, &alpha], &weights, |t| {
                rms_norm(&t[0], &t[1], 1e-5).unwrap()
            });
            let (composite, composite_grads) = gradients(&[&x, &alpha], &weights, |t| {
                candle_nn::ops::rms_norm_slow(&t[0], &t[1], 1e-5).unwrap()
            });
            assert_eq!(bits(&fused), bits(&composite), "normalised");
            assert_close(&fused_grads[0], &composite_grads[0], "input gradient");
            assert_close(&fused_grads[1], &composite_grads[1], "scale gradient");
        }
    }

    #[test]
    fn target_log_probs_equal_log_softmax_gathered_forward_and_backward() {
        let logits = (tensor(&[6, 37], 6) * 4.0).unwrap();
        let targets = [0u32, 36, 5, 5, 17, 2];
        let weights = tensor(&[6], 7);
        let (fused, fused_grad) = gradients(&[&logits], &weights, |t| {
            target_log_probs(&t[0], &targets).unwrap()
        });
        let (composite, composite_grad) = gradients(&[&logits], &weights, |t| {
            let index = Tensor::from_slice(&targets, (6, 1), &Device::Cpu).unwrap();
            candle_nn::ops::log_softmax(&t[0], D::Minus1)
                .unwrap()
                .gather(&index, 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
        });
        // The same roundings as the composite, to the bit.
        assert_eq!(bits(&fused), bits(&composite), "log probabilities");
        assert_eq!(
            bits(&fused_grad[0]),
            bits(&composite_grad[0]),
            "logit gradient"
        );
    }

    #[test]
    fn bad_shapes_and_targets_are_refused() {
        let logits = tensor(&[2, 5], 8);
        assert!(target_log_probs(&logits, &[1]).is_err());
        let err = target_log_probs(&logits, &[1, 5]).unwrap_err().to_string();
        assert!(
            err.contains("target 5 is outside the vocabulary of 5"),
            "{err}"
        );
        assert!(causal_softmax(&tensor(&[1, 4, 3], 9), 1.0, 4).is_err());
        assert!(causal_softmax(&tensor(&[1, 4, 3], 9), 1.0, 0).is_err());
    }
}
