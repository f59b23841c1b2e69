use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

use super::attention::GEMM_ATTENTION_MIN_QUERIES;
use super::*;
use crate::config::Config;

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

/// [`tiny_config`] with a context of 1,024 tokens.
fn long_context_model() -> Llama {
    random_model(&Config {
        max_position_embeddings: 1024,
        ..tiny_config()
    })
}

/// `seqs` through fresh caches of `capacity` tokens each: the logits at `at` (or the error),
/// and the tokens each cache holds afterwards.
fn forward_fresh(
    model: &Llama,
    seqs: &[&[u32]],
    capacity: usize,
    at: &LogitsAt,
) -> (CResult<Tensor>, Vec<usize>) {
    let mut caches: Vec<KvCache> = seqs
        .iter()
        .map(|_| KvCache::new(model, capacity).unwrap())
        .collect();
    let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
    let logits = model.forward(seqs, &mut refs, at);
    (logits, caches.iter().map(KvCache::len).collect())
}

#[test]
fn long_prompts_in_blocks_and_groups_equal_the_differentiable_path() {
    // 700 queries span several attention blocks; 1,350 tokens exceed one packed pass.
    let model = long_context_model();
    let prompts: Vec<Vec<u32>> = [700usize, 450, 200]
        .iter()
        .enumerate()
        .map(|(s, &len)| prompt(len, s))
        .collect();
    let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let (cached, lens) = forward_fresh(&model, &seqs, 720, &LogitsAt::Last);
    let cached = cached.unwrap();
    let plain = model.forward_uncached(&seqs, &LogitsAt::Last).unwrap();
    assert_eq!(cached.dims(), &[3, 50]);
    assert!(max_abs_diff(&cached, &plain) < 1e-4);
    assert_eq!(lens, [700, 450, 200]);
}

#[test]
fn chosen_rows_and_all_rows_in_groups_equal_the_differentiable_path() {
    let model = long_context_model();
    // More tokens than one packed pass: the prompts run in groups.
    let prompts: Vec<Vec<u32>> = [700usize, 450, 200]
        .iter()
        .map(|&len| (0..len).map(|i| 3 + (i % 45) as u32).collect())
        .collect();
    let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let plain = model.forward_uncached(&seqs, &LogitsAt::All).unwrap();
    // Out of batch order, a row twice; then rows of the second group only.
    for rows in [vec![1349, 3, 699, 1000, 3], vec![1200, 800]] {
        let (cached, lens) = forward_fresh(&model, &seqs, 700, &LogitsAt::Rows(rows.clone()));
        let cached = cached.unwrap();
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let expected = plain
            .index_select(&Tensor::new(index.as_slice(), &Device::Cpu).unwrap(), 0)
            .unwrap();
        assert_eq!(cached.dims(), &[rows.len(), 50]);
        assert!(max_abs_diff(&cached, &expected) < 1e-4);
        assert_eq!(lens, [700, 450, 200], "every group fills its caches");
    }
    let (all, _) = forward_fresh(&model, &seqs, 700, &LogitsAt::All);
    assert!(max_abs_diff(&all.unwrap(), &plain) < 1e-4);
    let (outside, _) = forward_fresh(&model, &seqs, 700, &LogitsAt::Rows(vec![1350]));
    assert!(outside.is_err());
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
    let randn = |shape: (usize, usize, usize)| Tensor::randn(0f32, 1.0, shape, &Device::Cpu);
    let k = randn((lk, cfg.num_kv_heads, cfg.head_dim)).unwrap();
    let v = randn((lk, cfg.num_kv_heads, cfg.head_dim)).unwrap();
    for lq in [1, 2, 5, GEMM_ATTENTION_MIN_QUERIES - 4] {
        let q = randn((lq, cfg.num_heads, cfg.head_dim)).unwrap();
        let fused = attn.attend_cached(&q, &k, &v, scale).unwrap();
        let gemm = attn.attend_matmul(&q, &k, &v, scale).unwrap();
        assert_eq!(fused.dims(), gemm.dims());
        let diff = max_abs_diff(&fused, &gemm);
        assert!(diff < 1e-5, "{lq} queries: {diff}");
    }
}

#[test]
fn a_decoding_step_reads_every_weight_but_the_embedding_table_unless_it_is_the_head() {
    // 64 wide, so that every projection quantizes to 32-value blocks.
    let tied = Config {
        hidden_size: 64,
        intermediate_size: 64,
        head_dim: 16,
        ..tiny_config()
    };
    let embedding = tied.vocab_size * tied.hidden_size * 4;
    let model = random_model(&tied);
    // Float and tied: the head is the table, read whole at every step.
    assert_eq!(model.weight_bytes_per_step(), model.weight_bytes());

    let untied = Config {
        tie_word_embeddings: false,
        ..tied.clone()
    };
    let model = random_model(&untied);
    assert_eq!(
        model.weight_bytes_per_step(),
        model.weight_bytes() - embedding
    );

    // Quantized, the tied head is a copy of its own: the table is left out again.
    let mut model = random_model(&tied);
    model.quantize(GgmlDType::Q8_0).unwrap();
    assert_eq!(
        model.weight_bytes_per_step(),
        model.weight_bytes() - embedding
    );
}

#[test]
fn a_few_float_rows_take_the_few_row_product_unless_gradients_are_needed() {
    let device = Device::Cpu;
    let values =
        |n: usize, scale: f32| (0..n).map(|i| (i as f32 * scale).sin()).collect::<Vec<_>>();
    let w = Tensor::from_vec(values(5 * 32, 0.37), (5, 32), &device).unwrap();
    let x = Tensor::from_vec(values(3 * 32, 0.11), (3, 32), &device).unwrap();
    let reference = x.matmul(&w.t().unwrap()).unwrap();
    let y = Linear::Float(w.clone()).forward(&x).unwrap();
    let diff = (y - &reference)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .unwrap();
    assert!(diff < 1e-5, "few rows differ from the GEMM by {diff}");

    // A trainable weight keeps candle's differentiable product: its gradient is there.
    let var = candle_core::Var::from_tensor(&w).unwrap();
    let y = Linear::Float(var.as_tensor().clone()).forward(&x).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let grad = grads
        .get(var.as_tensor())
        .expect("a gradient for the weight");
    // d(sum of x · Wᵀ)/dW: every row is the sum of x's rows.
    let want = x.sum_keepdim(0).unwrap().broadcast_as((5, 32)).unwrap();
    let diff = (grad - want)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .unwrap();
    assert!(diff < 1e-5, "the weight's gradient is off by {diff}");
}
