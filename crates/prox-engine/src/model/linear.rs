//! Weight matrices: float, quantized blocks computed by candle, or Q8_0 blocks computed by the
//! engine's kernel.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use super::{CResult, PackedBatch};
use crate::float_rows::{FewRowsProduct, FloatRows, FEW_ROWS};
use crate::fused::Fused;
use crate::q8::{Kernel, Q8Matrix};

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

    /// [`Linear::load_quantized`] of the weight of the projection module `module`
    /// (`{module}.weight`), shaped `(out, in)`.
    pub(super) fn load_module(
        vb: &VarBuilder,
        module: &str,
        (out_dim, in_dim): (usize, usize),
        quantization: Option<Quantization>,
    ) -> CResult<Self> {
        Self::load_quantized(&vb.pp(module), out_dim, in_dim, "weight", quantization)
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
    pub(super) fn forward_packed(&self, x: &Tensor, batch: &PackedBatch) -> CResult<Tensor> {
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
            Linear::Float(w) => float_product(x, w),
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

/// `x · Wᵀ` for a float weight: decoding's few f32 rows on the CPU through the few-row
/// product ([`crate::float_rows`]), which reads the weight once at the memory's speed (it
/// has no backward pass); other f32 products on the CPU through the GEMM kernels chosen for
/// this CPU ([`crate::float_gemm`], with a backward pass); anything else through candle's
/// `matmul`.
fn float_product(x: &Tensor, w: &Tensor) -> CResult<Tensor> {
    if x.dtype() == DType::F32 && w.dtype() == DType::F32 && x.device().is_cpu() {
        let k = x.dim(candle_core::D::Minus1)?;
        let few_rows = k > 0 && x.elem_count() / k <= FEW_ROWS;
        if few_rows && !x.track_op() && !w.track_op() {
            if let Some(path) = FloatRows::detect() {
                return x
                    .contiguous()?
                    .apply_op2_no_bwd(&w.contiguous()?, &Fused(FewRowsProduct(path)));
            }
        }
        if let Some(y) = crate::float_gemm::weight_product(x, w)? {
            return Ok(y);
        }
    }
    x.matmul(&w.t()?)
}

pub(super) fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

/// From this many new tokens of a sequence, its Q8_0 products run on dequantized weights
/// ([`Linear::forward_packed`]). Dequantizing a matrix costs about as much as multiplying
/// it by a few dozen tokens.
pub const Q8_DENSE_MIN_TOKENS: usize = 128;
