"""PyTorch side of scripts/bench-engine.sh (and of scripts/gpu-check.sh with `--device cuda`):
the full ProX refiner shape with random weights (hidden 1280, 24 layers, 16 heads, 1 key/value
head, MLP 2048, vocab 32000), float32 on the CPU unless `--device`/`--dtype` say otherwise,
timed as `cargo run --release -p prox-engine --example bench` times our engine:

- prefill: `batch` prompts of `--prompt` tokens in one forward pass (PyTorch pads nothing:
  the prompts have equal length), logits of the last position only, as ours;
- decode: `batch` sequences with a 64-token context advance one token per forward pass,
  with the key/value cache, `--decode-steps` times.

Prints the same tab-separated rows, with `torch-f32` (or `torch-bf16`, `torch-f16`) as the dtype, and the peak resident
memory. FLOPs count the matrix-product parameters (embeddings excluded), as ours do.
"""

import argparse
import resource
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def batches(value):
    return [int(v) for v in value.split(",") if v]


parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--reps", type=int, default=3)
parser.add_argument("--prompt", type=int, default=512)
parser.add_argument("--prefill-batches", type=batches, default=[1, 8])
parser.add_argument("--decode-batches", type=batches, default=[1, 8, 32])
parser.add_argument("--decode-steps", type=int, default=8)
parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
parser.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
args = parser.parse_args()
device = torch.device(args.device)
dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
label = f"torch-{args.dtype}"


def synchronize():
    # GPU kernels run asynchronously: a time is the work's only once the device is idle.
    if device.type == "cuda":
        torch.cuda.synchronize(device)

torch.set_num_threads(args.threads)
torch.manual_seed(1)
config = LlamaConfig(
    hidden_size=1280,
    intermediate_size=2048,
    num_hidden_layers=24,
    num_attention_heads=16,
    num_key_value_heads=1,
    vocab_size=32000,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)
model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
params = sum(p.numel() for p in model.parameters())
matmul_params = params - config.vocab_size * config.hidden_size
print(
    f"# dtype={label} device={device} torch={torch.__version__} params={params} "
    f"matmul_params={matmul_params} threads={torch.get_num_threads()}"
)
print("dtype\tphase\tbatch\ttokens\tmedian_s\ttokens_per_s\tgflops\treps")


def prompt(length, seed):
    # The same deterministic tokens as the Rust bench.
    return [3 + (i * 7919 + seed * 104_729) % 31_000 for i in range(length)]


def row(phase, batch, tokens, seconds):
    gflops = 2.0 * matmul_params * tokens / seconds / 1e9
    print(
        f"{label}\t{phase}\t{batch}\t{tokens}\t{seconds:.3f}\t{tokens / seconds:.1f}"
        f"\t{gflops:.1f}\t{args.reps}",
        flush=True,
    )


with torch.inference_mode():
    # The first passes pay for one-time setup (thread pools, kernel selection).
    for _ in range(2):
        model(
            input_ids=torch.tensor([prompt(64, 0)], device=device), use_cache=True, logits_to_keep=1
        )
    for batch in args.prefill_batches:
        ids = torch.tensor([prompt(args.prompt, b) for b in range(batch)], device=device)
        times = []
        for _ in range(args.reps):
            synchronize()
            started = time.perf_counter()
            model(input_ids=ids, use_cache=True, logits_to_keep=1)
            synchronize()
            times.append(time.perf_counter() - started)
        row("prefill", batch, batch * args.prompt, statistics.median(times))

    context = 64
    for batch in args.decode_batches:
        ids = torch.tensor([prompt(context, b) for b in range(batch)], device=device)
        times = []
        for _ in range(args.reps):
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            synchronize()
            started = time.perf_counter()
            for step in range(args.decode_steps):
                step_ids = torch.tensor([[10 + b + step] for b in range(batch)], device=device)
                out = model(
                    input_ids=step_ids, past_key_values=cache, use_cache=True, logits_to_keep=1
                )
                cache = out.past_key_values
            synchronize()
            times.append(time.perf_counter() - started)
        row("decode", batch, batch * args.decode_steps, statistics.median(times))

peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"# peak_rss={peak_mib:.0f}MiB ({label})")
if device.type == "cuda":
    print(f"# peak_gpu_memory={torch.cuda.max_memory_allocated(device) / 2**20:.0f}MiB ({label})")
