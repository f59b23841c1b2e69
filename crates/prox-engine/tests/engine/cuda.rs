//! The engine on a CUDA GPU against the same model on the CPU. Compiled only with the `cuda`
//! feature, and run only where there is an NVIDIA GPU: a CUDA build links libcuda.so.1 (the
//! driver), so its test binaries do not even start on a machine without one.
//!
//! `cargo test -p prox-engine --features cuda --test engine cuda::` (see scripts/check-cuda.sh
//! for a toolkit). Each test names the path it exercises: decoding through matrix products
//! instead of the CPU's fused kernel, bf16/f16 compute, and quantized projections through
//! candle's CUDA kernels instead of the engine's CPU Q8_0 kernel.

use candle_core::Tensor;
use prox_engine::{
    generate, Config, DType, Device, DeviceSpec, GenerateOptions, GgmlDType, KvCache, Linear,
    Llama, LoadOptions, LogitsAt, Model, Request,
};

use crate::common;

fn gpu() -> Device {
    DeviceSpec::Cuda(0)
        .open()
        .unwrap_or_else(|e| panic!("these tests need a CUDA GPU: {e}"))
}

fn config() -> Config {
    Config {
        hidden_size: 64,
        intermediate_size: 96,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 1,
        head_dim: 16,
        vocab_size: 50,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: false,
        rope_interleaved: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

/// Every value of a tensor, copied to the host.
fn values(a: &Tensor) -> Vec<f32> {
    a.to_device(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    common::max_abs_diff(&values(a), &values(b))
}

fn max_abs(a: &Tensor) -> f32 {
    max_abs_diff(a, &a.zeros_like().unwrap())
}

/// A 40-token prompt (prefill through blocked matrix products) and a 3-token one, then three
/// decoding steps of one token each: logits at every step, concatenated.
fn prefill_then_decode(model: &Llama) -> Tensor {
    let long: Vec<u32> = (0..40).map(|i| 3 + (i * 7 % 45)).collect();
    let short: Vec<u32> = vec![1, 5, 7];
    let mut a = KvCache::new(model, 64).unwrap();
    let mut b = KvCache::new(model, 64).unwrap();
    let mut logits = vec![model
        .forward(&[&long, &short], &mut [&mut a, &mut b], &LogitsAt::All)
        .unwrap()];
    for step in 0..3u32 {
        let (x, y) = ([10 + step], [20 + step]);
        logits.push(
            model
                .forward(&[&x, &y], &mut [&mut a, &mut b], &LogitsAt::Last)
                .unwrap(),
        );
    }
    Tensor::cat(&logits, 0).unwrap()
}

#[test]
fn f32_prefill_and_decoding_on_the_gpu_match_the_cpu() {
    let cfg = config();
    let cpu = Llama::random(&cfg, DType::F32, &Device::Cpu, 7).unwrap();
    let gpu = Llama::random(&cfg, DType::F32, &gpu(), 7).unwrap();
    assert!(gpu.device().is_cuda());
    let (a, b) = (prefill_then_decode(&cpu), prefill_then_decode(&gpu));
    assert!(b.device().is_cuda());
    assert_eq!(a.dims(), b.dims());
    let diff = max_abs_diff(&a, &b);
    // cuBLAS sums in another order (and may use TF32 only if asked: candle does not).
    assert!(diff < 1e-4 * max_abs(&a).max(1.0), "{diff}");
}

#[test]
fn the_differentiable_path_on_the_gpu_matches_the_cpu() {
    let cfg = config();
    let cpu = Llama::random(&cfg, DType::F32, &Device::Cpu, 7).unwrap();
    let gpu = Llama::random(&cfg, DType::F32, &gpu(), 7).unwrap();
    let seqs: [&[u32]; 2] = [&[1, 5, 7, 9, 11], &[1, 3]];
    let a = cpu.forward_uncached(&seqs, &LogitsAt::All).unwrap();
    let b = gpu.forward_uncached(&seqs, &LogitsAt::All).unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-4 * max_abs(&a).max(1.0), "{diff}");
}

#[test]
fn half_precision_on_the_gpu_stays_close_to_f32_on_the_cpu() {
    let cfg = config();
    let reference = prefill_then_decode(&Llama::random(&cfg, DType::F32, &Device::Cpu, 7).unwrap());
    for dtype in [DType::BF16, DType::F16] {
        let model = Llama::random(&cfg, dtype, &gpu(), 7).unwrap();
        let logits = prefill_then_decode(&model);
        assert_eq!(logits.dtype(), DType::F32);
        let diff = max_abs_diff(&reference, &logits);
        assert!(diff < 0.05 * max_abs(&reference), "{dtype:?}: {diff}");
    }
}

/// The largest difference in each row of two `[rows, width]` matrices.
fn row_diffs(a: &[f32], b: &[f32], width: usize) -> Vec<f32> {
    a.chunks(width)
        .zip(b.chunks(width))
        .map(|(a, b)| common::max_abs_diff(a, b))
        .collect()
}

#[test]
fn q8_0_projections_on_the_gpu_use_candles_kernels_and_stay_near_f32() {
    let cfg = config();
    let reference = Llama::random(&cfg, DType::F32, &Device::Cpu, 7).unwrap();
    let mut cpu = Llama::random(&cfg, DType::F32, &Device::Cpu, 7).unwrap();
    let mut gpu = Llama::random(&cfg, DType::F32, &gpu(), 7).unwrap();
    cpu.quantize(GgmlDType::Q8_0).unwrap();
    gpu.quantize(GgmlDType::Q8_0).unwrap();
    // The engine's Q8_0 kernel is CPU code: on the GPU the same blocks go to candle.
    assert!(matches!(cpu.layers[0].self_attn.q_proj, Linear::Q8(_)));
    assert!(matches!(
        gpu.layers[0].self_attn.q_proj,
        Linear::Quantized(_)
    ));
    let [f, a, b] = [&reference, &cpu, &gpu].map(|m| values(&prefill_then_decode(m)));
    let range = f.iter().fold(0f32, |m, x| m.max(x.abs()));
    let (cpu_rows, gpu_rows) = (
        row_diffs(&f, &a, cfg.vocab_size),
        row_diffs(&f, &b, cfg.vocab_size),
    );
    let worst = |rows: &[f32]| rows.iter().fold(0f32, |m, &x| m.max(x));
    // Rows 0..43: the prefill (43 tokens: candle dequantizes the weights); 43..: decoding
    // (2 tokens a step: candle's vector kernel, activations rounded to Q8_1).
    let (prefill, decode) = (43, cpu_rows.len());
    eprintln!(
        "q8_0 against f32, logit range {range}: engine (CPU) prefill {} decode {}; candle (GPU) prefill {} decode {}",
        worst(&cpu_rows[..prefill]),
        worst(&cpu_rows[prefill..decode]),
        worst(&gpu_rows[..prefill]),
        worst(&gpu_rows[prefill..decode]),
    );
    // Both round weights (and the engine activations) to 8 bits: about 1% of the logit range.
    assert!(worst(&cpu_rows) < 0.02 * range, "{cpu_rows:?}");
    assert!(worst(&gpu_rows) < 0.02 * range, "{gpu_rows:?}");
    // Rounded weights cannot give f32's logits to the bit. On the H200 (2026-12-04) they did,
    // although candle's product alone rounds (the test below), and an earlier run of the
    // same model found the GPU's logits 4.4% of the range from the CPU's Q8_0 ones: unexplained.
    assert!(
        worst(&gpu_rows) > 0.0,
        "the GPU's Q8_0 model computed f32's very logits"
    );
}

/// candle's Q8_0 product on the GPU against the exact product of the same f32 matrices, on a
/// few tokens (its vector kernel) and on many (dequantized weights), at the test model's small
/// widths and at a real model's.
#[test]
fn candles_q8_0_products_on_the_gpu_are_within_8_bit_rounding() {
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::Module;
    let mut failed = Vec::new();
    for (tokens, k, n) in [
        (2, 64, 96),
        (43, 64, 96),
        (2, 96, 64),
        (2, 256, 512),
        (43, 256, 512),
        (2, 1024, 2816),
        (64, 1024, 2816),
    ] {
        let x = Tensor::randn(0f32, 1.0, (tokens, k), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
        let exact = values(&x.matmul(&w.t().unwrap()).unwrap());
        let q = QTensor::quantize(&w.to_device(&gpu()).unwrap(), GgmlDType::Q8_0).unwrap();
        let y = QMatMul::from_qtensor(q)
            .unwrap()
            .forward(&x.to_device(&gpu()).unwrap())
            .unwrap();
        let got = values(&y);
        let range = exact.iter().fold(0f32, |m, x| m.max(x.abs()));
        let error = common::max_abs_diff(&exact, &got) / range;
        eprintln!("{tokens} x {k} -> {n}: error {error:.5} of the range {range}");
        // Weights and activations rounded to 8 bits: 0.70-0.81% measured on the H200.
        if error > 0.02 {
            failed.push(format!("{tokens}x{k}->{n}: {error}"));
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn greedy_generation_of_the_tiny_llama_is_the_same_on_the_gpu() {
    let dir = prox_test::fixture("tiny-llama");
    let cpu = Model::load(&dir, &LoadOptions::default()).unwrap();
    let on_gpu = LoadOptions {
        device: gpu(),
        ..LoadOptions::default()
    };
    let gpu = Model::load(&dir, &on_gpu).unwrap();
    let requests = Request::batch([&[1u32, 450, 4996][..], &[1, 910, 338, 263, 1243]], 16);
    let options = GenerateOptions::default();
    let a = generate(&cpu.llama, &requests, &options).unwrap();
    let b = generate(&gpu.llama, &requests, &options).unwrap();
    for (i, (a, b)) in a.into_iter().zip(b).enumerate() {
        let (a, b) = (a.unwrap(), b.unwrap());
        // Equal up to the first step whose margin is within rounding of a tie.
        let decisive = a
            .margins
            .iter()
            .position(|&m| m < 1e-3)
            .unwrap_or(a.ids.len());
        assert_eq!(
            a.ids[..decisive],
            b.ids[..decisive.min(b.ids.len())],
            "request {i}"
        );
    }
}
