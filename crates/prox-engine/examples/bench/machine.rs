//! What the machine can do, measured rather than assumed, so that the engine's figures can be
//! read as shares of it: the CPU's model, the kernels the engine chose, the float peak of
//! fused multiply-adds at each vector width the CPU has, on every thread at once, and the
//! memory bandwidth of a parallel copy (STREAM's "copy", counted as bytes read + written).
//!
//! A formula such as cores × FMA units × lanes × 2 × GHz needs the FMA units per core, which
//! no CPU flag tells (an AMD Zen 4 runs a 512-bit FMA as two 256-bit halves, some Xeons have
//! one 512-bit unit, others two): timing independent FMAs gives the answer.

use std::time::Instant;

use rayon::prelude::*;

/// The figures the benchmark divides by.
pub struct Machine {
    /// The best float32 GFLOP/s of the FMA loops, over the widths the CPU runs.
    pub peak_gflops: f64,
    /// GB/s of the parallel copy (read + written).
    pub copy_gbs: f64,
}

/// Measures the machine and prints it as `#` lines.
pub fn describe() -> Machine {
    let threads = rayon::current_num_threads();
    println!(
        "# cpu: {}, {} logical CPUs, {threads} threads",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("# kernels: {}", prox_engine::CpuKernels::detect());
    let mut peak_gflops = 0.0f64;
    for (width, lanes, gflops) in fma_peaks() {
        println!(
            "# f32 FMA peak, {width}-bit vectors ({lanes} lanes) on {threads} threads: \
             {gflops:.0} GFLOP/s"
        );
        peak_gflops = peak_gflops.max(gflops);
    }
    let copy_gbs = copy_bandwidth();
    println!(
        "# memory: parallel copy of {COPY_MIB} MiB on {threads} threads, {copy_gbs:.1} GB/s \
         (read + written)"
    );
    Machine {
        peak_gflops,
        copy_gbs,
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// FMA loop iterations per timing: about 0.1 s on a 2.5 GHz core at 256 bits.
const FMA_ITERATIONS: u64 = 20_000_000;
/// Independent chains per loop: more than latency × units (4 × 2 on current x86 cores), so
/// that the units, not a chain's latency, set the pace.
const CHAINS: usize = 12;

/// `(vector bits, f32 lanes, GFLOP/s)` for every FMA width this CPU runs, the best of 3.
fn fma_peaks() -> Vec<(usize, usize, f64)> {
    let mut peaks = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            peaks.push((256, 8, best_gflops(8, fma::run_256)));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            peaks.push((512, 16, best_gflops(16, fma::run_512)));
        }
    }
    peaks
}

/// Runs `chains(iterations)` on every thread at once, three times, and returns the best
/// aggregate GFLOP/s.
fn best_gflops(lanes: usize, chains: fn(u64) -> f32) -> f64 {
    let threads = rayon::current_num_threads();
    let flops = 2.0 * (FMA_ITERATIONS as f64) * (CHAINS * lanes * threads) as f64;
    (0..3)
        .map(|_| {
            let start = Instant::now();
            let sums = rayon::broadcast(|_| chains(FMA_ITERATIONS));
            std::hint::black_box(sums);
            flops / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fma {
    use std::arch::x86_64::*;

    use super::CHAINS;

    pub fn run_256(iterations: u64) -> f32 {
        // SAFETY: called only where `fma_peaks` found AVX2 and FMA.
        unsafe { chains_256(iterations) }
    }

    pub fn run_512(iterations: u64) -> f32 {
        // SAFETY: called only where `fma_peaks` found AVX512-F.
        unsafe { chains_512(iterations) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn chains_256(iterations: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        // SAFETY: `lanes` holds the 8 floats stored.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    fn chains_512(iterations: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..iterations {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        _mm512_reduce_add_ps(
            acc.iter()
                .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x)),
        )
    }
}

/// Each of the two buffers: far larger than any cache these machines have, and small
/// beside the model the benchmark loads next (the peak memory is reset after, where Linux
/// allows).
const COPY_MIB: usize = 256;

/// The best of 5 parallel copies of a `COPY_MIB` buffer into another, in GB/s counting the
/// bytes read and written (as STREAM's copy does). The best, so that the first copy's page
/// faults (the target is fresh zeroed memory) do not count.
fn copy_bandwidth() -> f64 {
    let len = COPY_MIB * 1024 * 1024 / std::mem::size_of::<f32>();
    let source = vec![1.0f32; len];
    let mut target = vec![0.0f32; len];
    let chunk = len.div_ceil(4 * rayon::current_num_threads());
    let bytes = 2.0 * (len * std::mem::size_of::<f32>()) as f64;
    (0..5)
        .map(|_| {
            let start = Instant::now();
            target
                .par_chunks_mut(chunk)
                .zip(source.par_chunks(chunk))
                .for_each(|(t, s)| t.copy_from_slice(s));
            std::hint::black_box(&target);
            bytes / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}
