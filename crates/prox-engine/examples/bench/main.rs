//! Throughput of the engine on the full ProX refiner shape (random weights): prefill and
//! decode tokens/s, the constrained document-stage choice against free decoding, peak memory.
//!
//!     cargo run --release -p prox-engine --example bench -- --dtype f32|bf16|f16|q8_0|q8_0-candle \
//!         [--reps 3] [--prompt 512] [--prefill-batches 1,8] [--decode-batches 1,8,32] \
//!         [--decode-steps 8] [--choice-batch 8] [--choice-reps 1] [--load DIR] \
//!         [--device cpu|cuda|cuda:N]
//!     cargo run --release -p prox-engine --example bench -- --save DIR
//!     cargo run --release -p prox-engine --example bench -- --products 1,8,32,512 [--reps 5]
//!
//! One dtype per process, so that the peak resident memory (`VmHWM`) is that dtype's; each
//! phase's own peak is the last column (the peak is reset between phases where Linux allows).
//! `--save DIR` writes the random model as a Hugging Face folder (f32 safetensors, 1.4 GB)
//! and exits; `--load DIR` loads such a folder through `Model::load` instead of building the
//! model in memory, and reports the load time and its peak memory against the weights (run
//! with `--prefill-batches '' --decode-batches '' --choice-batch 0` to load only).
//! `--products N,..` times one layer's projections alone (the refiner's shapes, random
//! weights) for N tokens: the engine's f32 product against the Q8_0 product on every kernel
//! this CPU runs, interleaved, whatever `PROX_Q8_KERNEL` says, and exits.
//! Every run first measures the machine (`machine.rs`): the CPU, the kernels chosen, the
//! f32 FMA peak and the bandwidth of a parallel copy. The `of_peak` column divides GFLOP/s
//! by that peak; decoding also gives the GB/s of weights it reads, against the copy's.
//! `scripts/bench-engine.sh` runs every dtype.

mod machine;

use std::path::{Path, PathBuf};
use std::time::Instant;

use prox_engine::{
    choose, generate, ChooseOptions, Config, DType, Device, GenerateOptions, GgmlDType, KvCache,
    Linear, Llama, LoadOptions, LogitsAt, Model, Q8Kernel, Request,
};

// The allocator of the `prox` binary, so that the figures are what `prox` gets: with glibc's,
// each layer's fresh buffers are faulted in from the kernel again (about a tenth of prefill).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    dtype: String,
    reps: usize,
    prompt: usize,
    prefill_batches: Vec<usize>,
    decode_batches: Vec<usize>,
    decode_steps: usize,
    choice_batch: usize,
    choice_reps: usize,
    save: Option<PathBuf>,
    load: Option<PathBuf>,
    device: String,
    products: Vec<usize>,
}

fn parse_args() -> AnyResult<Args> {
    let mut args = Args {
        dtype: "f32".into(),
        reps: 3,
        prompt: 512,
        prefill_batches: vec![1, 8],
        decode_batches: vec![1, 8, 32],
        decode_steps: 8,
        choice_batch: 8,
        choice_reps: 1,
        save: None,
        load: None,
        device: "cpu".into(),
        products: Vec::new(),
    };
    let list = |v: &str| -> AnyResult<Vec<usize>> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| Ok(s.parse()?))
            .collect()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dtype" => args.dtype = value,
            "--reps" => args.reps = value.parse()?,
            "--prompt" => args.prompt = value.parse()?,
            "--prefill-batches" => args.prefill_batches = list(&value)?,
            "--decode-batches" => args.decode_batches = list(&value)?,
            "--decode-steps" => args.decode_steps = value.parse()?,
            "--choice-batch" => args.choice_batch = value.parse()?,
            "--choice-reps" => args.choice_reps = value.parse::<usize>()?.max(1),
            "--save" => args.save = Some(value.into()),
            "--load" => args.load = Some(value.into()),
            "--device" => args.device = value,
            "--products" => args.products = list(&value)?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Resets `VmHWM` to the current RSS, so that the next reading is the peak of what follows.
/// Returns false where the kernel does not allow it (then peaks accumulate).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak RSS since the last [`reset_peak`], in MiB.
fn peak_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

/// Writes the random refiner as a Hugging Face folder: `config.json` and f32
/// `model.safetensors`.
fn save(dir: &Path, cfg: &Config) -> AnyResult<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&cfg.to_hf_json())?,
    )?;
    let start = Instant::now();
    let tensors = Llama::random_weights(cfg, DType::F32, &Device::Cpu, 1)?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    println!(
        "# saved {} ({:.1}s)",
        dir.join("model.safetensors").display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A share as a whole percentage.
fn percent(share: f64) -> String {
    format!("{:.0}%", 100.0 * share)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Deterministic prompt tokens (never BOS/EOS).
fn prompt(len: usize, seed: usize) -> Vec<u32> {
    (0..len)
        .map(|i| 3 + ((i * 7919 + seed * 104_729) % 31_000) as u32)
        .collect()
}

/// One layer's projections (`[out, in]`: q, k, v, o, gate, up, down) for `tokens` tokens:
/// the engine's product for f32 weights (`Linear::Float`: the few-row product up to 12 tokens,
/// else the float GEMM), and the Q8_0 product on each kernel, repetitions interleaved so that
/// a busy machine slows every path alike.
fn products(cfg: &Config, args: &Args, machine: &machine::Machine) -> AnyResult<()> {
    use prox_engine::q8::Kernel;
    use prox_engine::Q8Matrix;
    let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let shapes = [(h, h), (kv, h), (kv, h), (h, h), (m, h), (m, h), (h, m)];
    let flops_per_token: usize = shapes.iter().map(|(o, i)| 2 * o * i).sum();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    };
    let mut layer = Vec::new();
    for &(out_dim, in_dim) in &shapes {
        let w = candle_core::Tensor::from_vec(
            random(out_dim * in_dim),
            (out_dim, in_dim),
            &Device::Cpu,
        )?;
        layer.push((Q8Matrix::quantize(&w)?, Linear::Float(w)));
    }
    let kernels = Kernel::available();
    println!("# one layer's projections, {flops_per_token} FLOP per token; kernels: {kernels:?}");
    println!("path\ttokens\tmedian_s\tgflops\tof_peak\tvs_f32\treps");
    for &tokens in &args.products {
        let inputs: Vec<Vec<f32>> = shapes.iter().map(|&(_, i)| random(tokens * i)).collect();
        let tensors = inputs
            .iter()
            .zip(&shapes)
            .map(|(x, &(_, i))| candle_core::Tensor::from_slice(x, (tokens, i), &Device::Cpu))
            .collect::<Result<Vec<_>, _>>()?;
        // Slot 0: f32; then one per kernel.
        let mut times = vec![Vec::new(); 1 + kernels.len()];
        for _ in 0..args.reps {
            let t = Instant::now();
            for ((_, w), x) in layer.iter().zip(&tensors) {
                std::hint::black_box(w.forward(x)?);
            }
            times[0].push(t.elapsed().as_secs_f64());
            for (slot, &kernel) in times[1..].iter_mut().zip(&kernels) {
                let t = Instant::now();
                for ((q, _), x) in layer.iter().zip(&inputs) {
                    std::hint::black_box(q.matmul_with(x, kernel)?);
                }
                slot.push(t.elapsed().as_secs_f64());
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        let names = std::iter::once("f32".to_owned())
            .chain(kernels.iter().map(|k| format!("q8_0-{}", k.name())));
        for (name, &m) in names.zip(&medians) {
            let gflops = (flops_per_token * tokens) as f64 / m / 1e9;
            println!(
                "{name}\t{tokens}\t{m:.5}\t{gflops:.1}\t{}\t{:.2}\t{}",
                percent(gflops / machine.peak_gflops),
                medians[0] / m,
                args.reps
            );
        }
    }
    Ok(())
}

fn main() -> AnyResult<()> {
    let args = parse_args()?;
    let cfg = Config::prox_refiner();
    // `q8_0-candle`: the same Q8_0 blocks computed by candle's QMatMul, for comparison.
    let (dtype, quantize, kernel) = match args.dtype.as_str() {
        "f32" => (DType::F32, None, Q8Kernel::Engine),
        "bf16" => (DType::BF16, None, Q8Kernel::Engine),
        "f16" => (DType::F16, None, Q8Kernel::Engine),
        "q8_0" => (DType::F32, Some(GgmlDType::Q8_0), Q8Kernel::Engine),
        "q8_0-candle" => (DType::F32, Some(GgmlDType::Q8_0), Q8Kernel::Candle),
        "q4_k" => (DType::F32, Some(GgmlDType::Q4K), Q8Kernel::Engine),
        other => return Err(format!("unknown dtype {other}").into()),
    };
    if let Some(dir) = &args.save {
        return save(dir, &cfg);
    }
    let machine = machine::describe();
    if !args.products.is_empty() {
        return products(&cfg, &args, &machine);
    }
    let device = prox_engine::parse_device(&args.device)?;
    println!("# device={}", args.device);
    let resets = reset_peak();
    let rss_at_start = status_kib("VmRSS:") as f64 / 1024.0;
    let start = Instant::now();
    let model = match &args.load {
        Some(dir) => {
            if kernel != Q8Kernel::Engine {
                return Err("--load computes Q8_0 with the engine's kernel only".into());
            }
            let options = LoadOptions {
                dtype,
                quantize,
                device: device.clone(),
                ..LoadOptions::default()
            };
            let model = Model::load(dir, &options)?.llama;
            if model.config() != &cfg {
                return Err(format!("{} is not the refiner shape", dir.display()).into());
            }
            model
        }
        None => {
            let mut model = Llama::random(&cfg, dtype, &device, 1)?;
            if let Some(q) = quantize {
                model.quantize_with(q, kernel)?;
            }
            model
        }
    };
    let load_s = start.elapsed().as_secs_f64();
    let rss_loaded = status_kib("VmRSS:");
    let load_peak = peak_mib();
    let weights = mib(model.weight_bytes());
    println!(
        "# {}: load={load_s:.2}s weights={weights:.0}MiB peak_rss_load={load_peak:.0}MiB ({:.2}x weights; {rss_at_start:.0}MiB before loading)",
        match &args.load {
            Some(dir) => format!("loaded {} through Model::load", dir.display()),
            None => "random weights built in memory".to_owned(),
        },
        load_peak / weights
    );
    // Matmul parameters (embeddings are a lookup): the FLOPs per token are 2 × these,
    // plus attention.
    let n_params = cfg.num_parameters() - cfg.vocab_size * cfg.hidden_size;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!(
        "# dtype={} params={} matmul_params={n_params} threads={threads} load={load_s:.1}s rss_after_load={:.0}MiB",
        args.dtype,
        cfg.num_parameters(),
        rss_loaded as f64 / 1024.0
    );
    println!(
        "dtype\tphase\tbatch\ttokens\tmedian_s\ttokens_per_s\tgflops\tof_peak\tweights_gbs\treps\tpeak_rss_mib"
    );
    // A GPU's figures are not shares of this CPU's.
    let of_peak = |gflops: f64| {
        if device.is_cpu() {
            percent(gflops / machine.peak_gflops)
        } else {
            "-".to_owned()
        }
    };
    // The largest set of caches alive at once, and the largest phase peak, for the memory
    // ratio at the end.
    let mut kv_bytes = 0usize;
    let mut run_peak = load_peak;
    let mut phase_peak = || {
        let p = peak_mib();
        run_peak = run_peak.max(p);
        p
    };

    // Prefill: `batch` prompts of `prompt` tokens in one packed call.
    for &batch in &args.prefill_batches {
        reset_peak();
        kv_bytes = kv_bytes.max(batch * model.kv_cache_bytes(args.prompt));
        let prompts: Vec<Vec<u32>> = (0..batch).map(|b| prompt(args.prompt, b)).collect();
        let mut times = Vec::new();
        for _ in 0..args.reps {
            let mut caches = (0..batch)
                .map(|_| KvCache::new(&model, args.prompt))
                .collect::<Result<Vec<_>, _>>()?;
            let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            let t = Instant::now();
            model.forward(&seqs, &mut refs, &LogitsAt::Last)?;
            // GPU kernels run asynchronously: the time is the work's only once it is done.
            device.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
        }
        let tokens = batch * args.prompt;
        let m = median(times);
        let gflops = 2.0 * n_params as f64 * tokens as f64 / m / 1e9;
        println!(
            "{}\tprefill\t{batch}\t{tokens}\t{m:.3}\t{:.1}\t{gflops:.1}\t{}\t-\t{}\t{:.0}",
            args.dtype,
            tokens as f64 / m,
            of_peak(gflops),
            args.reps,
            phase_peak()
        );
    }

    // Decode: `batch` sequences with a 64-token context advance one token per call.
    let context = 64;
    for &batch in &args.decode_batches {
        reset_peak();
        kv_bytes = kv_bytes.max(batch * model.kv_cache_bytes(context + args.decode_steps));
        let mut times = Vec::new();
        for _ in 0..args.reps {
            let mut caches = (0..batch)
                .map(|_| KvCache::new(&model, context + args.decode_steps))
                .collect::<Result<Vec<_>, _>>()?;
            let prompts: Vec<Vec<u32>> = (0..batch).map(|b| prompt(context, b)).collect();
            let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
            {
                let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
                model.forward(&seqs, &mut refs, &LogitsAt::Last)?;
            }
            let t = Instant::now();
            for step in 0..args.decode_steps {
                let tokens: Vec<[u32; 1]> = (0..batch).map(|b| [(10 + b + step) as u32]).collect();
                let seqs: Vec<&[u32]> = tokens.iter().map(|t| t.as_slice()).collect();
                let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
                model.forward(&seqs, &mut refs, &LogitsAt::Last)?;
            }
            device.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
        }
        let tokens = batch * args.decode_steps;
        let m = median(times);
        let gflops = 2.0 * n_params as f64 * tokens as f64 / m / 1e9;
        // Every step reads the weights once, for the whole batch.
        let weights_gbs = (model.weight_bytes_per_step() * args.decode_steps) as f64 / m / 1e9;
        let weights_column = if device.is_cpu() {
            format!(
                "{weights_gbs:.1} ({} of copy)",
                percent(weights_gbs / machine.copy_gbs)
            )
        } else {
            format!("{weights_gbs:.1}")
        };
        println!(
            "{}\tdecode\t{batch}\t{tokens}\t{m:.3}\t{:.1}\t{gflops:.1}\t{}\t{weights_column}\t{}\t{:.0}",
            args.dtype,
            tokens as f64 / m,
            of_peak(gflops),
            args.reps,
            phase_peak()
        );
    }

    // The document stage: choose between two 5-token answers (`▁drop _ doc () </s>`,
    // `▁keep _ doc () </s>`) against free greedy decoding of 5 tokens (the least a
    // well-behaved model needs) and of 32 (a `--max-new-tokens` cap reached when the
    // model does not stop; random weights never emit EOS).
    if args.choice_batch > 0 {
        let batch = args.choice_batch;
        // The choice holds a cache per prompt and candidate (each branch continues its own
        // copy), free decoding a cache per prompt.
        kv_bytes = kv_bytes.max(2 * batch * model.kv_cache_bytes(args.prompt + 4));
        kv_bytes = kv_bytes.max(batch * model.kv_cache_bytes(args.prompt + 32));
        let prompts: Vec<Vec<u32>> = (0..batch).map(|b| prompt(args.prompt, b)).collect();
        let candidates = [
            vec![5768, 29918, 1514, 580, 2],
            vec![3013, 29918, 1514, 580, 2],
        ];
        let time = |f: &dyn Fn() -> AnyResult<()>| -> AnyResult<f64> {
            let mut times = Vec::new();
            for _ in 0..args.choice_reps {
                let t = Instant::now();
                f()?;
                times.push(t.elapsed().as_secs_f64());
            }
            Ok(median(times))
        };
        reset_peak();
        let choice = time(&|| {
            choose(&model, &prompts, &candidates, &ChooseOptions::default())?;
            Ok(())
        })?;
        println!(
            "{}\tchoice\t{batch}\t{}\t{choice:.3}\t-\t-\t-\t-\t{}\t{:.0}",
            args.dtype,
            batch * args.prompt,
            args.choice_reps,
            phase_peak()
        );
        for new_tokens in [5usize, 32] {
            reset_peak();
            let requests = Request::batch(&prompts, new_tokens);
            let options = GenerateOptions {
                eos_token_ids: Some(Vec::new()),
                ..GenerateOptions::default()
            };
            let free = time(&|| {
                generate(&model, &requests, &options)?;
                Ok(())
            })?;
            println!(
                "{}\tchoice-vs-free{new_tokens}\t{batch}\t{}\t{choice:.3}\t(free {free:.3}s, saves {:.0}%; forward tokens {} vs {})\t-\t-\t-\t{}\t{:.0}",
                args.dtype,
                batch * args.prompt,
                100.0 * (1.0 - choice / free),
                batch * (args.prompt + 2 * 4),
                batch * (args.prompt + new_tokens - 1),
                args.choice_reps,
                phase_peak()
            );
        }
    }
    let kv = mib(kv_bytes);
    let peak = if resets { run_peak } else { peak_mib() };
    println!(
        "# peak_rss={peak:.0}MiB = {:.3}x (weights {weights:.0}MiB + kv {kv:.0}MiB, the largest \
         set of caches of one phase){}",
        peak / (weights + kv),
        if args.load.is_none() && quantize.is_some() {
            "; built in memory, the quantized model's load peak includes its f32 weights"
        } else {
            ""
        }
    );
    Ok(())
}
