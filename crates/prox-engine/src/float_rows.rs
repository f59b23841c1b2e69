//! Float products of a few rows: `y = x · Wᵀ` for the handful of tokens of a decoding step,
//! with `W` `[n, k]` f32 read once, row by row, for all of them.
//!
//! Decoding multiplies one new token per sequence by every weight: the weights are read once
//! per step and each is used a few times, so the step's cost is the memory traffic. The
//! `gemm` crate (candle's float GEMM) is built for large products; for a few rows it reached
//! about 45% of the machine's copy bandwidth at one row and less at eight. Here each task
//! streams its own band of weight rows once and takes every dot product of a row while it is
//! in L1, with the CPU's widest FMA (AVX-512F or AVX2 intrinsics: left to the compiler, the
//! groups of more than a few rows were not vectorized).
//!
//! Every dot product is summed in the same order whatever the number of rows, so a
//! sequence's result does not depend on what it is decoded with.

use candle_core::{Layout, Shape};
use rayon::prelude::*;

use crate::fused::Kernel;

type CResult<T> = candle_core::Result<T>;

/// The most rows the product takes; larger products go to the GEMM, which reuses each
/// weight from its registers. On an Intel Xeon, since weights are prefetched
/// ([`PREFETCH_AHEAD`]), the few-row product decoded 8 sequences 26% faster than the GEMM
/// (82 against 104 tokens/s) and 12 sequences 9% faster; 16 and 24 were 7–10% slower.
pub const FEW_ROWS: usize = 12;

/// Multiply-adds below which one thread does the whole product.
const PARALLEL_MIN_FMAS: usize = 1 << 16;

/// A vector path of the few-row product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatRows {
    /// 16 lanes with AVX-512F.
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Avx512),
    /// 8 lanes with AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
}

impl FloatRows {
    /// The widest path this CPU runs, AVX2 and FMA at most where `PROX_FLOAT_GEMM=avx2`
    /// caps the float products ([`crate::float_gemm::FLOAT_GEMM_ENV`]), or `None` (the GEMM
    /// takes every product then); cheap enough for every product, as the standard library
    /// caches the CPU's features.
    pub fn detect() -> Option<FloatRows> {
        Self::widest(crate::float_gemm::FloatGemm::avx512_allowed())
    }

    /// The widest path this CPU runs, AVX-512 only if `avx512` allows it.
    fn widest(#[allow(unused_variables)] avx512: bool) -> Option<FloatRows> {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(cpu) = x86::Avx512::detect().filter(|_| avx512) {
                return Some(FloatRows::Avx512(cpu));
            }
            if let Some(cpu) = x86::Avx2::detect() {
                return Some(FloatRows::Avx2(cpu));
            }
        }
        None
    }

    /// Every path this CPU runs, narrowest first, for tests.
    pub fn available() -> Vec<FloatRows> {
        #[allow(unused_mut)]
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            paths.extend(x86::Avx2::detect().map(FloatRows::Avx2));
            paths.extend(x86::Avx512::detect().map(FloatRows::Avx512));
        }
        paths
    }

    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            FloatRows::Avx512(_) => "avx512f",
            #[cfg(target_arch = "x86_64")]
            FloatRows::Avx2(_) => "avx2+fma",
        }
    }

    /// `x` `[m, k]` times `Wᵀ` for `w` `[n, k]`, both row-major: `[m, n]`. Panics unless the
    /// slices hold whole rows of `k`.
    pub fn product(self, x: &[f32], w: &[f32], k: usize) -> Vec<f32> {
        assert!(
            k > 0 && x.len().is_multiple_of(k) && w.len().is_multiple_of(k),
            "the few-row product needs whole rows of {k}"
        );
        let (m, n) = (x.len() / k, w.len() / k);
        // Column-major while computing (a weight row gives one value per token), then
        // transposed: the output is at most a few rows of the vocabulary.
        let mut by_weight = vec![0f32; n * m];
        if m == 0 || n == 0 {
            return by_weight;
        }
        let tasks = if m * n * k < PARALLEL_MIN_FMAS {
            1
        } else {
            rayon::current_num_threads().max(1)
        };
        let band = n.div_ceil(tasks);
        let rows_of = |out: &mut [f32], weights: &[f32]| {
            for (row, chunk) in x.chunks(FEW_ROWS * k).enumerate() {
                self.band(chunk, weights, k, out, row * FEW_ROWS, m);
            }
        };
        if tasks == 1 {
            rows_of(&mut by_weight, w);
        } else {
            by_weight
                .par_chunks_mut(band * m)
                .zip(w.par_chunks(band * k))
                .for_each(|(out, weights)| rows_of(out, weights));
        }
        let mut y = vec![0f32; m * n];
        for (j, values) in by_weight.chunks_exact(m).enumerate() {
            for (i, &v) in values.iter().enumerate() {
                y[i * n + j] = v;
            }
        }
        y
    }

    /// The dot products of up to [`FEW_ROWS`] rows `x` with every weight row of `w`, into
    /// `out[j * m + first + i]`, reading a weight row once from memory and then from L1 for
    /// each group of [`GROUP_ROWS`] rows.
    #[allow(unsafe_code)]
    fn band(self, x: &[f32], w: &[f32], k: usize, out: &mut [f32], first: usize, m: usize) {
        let rows = x.len() / k;
        assert!(
            rows * k == x.len() && w.len().is_multiple_of(k) && first + rows <= m,
            "a band of whole rows"
        );
        // SAFETY: a path's proof exists only when this CPU has its target features; the
        // slices hold whole rows of `k`, checked above.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                FloatRows::Avx512(_) => x86::band_avx512f(x, w, k, out, first, m),
                #[cfg(target_arch = "x86_64")]
                FloatRows::Avx2(_) => x86::band_avx2_fma(x, w, k, out, first, m),
            }
        }
    }
}

/// Rows whose dot products one pass over a weight row (from L1) computes, their
/// accumulators in registers.
const GROUP_ROWS: usize = 4;

/// How far ahead of the dot products (in floats: 1 KiB) the weights are prefetched. The
/// hardware prefetcher alone left a decoding step of one sequence at 79% of the machine's
/// copy bandwidth on the Xeon; prefetching 1 KiB ahead took it to 88% (17.6 → 20 tokens/s
/// in f32; 4 sequences 51 → 60). 512 B, 2 KiB and 4 KiB ahead decoded 4 sequences 3–9%
/// more slowly.
const PREFETCH_AHEAD: usize = 256;

/// The lanes summed pairwise, always in the same order.
#[inline(always)]
fn lane_sum<const LANES: usize>(lanes: &[f32; LANES]) -> f32 {
    let mut v = *lanes;
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            v[l] += v[l + width];
        }
    }
    v[0]
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{lane_sum, GROUP_ROWS, PREFETCH_AHEAD};

    pub(super) use crate::cpu::Avx2;

    /// Proof that this CPU has AVX-512F (with AVX2 and FMA).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Avx512(());

    impl Avx512 {
        pub(super) fn detect() -> Option<Avx512> {
            (Avx2::detect().is_some() && is_x86_feature_detected!("avx512f")).then_some(Avx512(()))
        }
    }

    /// [`FloatRows::band`]'s kernel and its dot products for one vector width.
    macro_rules! band_kernel {
        ($inner:ident, $dots:ident, $features:literal, $lanes:literal,
         $zero:ident, $load:ident, $fmadd:ident, $add:ident, $store:ident) => {
            /// # Safety
            /// The target features must be available, `x` and `w` whole rows of `k`, and
            /// `first` plus the rows of `x` at most `m`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $inner(
                x: &[f32],
                w: &[f32],
                k: usize,
                out: &mut [f32],
                first: usize,
                m: usize,
            ) {
                let rows = x.len() / k;
                for (weights, out) in w.chunks_exact(k).zip(out.chunks_exact_mut(m)) {
                    let out = &mut out[first..first + rows];
                    for (x, out) in x.chunks(GROUP_ROWS * k).zip(out.chunks_mut(GROUP_ROWS)) {
                        match out.len() {
                            1 => $dots::<1>(x, weights, k, out),
                            2 => $dots::<2>(x, weights, k, out),
                            3 => $dots::<3>(x, weights, k, out),
                            _ => $dots::<4>(x, weights, k, out),
                        }
                    }
                }
            }

            /// `ROWS` dot products of the rows of `x` with `weights`, into `out`.
            ///
            /// # Safety
            /// The target features must be available; `x` holds `ROWS` rows of `k`,
            /// `weights` one, `out` `ROWS` values.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $dots<const ROWS: usize>(
                x: &[f32],
                weights: &[f32],
                k: usize,
                out: &mut [f32],
            ) {
                const LANES: usize = $lanes;
                assert!(x.len() >= ROWS * k && weights.len() >= k && out.len() >= ROWS);
                let whole = k / LANES * LANES;
                let (wp, xp) = (weights.as_ptr(), x.as_ptr());
                // Two sums per row, of the even and the odd vectors: one chain of dependent
                // FMAs held a row of few tokens back (4 sequences decoded 8% faster).
                let mut acc = [$zero(); ROWS];
                let mut odd = [$zero(); ROWS];
                let mut at = 0;
                while at + 2 * LANES <= whole {
                    // The cache lines of these two vectors, `PREFETCH_AHEAD` floats on; a
                    // prefetch past the weights' end is dropped, never faults.
                    for line in (0..2 * LANES).step_by(16) {
                        let ahead = wp.wrapping_add(at + PREFETCH_AHEAD + line);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.cast::<i8>());
                    }
                    // SAFETY: `at + 2 * LANES <= whole <= k`, inside every row (asserted above).
                    unsafe {
                        let (even_w, odd_w) = ($load(wp.add(at)), $load(wp.add(at + LANES)));
                        for (r, (acc, odd)) in acc.iter_mut().zip(&mut odd).enumerate() {
                            let row = xp.add(r * k + at);
                            *acc = $fmadd(even_w, $load(row), *acc);
                            *odd = $fmadd(odd_w, $load(row.add(LANES)), *odd);
                        }
                    }
                    at += 2 * LANES;
                }
                if at < whole {
                    // SAFETY: `at + LANES <= whole <= k`, inside every row (asserted above).
                    unsafe {
                        let wv = $load(wp.add(at));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            *acc = $fmadd(wv, $load(xp.add(r * k + at)), *acc);
                        }
                    }
                }
                for (r, (acc, odd)) in acc.iter().zip(&odd).enumerate() {
                    let mut lanes = [0f32; LANES];
                    // SAFETY: `lanes` holds one vector.
                    unsafe { $store(lanes.as_mut_ptr(), $add(*acc, *odd)) };
                    let mut tail = 0f32;
                    for at in whole..k {
                        tail = weights[at].mul_add(x[r * k + at], tail);
                    }
                    out[r] = lane_sum(&lanes) + tail;
                }
            }
        };
    }

    band_kernel!(
        band_avx2_fma,
        dots_avx2,
        "avx2,fma",
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    );
    band_kernel!(
        band_avx512f,
        dots_avx512,
        "avx2,fma,avx512f",
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    );
}

/// The few-row product as a candle op on `(x, w)` (through [`crate::fused::Fused`]): `x`
/// `[.., k]` f32 and `w` `[n, k]` f32, both contiguous on the CPU; the result is `[.., n]`.
pub(crate) struct FewRowsProduct(pub FloatRows);

impl Kernel<2> for FewRowsProduct {
    const NAME: &'static str = "few-rows-matmul";

    fn forward(
        &self,
        [(x, x_layout), (w, w_layout)]: [(&[f32], &Layout); 2],
    ) -> CResult<(Vec<f32>, Shape)> {
        let (n, k) = w_layout.shape().dims2()?;
        let mut dims = x_layout.shape().dims().to_vec();
        if dims.last() != Some(&k) || k == 0 {
            candle_core::bail!(
                "few-rows-matmul: input {:?} does not end in the weight's {k} columns",
                x_layout.shape()
            );
        }
        if x.len() / k > FEW_ROWS {
            candle_core::bail!("few-rows-matmul: {} rows, at most {FEW_ROWS}", x.len() / k);
        }
        let y = self.0.product(x, w, k);
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        Ok((y, Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::Fused;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn exact(x: &[f32], w: &[f32], k: usize) -> Vec<f64> {
        let (m, n) = (x.len() / k, w.len() / k);
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t]))
                    .sum();
            }
        }
        y
    }

    #[test]
    fn every_path_equals_the_exact_product() {
        // Rows from 1 to more than FEW_ROWS (groups of 4 and a remainder), lengths with and
        // without a tail of lanes and with an odd number of whole vectors (40: five of 8
        // lanes; 51: three of 16), one and several tasks.
        let shapes = [
            (1, 3, 5),
            (7, 9, 40),
            (11, 20, 51),
            (3, 17, 64),
            (8, 40, 100),
            (5, 700, 960),
            (8, 96, 1280),
            (13, 50, 70),
            (FEW_ROWS + 3, 30, 33),
        ];
        for path in FloatRows::available() {
            for &(m, n, k) in &shapes {
                let (x, w) = (values(m * k, 1), values(n * k, 2));
                let y = path.product(&x, &w, k);
                for (at, (&got, want)) in y.iter().zip(exact(&x, &w, k)).enumerate() {
                    let bound = 1e-5 * (k as f64).sqrt().max(1.0);
                    assert!(
                        (f64::from(got) - want).abs() <= bound,
                        "{} {m}x{n}x{k} at {at}: {got} against {want}",
                        path.name()
                    );
                }
            }
        }
    }

    #[test]
    fn the_avx2_cap_keeps_the_widest_path_to_avx2() {
        let available = FloatRows::available();
        assert_eq!(FloatRows::widest(true), available.last().copied());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            FloatRows::widest(false),
            available
                .iter()
                .copied()
                .find(|path| matches!(path, FloatRows::Avx2(_)))
        );
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_as_with_others() {
        let k = 200;
        let (x, w) = (values(FEW_ROWS * k, 3), values(300 * k, 4));
        for path in FloatRows::available() {
            let together = path.product(&x, &w, k);
            for i in 0..FEW_ROWS {
                let alone = path.product(&x[i * k..(i + 1) * k], &w, k);
                assert_eq!(
                    alone,
                    together[i * 300..(i + 1) * 300],
                    "{} row {i}",
                    path.name()
                );
            }
        }
    }

    #[test]
    fn the_candle_op_keeps_leading_dimensions_and_refuses_bad_shapes() {
        let Some(path) = FloatRows::detect() else {
            return;
        };
        let device = candle_core::Device::Cpu;
        let x = candle_core::Tensor::new(values(2 * 3 * 16, 5), &device)
            .and_then(|t| t.reshape((2, 3, 16)))
            .unwrap();
        let w = candle_core::Tensor::new(values(4 * 16, 6), &device)
            .and_then(|t| t.reshape((4, 16)))
            .unwrap();
        let y = x
            .apply_op2_no_bwd(&w, &Fused(FewRowsProduct(path)))
            .unwrap();
        assert_eq!(y.dims(), &[2, 3, 4]);
        let reference = x.reshape((6, 16)).unwrap().matmul(&w.t().unwrap()).unwrap();
        let diff = (y.reshape((6, 4)).unwrap() - reference)
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
            .unwrap();
        assert!(diff < 1e-5, "differs from candle's matmul by {diff}");

        let too_many =
            candle_core::Tensor::zeros((FEW_ROWS + 1, 16), candle_core::DType::F32, &device)
                .unwrap();
        assert!(too_many
            .apply_op2_no_bwd(&w, &Fused(FewRowsProduct(path)))
            .is_err());
        let wrong_width =
            candle_core::Tensor::zeros((2, 8), candle_core::DType::F32, &device).unwrap();
        assert!(wrong_width
            .apply_op2_no_bwd(&w, &Fused(FewRowsProduct(path)))
            .is_err());
    }
}
