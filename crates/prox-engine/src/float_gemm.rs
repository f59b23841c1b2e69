//! Float matrix products through the `gemm` crate's kernels (candle's float GEMM), with the
//! kernel set chosen for the CPU by the engine rather than by `gemm`.
//!
//! candle's `matmul` calls `gemm`, which picks one kernel set for the whole process: AVX-512
//! wherever the CPU has it (the workspace builds `gemm` with its `x86-v4` feature), else
//! AVX2 and FMA. On an Intel Xeon (Sapphire Rapids) the AVX-512 kernels prefilled about 1.5
//! times as fast; on an AMD EPYC (Zen 4, whose 512-bit FMAs are two 256-bit halves) they
//! were slower throughout (measured through candle's `matmul` at an earlier version). So the
//! weight products, forward and backward, come here and take AVX-512 on CPUs other than
//! AMD's, AVX2 and FMA otherwise; [`FLOAT_GEMM_ENV`] caps or forces the choice. Products of
//! few tokens are also given to `gemm` the other way round from how its entry point gives
//! them ([`TRANSPOSED_MIN_ROWS`]), which decoded 32 sequences 1.3 times as fast on the Xeon.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use candle_core::{Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::{Fused, Kernel};

type CResult<T> = candle_core::Result<T>;

/// The environment variable that picks the float GEMM's kernels: `avx2` keeps every float
/// product on AVX2 and FMA (the few-row product's too, [`crate::float_rows`]), as on a CPU
/// without AVX-512; `avx512f` takes AVX-512 wherever the CPU has it, AMD's included.
pub const FLOAT_GEMM_ENV: &str = "PROX_FLOAT_GEMM";

/// The fewest rows (tokens) of a product that takes the AVX-512 kernels where they are
/// chosen: below, AVX2 was faster (Xeon, decoding 16 sequences: 132 against 117 tokens/s;
/// 32: 167 against 182).
pub const AVX512_MIN_ROWS: usize = 24;

/// The fewest rows (tokens) of a product that `gemm` is given transposed, as its own entry
/// point gives every product with a row-major result ([`FloatGemm::run`]).
const TRANSPOSED_MIN_ROWS: usize = 256;

/// A kernel set of the `gemm` crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatGemm {
    /// 8 lanes, AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// 16 lanes, AVX-512F.
    #[cfg(target_arch = "x86_64")]
    Avx512f,
}

/// A [`FLOAT_GEMM_ENV`] value that names no path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{FLOAT_GEMM_ENV}={value:?} names no float GEMM path (known: avx2, avx512f)")]
pub struct UnknownFloatGemm {
    pub value: String,
}

/// What [`FLOAT_GEMM_ENV`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// AVX-512 where it wins on this kind of CPU.
    Measured,
    /// AVX2 and FMA only.
    Avx2,
    /// AVX-512 wherever the CPU has it.
    Avx512,
}

impl Choice {
    fn parse(value: &str) -> Result<Choice, UnknownFloatGemm> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Ok(Choice::Measured),
            "avx2" | "avx2+fma" => Ok(Choice::Avx2),
            "avx512f" => Ok(Choice::Avx512),
            _ => Err(UnknownFloatGemm {
                value: value.to_owned(),
            }),
        }
    }
}

/// What [`FLOAT_GEMM_ENV`] asks in this process, read once.
fn choice() -> Result<Choice, UnknownFloatGemm> {
    static CHOICE: OnceLock<Result<Choice, UnknownFloatGemm>> = OnceLock::new();
    CHOICE
        .get_or_init(|| Choice::parse(&std::env::var(FLOAT_GEMM_ENV).unwrap_or_default()))
        .clone()
}

#[cfg(target_arch = "x86_64")]
fn detect(choice: Choice) -> Option<FloatGemm> {
    use std::arch::is_x86_feature_detected;
    crate::cpu::Avx2::detect()?;
    let wide = match choice {
        Choice::Avx2 => false,
        Choice::Avx512 => is_x86_feature_detected!("avx512f"),
        Choice::Measured => is_x86_feature_detected!("avx512f") && !is_amd(),
    };
    Some(match wide {
        true => FloatGemm::Avx512f,
        false => FloatGemm::Avx2Fma,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn detect(_: Choice) -> Option<FloatGemm> {
    None
}

/// Whether the CPU's vendor string is AMD's.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn is_amd() -> bool {
    #[allow(unused_unsafe)]
    // SAFETY: leaf 0 of `cpuid` exists on every x86-64 CPU.
    let leaf = unsafe { std::arch::x86_64::__cpuid(0) };
    let mut vendor = Vec::with_capacity(12);
    for word in [leaf.ebx, leaf.edx, leaf.ecx] {
        vendor.extend_from_slice(&word.to_le_bytes());
    }
    vendor == b"AuthenticAMD"
}

impl FloatGemm {
    /// The name logs show ([`FLOAT_GEMM_ENV`] takes it, or `avx2`).
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            FloatGemm::Avx2Fma => "avx2+fma",
            #[cfg(target_arch = "x86_64")]
            FloatGemm::Avx512f => "avx512f",
        }
    }

    /// The path the weight products take in this process, detected once; `None` where
    /// candle's own `matmul` takes them (CPUs without AVX2 and FMA, other architectures).
    pub fn chosen() -> Result<Option<FloatGemm>, UnknownFloatGemm> {
        static CHOSEN: OnceLock<Result<Option<FloatGemm>, UnknownFloatGemm>> = OnceLock::new();
        CHOSEN.get_or_init(|| Ok(detect(choice()?))).clone()
    }

    /// Whether [`FLOAT_GEMM_ENV`] leaves the float products AVX-512 (it does unless it
    /// says `avx2`; a value naming no path is refused by [`FloatGemm::chosen`], not here).
    pub fn avx512_allowed() -> bool {
        choice() != Ok(Choice::Avx2)
    }

    /// The path for a product of `rows` rows when `self` is chosen: AVX2 and FMA below
    /// [`AVX512_MIN_ROWS`] (every CPU with AVX-512 has them).
    pub fn for_rows(self, rows: usize) -> FloatGemm {
        match self {
            #[cfg(target_arch = "x86_64")]
            FloatGemm::Avx512f if rows < AVX512_MIN_ROWS => FloatGemm::Avx2Fma,
            path => path,
        }
    }

    /// Every path this CPU runs, narrowest first, whatever [`FLOAT_GEMM_ENV`] says: for tests.
    pub fn available() -> Vec<FloatGemm> {
        #[allow(unused_mut)]
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if detect(Choice::Avx2).is_some() {
                all.push(FloatGemm::Avx2Fma);
            }
            if let Some(FloatGemm::Avx512f) = detect(Choice::Avx512) {
                all.push(FloatGemm::Avx512f);
            }
        }
        all
    }

    /// `dst = lhs · rhs` for `lhs` `[m, k]` and `rhs` `[k, n]` given by their strides (in
    /// elements, row then column), `dst` `[m, n]` row-major, on candle's thread count. Every
    /// element of `dst` is written and none is read, so it need not be initialized.
    ///
    /// # Panics
    /// When a slice is shorter than its matrix: a bug of the caller, never bad input.
    fn run(
        self,
        dims: (usize, usize, usize),
        dst: &mut [MaybeUninit<f32>],
        lhs: (&[f32], usize, usize),
        rhs: (&[f32], usize, usize),
    ) {
        let threads = candle_core::utils::get_num_threads();
        self.run_on(threads, dims, dst, lhs, rhs)
    }

    /// [`FloatGemm::run`] on `threads` threads (1: the calling thread only).
    #[allow(unsafe_code)]
    fn run_on(
        self,
        threads: usize,
        (m, n, k): (usize, usize, usize),
        dst: &mut [MaybeUninit<f32>],
        (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
        (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
    ) {
        use gemm_common::gemm::gemm_basic_generic;
        use gemm_common::simd::MixedSimd;
        use gemm_common::Parallelism;

        let spans = |rows: usize, cols: usize, rs: usize, cs: usize| match rows * cols {
            0 => 0,
            _ => (rows - 1) * rs + (cols - 1) * cs + 1,
        };
        assert!(
            dst.len() == m * n
                && lhs.len() >= spans(m, k, lhs_rs, lhs_cs)
                && rhs.len() >= spans(k, n, rhs_rs, rhs_cs),
            "float-gemm: operands shorter than their matrices"
        );
        let parallelism = match threads {
            0 | 1 => Parallelism::None,
            threads => Parallelism::Rayon(threads),
        };
        let (dst, lhs, rhs) = (dst.as_mut_ptr().cast::<f32>(), lhs.as_ptr(), rhs.as_ptr());
        let (lhs_rs, lhs_cs, rhs_rs, rhs_cs) = (
            lhs_rs as isize,
            lhs_cs as isize,
            rhs_rs as isize,
            rhs_cs as isize,
        );
        // `gemm`'s microkernels vectorize the rows of the product they are given.
        // `gemm`'s own entry point hands them `dstᵀ = rhsᵀ · lhsᵀ` for a row-major `dst`,
        // vectorizing the output features, which suits many tokens; for fewer than
        // TRANSPOSED_MIN_ROWS tokens, vectorizing the tokens themselves was faster (Xeon,
        // both widths, the refiner's and the training bench's shapes: 1.1 to 5 times at 16
        // to 64 tokens). From 512 tokens transposing was faster (1.1 to 2.5 times) for every
        // shape but the down projection (10% slower). `dst` is written, not read (`read_dst`
        // false: alpha 0, beta 1).
        let transposed = m >= TRANSPOSED_MIN_ROWS;
        let (m, n, dst_cs, dst_rs) = match transposed {
            true => (n, m, n as isize, 1),
            false => (m, n, 1, n as isize),
        };
        let ((lhs, lhs_cs, lhs_rs), (rhs, rhs_cs, rhs_rs)) = match transposed {
            true => ((rhs, rhs_rs, rhs_cs), (lhs, lhs_rs, lhs_cs)),
            false => ((lhs, lhs_cs, lhs_rs), (rhs, rhs_cs, rhs_rs)),
        };
        macro_rules! with_kernels {
            ($simd:ty, $kernels:path, $lanes:literal) => {{
                use $kernels as u;
                let Some(simd) = <$simd as MixedSimd<f32, f32, f32, f32>>::try_new() else {
                    unreachable!("a FloatGemm path exists only where its features were detected")
                };
                gemm_basic_generic::<
                    _,
                    f32,
                    $lanes,
                    { u::MR_DIV_N * $lanes },
                    { u::NR },
                    { u::MR_DIV_N },
                    { u::H_M },
                    { u::H_N },
                >(
                    simd,
                    m,
                    n,
                    k,
                    dst,
                    dst_cs,
                    dst_rs,
                    false,
                    lhs,
                    lhs_cs,
                    lhs_rs,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    |a, b, c| a * b + c,
                    &u::UKR,
                    &u::H_UKR,
                    false,
                    parallelism,
                )
            }};
        }
        // SAFETY: every element the strides address is in its slice (checked above); the
        // path's features were detected.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                FloatGemm::Avx2Fma => {
                    with_kernels!(gemm_common::simd::V3, gemm_f32::microkernel::fma::f32, 8)
                }
                #[cfg(target_arch = "x86_64")]
                FloatGemm::Avx512f => {
                    with_kernels!(
                        gemm_common::simd::V4,
                        gemm_f32::microkernel::avx512f::f32,
                        16
                    )
                }
            }
        }
    }
}

/// How an operand of [`Product`] is read: as stored, or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    AsIs,
    Transposed,
}

/// `a · b` for contiguous f32 operands: `a` `[.., k]` taken as rows of `k` (or transposed:
/// `[rows, cols]` read as `[cols, rows]`), `b` `[k, n]` (or `[n, k]` read transposed), on
/// the kernels `gemm` gives for the product's rows ([`FloatGemm::for_rows`]).
pub(crate) struct Product {
    gemm: FloatGemm,
    a: Read,
    b: Read,
}

impl Kernel<2> for Product {
    const NAME: &'static str = "float-gemm";

    #[allow(unsafe_code)]
    fn forward(
        &self,
        [(a, a_layout), (b, b_layout)]: [(&[f32], &Layout); 2],
    ) -> CResult<(Vec<f32>, Shape)> {
        let a_dims = a_layout.shape().dims();
        let a_cols = a_dims.last().copied().unwrap_or(1);
        let a_rows = a.len().checked_div(a_cols).unwrap_or(0);
        let (b_rows, b_cols) = b_layout.shape().dims2()?;
        let ((m, k), a_strides) = match self.a {
            Read::AsIs => ((a_rows, a_cols), (a_cols, 1)),
            Read::Transposed => ((a_cols, a_rows), (1, a_cols)),
        };
        let ((b_k, n), b_strides) = match self.b {
            Read::AsIs => ((b_rows, b_cols), (b_cols, 1)),
            Read::Transposed => ((b_cols, b_rows), (1, b_cols)),
        };
        if b_k != k {
            candle_core::bail!(
                "float-gemm: {:?} and {:?} do not multiply ({:?}, {:?})",
                a_layout.shape(),
                b_layout.shape(),
                self.a,
                self.b
            );
        }
        // Not zero-filled first: on fresh memory that pass cost about 5% of f32 prefill.
        let mut dst = Vec::with_capacity(m * n);
        self.gemm.for_rows(m).run(
            (m, n, k),
            &mut dst.spare_capacity_mut()[..m * n],
            (a, a_strides.0, a_strides.1),
            (b, b_strides.0, b_strides.1),
        );
        // SAFETY: `run` wrote all `m · n` elements.
        unsafe { dst.set_len(m * n) };
        let shape = match self.a {
            Read::AsIs => {
                let mut dims = a_dims.to_vec();
                if let Some(last) = dims.last_mut() {
                    *last = n;
                }
                Shape::from(dims)
            }
            Read::Transposed => Shape::from((m, n)),
        };
        Ok((dst, shape))
    }

    /// For `y = x · wᵀ` only (the weight products): `∂x = g · w`, `∂w = gᵀ · x`.
    fn backward(
        &self,
        [x, w]: [&Tensor; 2],
        _result: &Tensor,
        grad: &Tensor,
    ) -> CResult<[Option<Tensor>; 2]> {
        if (self.a, self.b) != (Read::AsIs, Read::Transposed) {
            return Err(candle_core::Error::BackwardNotSupported { op: Self::NAME });
        }
        let product = |a: Read| {
            Fused(Product {
                gemm: self.gemm,
                a,
                b: Read::AsIs,
            })
        };
        let grad_x = grad.apply_op2_no_bwd(w, &product(Read::AsIs))?;
        let grad_w = grad.apply_op2_no_bwd(x, &product(Read::Transposed))?;
        Ok([Some(grad_x), Some(grad_w)])
    }
}

/// `x · wᵀ` for `x` `[.., k]` and `w` `[n, k]`, both f32 on the CPU, through the path
/// [`FloatGemm::chosen`] (with a backward pass); `None` where this CPU has no path and
/// candle's `matmul` should take the product.
pub(crate) fn weight_product(x: &Tensor, w: &Tensor) -> CResult<Option<Tensor>> {
    let Some(gemm) = FloatGemm::chosen().map_err(candle_core::Error::wrap)? else {
        return Ok(None);
    };
    let op = Fused(Product {
        gemm,
        a: Read::AsIs,
        b: Read::Transposed,
    });
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match x.track_op() || w.track_op() {
        true => x.apply_op2(&w, op).map(Some),
        false => x.apply_op2_no_bwd(&w, &op).map(Some),
    }
}

/// The most results of a [`batched_product`] matrix left to candle's `matmul`.
const SMALL_PRODUCT: usize = 16 * 16;

/// `a · b` for each matrix of a batch, `a` `[batch, m, k]` and `b` `[batch, k, n]` (or
/// `[batch, n, k]` read transposed), contiguous f32 on the CPU; the matrices in parallel
/// when there are as many as threads, each on one thread.
struct BatchedProduct {
    gemm: FloatGemm,
    b: Read,
}

impl Kernel<2> for BatchedProduct {
    const NAME: &'static str = "batched-float-gemm";

    #[allow(unsafe_code)]
    fn forward(
        &self,
        [(a, a_layout), (b, b_layout)]: [(&[f32], &Layout); 2],
    ) -> CResult<(Vec<f32>, Shape)> {
        let (batch, m, k) = a_layout.shape().dims3()?;
        let (b_batch, b_rows, b_cols) = b_layout.shape().dims3()?;
        let ((b_k, n), b_strides) = match self.b {
            Read::AsIs => ((b_rows, b_cols), (b_cols, 1)),
            Read::Transposed => ((b_cols, b_rows), (1, b_cols)),
        };
        if (b_batch, b_k) != (batch, k) {
            candle_core::bail!(
                "batched-float-gemm: {:?} and {:?} do not multiply ({:?})",
                a_layout.shape(),
                b_layout.shape(),
                self.b
            );
        }
        let len = batch * m * n;
        let mut dst = Vec::with_capacity(len);
        let one = |(i, dst): (usize, &mut [MaybeUninit<f32>]), threads| {
            let a = &a[i * m * k..(i + 1) * m * k];
            let b = &b[i * k * n..(i + 1) * k * n];
            self.gemm.for_rows(m).run_on(
                threads,
                (m, n, k),
                dst,
                (a, k, 1),
                (b, b_strides.0, b_strides.1),
            );
        };
        let threads = candle_core::utils::get_num_threads();
        let matrices = &mut dst.spare_capacity_mut()[..len];
        let size = (m * n).max(1);
        if batch >= threads {
            let matrices = matrices.par_chunks_mut(size).enumerate();
            matrices.for_each(|matrix| one(matrix, 1));
        } else {
            let matrices = matrices.chunks_mut(size).enumerate();
            matrices.for_each(|matrix| one(matrix, threads));
        }
        // SAFETY: each of the `batch` products wrote its `m · n` elements.
        unsafe { dst.set_len(len) };
        Ok((dst, Shape::from((batch, m, n))))
    }
}

/// `a · b` (or `a · bᵀ` with `b_transposed`) for `a` `[batch, m, k]` and `b` `[batch, k, n]`
/// (`[batch, n, k]`), f32 on the CPU outside autograd, through the path
/// [`FloatGemm::chosen`] without zero-filling the result first, with the bits of candle's
/// `matmul`; `None` where candle's `matmul` should take it (other devices and dtypes, a graph
/// to differentiate, no path, products of at most [`SMALL_PRODUCT`] results).
pub(crate) fn batched_product(
    a: &Tensor,
    b: &Tensor,
    b_transposed: bool,
) -> CResult<Option<Tensor>> {
    let Some(gemm) = FloatGemm::chosen().map_err(candle_core::Error::wrap)? else {
        return Ok(None);
    };
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if !cpu_f32(a) || !cpu_f32(b) || a.track_op() || b.track_op() {
        return Ok(None);
    }
    // `gemm` sums products of at most 16 × 16 results in another order (its "horizontal"
    // kernels), which candle's `matmul` reaches in other cases than this entry point: those
    // stay with candle, so that every product has candle's bits.
    let (m, n) = (a.dim(1)?, b.dim(usize::from(!b_transposed) + 1)?);
    if m * n <= SMALL_PRODUCT {
        return Ok(None);
    }
    let b_read = match b_transposed {
        true => Read::Transposed,
        false => Read::AsIs,
    };
    let op = Fused(BatchedProduct { gemm, b: b_read });
    a.contiguous()?
        .apply_op2_no_bwd(&b.contiguous()?, &op)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused tests' values, scaled to about [-0.5, 0.5] so that sums of a few hundred
    /// products stay near 1, where the relative bound below means f32 rounding only.
    fn tensor(dims: &[usize], seed: u64) -> Tensor {
        (crate::fused::tests::tensor(dims, seed) / 6.0).unwrap()
    }

    fn max_relative_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0, f32::max)
    }

    /// A product through `gemm` in f64 (exact enough to judge either width's f32 sums).
    fn reference(a: &Tensor, b: &Tensor) -> Tensor {
        use candle_core::DType;
        let (a, b) = (
            a.to_dtype(DType::F64).unwrap(),
            b.to_dtype(DType::F64).unwrap(),
        );
        a.broadcast_matmul(&b)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    }

    #[test]
    fn every_path_this_cpu_runs_multiplies_in_every_orientation() {
        // Rows below, at and past the kernels' tiles, and past TRANSPOSED_MIN_ROWS; a 3-D input.
        for gemm in FloatGemm::available() {
            for (rows, k, n) in [(1, 5, 3), (7, 33, 17), (37, 64, 40), (300, 20, 9)] {
                let x = tensor(&[rows, k], 1);
                let w = tensor(&[n, k], 2);
                let g = tensor(&[rows, n], 3);
                let run = |a: &Tensor, b: &Tensor, ra: Read, rb: Read| {
                    a.apply_op2_no_bwd(b, &Fused(Product { gemm, a: ra, b: rb }))
                        .unwrap()
                };
                let y = run(&x, &w, Read::AsIs, Read::Transposed);
                let expected = reference(&x, &w.t().unwrap());
                assert!(max_relative_diff(&y, &expected) < 1e-5, "{gemm:?} x·wᵀ");
                let gx = run(&g, &w, Read::AsIs, Read::AsIs);
                assert!(
                    max_relative_diff(&gx, &reference(&g, &w)) < 1e-5,
                    "{gemm:?} g·w"
                );
                let gw = run(&g, &x, Read::Transposed, Read::AsIs);
                let expected = reference(&g.t().unwrap(), &x);
                assert!(max_relative_diff(&gw, &expected) < 1e-5, "{gemm:?} gᵀ·x");
            }
            let x = tensor(&[2, 3, 16], 4);
            let w = tensor(&[8, 16], 5);
            let y = x
                .apply_op2_no_bwd(
                    &w,
                    &Fused(Product {
                        gemm,
                        a: Read::AsIs,
                        b: Read::Transposed,
                    }),
                )
                .unwrap();
            assert_eq!(y.dims(), &[2, 3, 8]);
            let expected = reference(&x.reshape((6, 16)).unwrap(), &w.t().unwrap());
            assert!(max_relative_diff(&y.reshape((6, 8)).unwrap(), &expected) < 1e-5);
        }
    }

    #[test]
    fn batched_products_equal_candles_matmul_in_both_orientations() {
        if FloatGemm::chosen().unwrap().is_none() {
            return; // candle's matmul takes them on this CPU
        }
        let bits = |t: &Tensor| -> Vec<u32> {
            let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            values.iter().map(|v| v.to_bits()).collect()
        };
        // One matrix (each product parallel inside), and more matrices than threads (the
        // matrices in parallel); attention's shapes: few columns, or many rows. Every
        // kernel sums each product in order of `k` with fused multiply-adds, as candle's
        // does: the same bits.
        for (batch, m, k, n) in [
            (5, 384, 64, 512),
            (5, 384, 512, 64),
            (5, 384, 64, 100),
            (5, 384, 100, 64),
            (1, 384, 64, 300),
            (5, 300, 64, 70),
            (4, 17, 70, 64),
            (3, 40, 16, 33),
            (2, 16, 8, 17),
        ] {
            let a = tensor(&[batch, m, k], 11);
            let b = tensor(&[batch, k, n], 12);
            let bt = b.transpose(1, 2).unwrap().contiguous().unwrap();
            let want = a.matmul(&b).unwrap();
            let as_is = batched_product(&a, &b, false).unwrap().expect("a path");
            let transposed = batched_product(&a, &bt, true).unwrap().expect("a path");
            for (got, label) in [(as_is, "as is"), (transposed, "transposed")] {
                assert_eq!(got.dims(), [batch, m, n], "{label}");
                let diff = max_relative_diff(&got, &reference(&a, &b));
                assert!(diff < 1e-5, "{batch}x{m}x{k}x{n} {label}: {diff}");
                assert_eq!(bits(&got), bits(&want), "{batch}x{m}x{k}x{n} {label}");
            }
        }
        let a = tensor(&[2, 30, 4], 13);
        assert!(batched_product(&a, &tensor(&[2, 5, 40], 14), false).is_err());
        assert!(batched_product(&a, &tensor(&[3, 4, 50], 14), false).is_err());
        let small = tensor(&[1, 5, 8], 15);
        let small = batched_product(&small, &tensor(&[1, 7, 8], 16), true).unwrap();
        assert!(small.is_none(), "16 x 16 results or fewer stay with candle");
    }

    #[test]
    fn the_weight_product_has_matmuls_gradients() {
        use candle_core::Var;
        let x = Var::from_tensor(&tensor(&[41, 24], 6)).unwrap();
        let w = Var::from_tensor(&tensor(&[10, 24], 7)).unwrap();
        let target = tensor(&[41, 10], 8);
        let Some(y) = weight_product(x.as_tensor(), w.as_tensor()).unwrap() else {
            return; // No path on this CPU: candle's matmul is used, nothing to compare.
        };
        let reference_y = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        assert!(max_relative_diff(&y, &reference_y) < 1e-5);
        let loss = |y: &Tensor| (y * &target).unwrap().sum_all().unwrap();
        let grads = loss(&y).backward().unwrap();
        let reference_grads = loss(&reference_y).backward().unwrap();
        for var in [&x, &w] {
            let ours = grads.get(var.as_tensor()).unwrap();
            let theirs = reference_grads.get(var.as_tensor()).unwrap();
            assert!(max_relative_diff(ours, theirs) < 1e-5);
        }
    }

    #[test]
    fn the_setting_names_a_path() {
        assert_eq!(Choice::parse(""), Ok(Choice::Measured));
        assert_eq!(Choice::parse(" AVX2 "), Ok(Choice::Avx2));
        assert_eq!(Choice::parse("avx512f"), Ok(Choice::Avx512));
        let error = Choice::parse("sse").unwrap_err();
        assert!(error.to_string().contains("PROX_FLOAT_GEMM=\"sse\""));
    }
}
