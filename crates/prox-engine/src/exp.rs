//! `expf` four values at a time, with the bits of glibc's scalar `expf`.
//!
//! candle's SiLU and softmax call libm's `expf` one value at a time, and the fused kernels
//! keep candle's bits (see [`crate::fused`]); that call was about 9% of prefill. glibc's
//! `expf` (since 2.28, from Arm's optimized routines) computes in double precision:
//! `x · 32/ln 2 = k + r` with `|r| ≤ 1/2`, `2^(k/32)` from a table of 32 powers and
//! `2^(r/32)` from a cubic. [`exp_in_place`] takes the same steps on AVX2 and FMA, with the
//! fused multiply-adds where glibc's FMA build (`__expf_fma`, which glibc picks on every CPU
//! with FMA) has them, so its results equal `f32::exp`'s there. glibc leaves its fast path
//! for magnitudes from 2^7 · 11/16 (about 88, near overflow and underflow), infinities and
//! NaN; so does this code, giving those values to `f32::exp` one at a time. Elsewhere (no AVX2
//! and FMA, other architectures) every value goes to `f32::exp`.

/// `values[i] = values[i].exp()` for every `i`.
pub(crate) fn exp_in_place(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(cpu) = crate::cpu::Avx2::detect() {
        return x86::exp_in_place(cpu, values);
    }
    for value in values {
        *value = value.exp();
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use crate::cpu::Avx2;

    /// The bits of `2^(i/32)` less `i << 47`, so that adding `k << 47` for `k ≡ i (mod 32)`
    /// gives `2^(k/32)`: glibc's `__exp2f_data.tab`.
    const POWERS: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// `32 / ln 2`.
    const INV_LN2_32: u64 = 0x40471547652b82fe;
    /// `1.5 · 2^52`: adding it rounds a double of magnitude below 2^51 to an integer, which
    /// then stands in the low bits.
    const SHIFT: u64 = 0x4338000000000000;
    /// The cubic's coefficients for `r / 32`, highest power first.
    const CUBIC: [u64; 3] = [0x3ebc6af84b912394, 0x3f2ebfce50fac4f3, 0x3f962e42ff0c52d6];
    /// The bits of `|x|` from which glibc leaves its fast path: those of 88.0 rounded down
    /// to a multiple of 2^20 (its test is on the top 12 bits).
    const SLOW_FROM: i32 = 0x42b0_0000;

    pub(super) fn exp_in_place(cpu: Avx2, values: &mut [f32]) {
        // SAFETY: `cpu` proves AVX2 and FMA.
        unsafe { exp_quads(cpu, values) }
    }

    /// The loop, compiled for AVX2 and FMA so that [`exp4`] is inlined into it.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_quads(cpu: Avx2, values: &mut [f32]) {
        let (quads, rest) = values.as_chunks_mut::<4>();
        for quad in quads {
            if !exp4(cpu, quad) {
                for value in quad.iter_mut() {
                    *value = value.exp();
                }
            }
        }
        for value in rest {
            *value = value.exp();
        }
    }

    /// `exp` of four values in place, as glibc's fast path computes it; `false`, with the
    /// values untouched, where one of them needs its slow path.
    #[target_feature(enable = "avx2,fma")]
    fn exp4(_cpu: Avx2, quad: &mut [f32; 4]) -> bool {
        let constant = |bits: u64| _mm256_set1_pd(f64::from_bits(bits));
        // SAFETY: `quad` holds the four values read.
        let x = unsafe { _mm_loadu_ps(quad.as_ptr()) };
        let magnitude = _mm_and_si128(_mm_castps_si128(x), _mm_set1_epi32(i32::MAX));
        if _mm_movemask_epi8(_mm_cmpgt_epi32(magnitude, _mm_set1_epi32(SLOW_FROM - 1))) != 0 {
            return false;
        }
        let (inv_ln2, shift) = (constant(INV_LN2_32), constant(SHIFT));
        let x = _mm256_cvtps_pd(x);
        // k, rounded to an integer in the low bits of `shifted`.
        let shifted = _mm256_fmadd_pd(inv_ln2, x, shift);
        let k = _mm256_sub_pd(shifted, shift);
        let r = _mm256_fmsub_pd(inv_ln2, x, k);
        let k_bits = _mm256_castpd_si256(shifted);
        let index = _mm256_and_si256(k_bits, _mm256_set1_epi64x(31));
        // SAFETY: `index` is below 32, the table's length; the scale 8 is a u64's size.
        let power = unsafe { _mm256_i64gather_epi64::<8>(POWERS.as_ptr().cast::<i64>(), index) };
        let scale = _mm256_castsi256_pd(_mm256_add_epi64(power, _mm256_slli_epi64::<47>(k_bits)));
        let [c0, c1, c2] = CUBIC.map(constant);
        let high = _mm256_fmadd_pd(r, c0, c1);
        let low = _mm256_fmadd_pd(r, c2, _mm256_set1_pd(1.0));
        let y = _mm256_fmadd_pd(high, _mm256_mul_pd(r, r), low);
        let y = _mm256_cvtpd_ps(_mm256_mul_pd(y, scale));
        // SAFETY: `quad` holds the four values written.
        unsafe { _mm_storeu_ps(quad.as_mut_ptr(), y) };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exps(values: &[f32]) -> Vec<f32> {
        let mut out = values.to_vec();
        exp_in_place(&mut out);
        out
    }

    /// Within one unit in the last place of `f32::exp` everywhere; its very bits where libm
    /// is glibc (the fast path equals `__expf_fma`, which glibc picks on CPUs with FMA).
    fn assert_libm_bits(values: &[f32]) {
        for (&x, y) in values.iter().zip(exps(values)) {
            let want = x.exp();
            if cfg!(all(target_env = "gnu", target_arch = "x86_64"))
                && std::is_x86_feature_detected!("fma")
            {
                assert_eq!(
                    y.to_bits(),
                    want.to_bits(),
                    "exp({x:e}): {y:e}, libm {want:e}"
                );
            } else {
                let ulps = (y.to_bits() as i64 - want.to_bits() as i64).abs();
                assert!(ulps <= 1 || (y.is_nan() && want.is_nan()), "exp({x:e})");
            }
        }
    }

    #[test]
    fn every_value_of_a_fine_sweep_gets_libms_bits() {
        // Every 211th float from -104 to 89 (past underflow to zero and overflow to infinity),
        // about 10 million values, in the lane positions and tails the loop gives them.
        let (low, high) = ((-104f32).to_bits(), 89f32.to_bits());
        let negatives = (0x8000_0000..=low).step_by(211).map(f32::from_bits);
        let positives = (0..=high).step_by(211).map(f32::from_bits);
        let values: Vec<f32> = negatives.chain(positives).collect();
        for chunk in values.chunks(4093) {
            assert_libm_bits(chunk);
        }
    }

    #[test]
    fn the_slow_paths_values_in_any_lane_get_libms_bits() {
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            88.0,
            88.72283,
            88.72284,
            -87.9,
            -88.0,
            -103.97,
            -103.98,
            -0.0,
            f32::MIN_POSITIVE,
            -f32::MAX,
        ];
        for &s in &special {
            for lane in 0..6 {
                let mut values = [0.5f32, -1.25, 3.0, -7.5, 0.0, 20.0];
                values[lane] = s;
                assert_libm_bits(&values);
            }
        }
    }
}
