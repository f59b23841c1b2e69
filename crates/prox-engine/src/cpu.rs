//! Which CPU kernels the engine computes with on this machine: the float GEMM's path, the
//! few-row float product's and the Q8_0 kernel, each chosen at run time from the CPU's
//! features. `prox … -v` logs them once, and the engine benchmark prints them above its
//! figures.

use std::fmt;

use crate::float_gemm::FloatGemm;
use crate::float_rows::FloatRows;
use crate::q8::Kernel;

/// The kernels chosen on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuKernels {
    /// The kernels of the float GEMM (candle's `gemm` crate): `avx512f`, `avx2+fma`, `neon`
    /// or `scalar`.
    pub float_gemm: &'static str,
    /// The vector path of the engine's few-row float product (decoding steps of up to
    /// [`crate::float_rows::FEW_ROWS`] tokens), if this CPU has one.
    pub float_rows: Option<&'static str>,
    /// The Q8_0 kernel [`Kernel::Best`] stands for, after any `PROX_Q8_KERNEL` cap.
    pub q8_0: Kernel,
    /// The cap set by `PROX_Q8_KERNEL`, if any (an unknown value is reported where the
    /// kernel is first used, not here).
    pub q8_0_cap: Option<Kernel>,
}

impl CpuKernels {
    /// Detects the kernels once per call (feature detection is cached by the standard
    /// library, so this is cheap).
    pub fn detect() -> CpuKernels {
        CpuKernels {
            float_gemm: float_gemm_path(),
            float_rows: FloatRows::detect().map(FloatRows::name),
            q8_0: Kernel::best(),
            q8_0_cap: Kernel::cap_from_env().ok().flatten(),
        }
    }
}

impl fmt::Display for CpuKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "float GEMM {}", self.float_gemm)?;
        if let Some(rows) = self.float_rows {
            write!(f, " (few rows {rows})")?;
        }
        write!(f, ", Q8_0 {}", self.q8_0.name())?;
        if let Some(cap) = self.q8_0_cap {
            write!(
                f,
                " (capped at {} by {})",
                cap.name(),
                crate::q8::KERNEL_ENV
            )?;
        }
        Ok(())
    }
}

/// Proof that this CPU has AVX2 and FMA: only [`Avx2::detect`] makes one, and the kernels
/// compiled for them (the Q8_0 kernels, the few-row product) take one as leave to run.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    pub(crate) fn detect() -> Option<Avx2> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }
}

/// The kernels of the weight products ([`FloatGemm::chosen`]), else the path `gemm` 0.19
/// picks for candle's `matmul`, by the same tests in the same order as its dispatch
/// (`gemm-common`'s `init_gemm_fn`).
fn float_gemm_path() -> &'static str {
    match FloatGemm::chosen() {
        Ok(Some(gemm)) => return gemm.name(),
        Ok(None) => {}
        Err(_) => return "unknown (PROX_FLOAT_GEMM names no path)",
    }
    // FloatGemm takes every x86-64 CPU with AVX2 and FMA; one without them has no AVX-512
    // either, and `gemm` computes in scalar code.
    #[cfg(target_arch = "x86_64")]
    {
        "scalar"
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            "neon"
        } else {
            "scalar"
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_a_kernel_this_cpu_runs() {
        let kernels = CpuKernels::detect();
        assert!(Kernel::available().contains(&kernels.q8_0));
        let line = kernels.to_string();
        assert!(line.starts_with(&format!("float GEMM {}", kernels.float_gemm)));
        let widest = match FloatGemm::avx512_allowed() {
            true => FloatRows::available().last().map(|path| path.name()),
            false => FloatRows::available().first().map(|path| path.name()),
        };
        assert_eq!(kernels.float_rows, widest);
        assert!(line.contains(kernels.q8_0.name()));
    }
}
