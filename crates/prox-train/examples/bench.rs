//! Training throughput on the CPU: tokens per second and model FLOP utilisation of full
//! optimiser steps (forward, backward, clipping, AdamW) for a small Llama.
//!
//!     cargo run --release -p prox-train --example bench -- [--hidden 256] [--layers 8]
//!         [--seq-len 512] [--micro-batch 4] [--steps 5] [--peak-gflops 166] [--target-len T]
//!
//! With `--target-len T`, a fine-tuning step instead (`prox finetune`'s): the loss on the last
//! `T` tokens of each sequence only, the rest being the prompt.
//!
//! Pin the core count with RAYON_NUM_THREADS (candle's matmuls use that pool). The same recipe
//! in PyTorch: `scripts/bench-train.sh`.

use std::time::Instant;

use prox_engine::Device;
use prox_train::optim::AdamWConfig;
use prox_train::{
    accumulate_gradients, accumulate_sft_gradients, apply_step, AdamW, LabelledSequence, Rng,
    TrainableModel,
};

// The allocator of the `prox` binary, so that the figures are what `prox train` and `prox
// finetune` get: with glibc's, every step's large tensors are unmapped when freed and faulted
// in again on the next step.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hidden = arg("--hidden", 256);
    let layers = arg("--layers", 8);
    let seq_len = arg("--seq-len", 512);
    let micro_batch = arg("--micro-batch", 4);
    let steps = arg("--steps", 5);
    let peak_gflops = arg("--peak-gflops", 166) as f64;
    let target_len = arg("--target-len", 0).min(seq_len);
    let base = prox_train::named_config("tiny").ok_or("no tiny config")?;
    let cfg = prox_engine::Config {
        hidden_size: hidden,
        num_layers: layers,
        intermediate_size: hidden * 11 / 4,
        head_dim: hidden / base.num_heads,
        ..base
    };
    // As the trainers do.
    prox_train::allocator::keep_freed_memory();
    let model = TrainableModel::init(&cfg, 1, &Device::Cpu)?;
    let sizes: Vec<usize> = model.params.iter().map(|(_, v)| v.elem_count()).collect();
    let mut params = model.host_params()?;
    let mut optimizer = AdamW::new(AdamWConfig::default(), &sizes);
    let mut rng = Rng::new(7);
    let mut batch = || -> Vec<Vec<u32>> {
        (0..micro_batch)
            .map(|_| {
                (0..=seq_len)
                    .map(|_| rng.below(cfg.vocab_size as u64) as u32)
                    .collect()
            })
            .collect()
    };

    // Model FLOPs per token (PaLM appendix B): 6 per weight outside the embedding lookup,
    // plus attention's score and value products, forward and backward.
    let weights = cfg.num_parameters() - cfg.vocab_size * cfg.hidden_size;
    let attention = 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len;
    let mut flops_per_token = (6 * weights + attention) as f64;
    if target_len > 0 {
        // Fine-tuning needs the output head only where the loss is taken.
        let head = (6 * cfg.vocab_size * cfg.hidden_size) as f64;
        flops_per_token -= head * (seq_len - target_len) as f64 / seq_len as f64;
    }
    let tokens_per_step = (micro_batch * seq_len) as f64;

    let mut gradients = || -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error>> {
        let blocks = batch();
        if target_len == 0 {
            return Ok(accumulate_gradients(&model, &[blocks])?.1);
        }
        let sequences: Vec<LabelledSequence> = blocks
            .iter()
            .map(|b| LabelledSequence {
                inputs: b[..seq_len].to_vec(),
                labels: b[1..].to_vec(),
                mask: (0..seq_len).map(|i| i >= seq_len - target_len).collect(),
            })
            .collect();
        Ok(accumulate_sft_gradients(&model, &[sequences])?.1)
    };
    // One step to warm caches and allocators, then the timed ones.
    let grads = gradients()?;
    apply_step(&model, &mut params, &mut optimizer, grads, 5e-4, 1.0)?;
    let started = Instant::now();
    for _ in 0..steps {
        let grads = gradients()?;
        apply_step(&model, &mut params, &mut optimizer, grads, 5e-4, 1.0)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let tokens_per_s = tokens_per_step * steps as f64 / seconds;
    let achieved = tokens_per_s * flops_per_token / 1e9;
    println!(
        "prox-train: hidden {hidden}, {layers} layers, {} parameters, seq {seq_len} x {micro_batch}, \
         loss on {}: {tokens_per_s:.0} tokens/s, {:.3} s/step, {achieved:.1} GFLOP/s = {:.1}% of \
         {peak_gflops} GFLOP/s",
        cfg.num_parameters(),
        if target_len == 0 { "every token".to_owned() } else { format!("the last {target_len}") },
        seconds / steps as f64,
        100.0 * achieved / peak_gflops
    );
    Ok(())
}
