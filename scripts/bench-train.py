"""PyTorch side of scripts/bench-train.sh: the same model, batch and optimiser step as
`cargo run --release -p prox-train --example bench`, float32 on the CPU."""

import argparse
import math
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("--hidden", type=int, default=256)
parser.add_argument("--layers", type=int, default=8)
parser.add_argument("--seq-len", type=int, default=512)
parser.add_argument("--micro-batch", type=int, default=4)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--peak-gflops", type=float, default=166.0)
# A fine-tuning step: the loss on the last N tokens of each sequence only (label -100 elsewhere).
parser.add_argument("--target-len", type=int, default=0)
args = parser.parse_args()

torch.set_num_threads(args.threads)
torch.manual_seed(1)
heads = 8
config = LlamaConfig(
    hidden_size=args.hidden,
    intermediate_size=args.hidden * 11 // 4,
    num_hidden_layers=args.layers,
    num_attention_heads=heads,
    num_key_value_heads=1,
    vocab_size=32000,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
model = LlamaForCausalLM(config).float().train()
optimizer = torch.optim.AdamW(
    model.parameters(), lr=5e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=False
)
params = sum(p.numel() for p in model.parameters())
head_dim = args.hidden // heads
weights = params - config.vocab_size * args.hidden
flops_per_token = 6 * weights + 12 * args.layers * heads * head_dim * args.seq_len
tokens_per_step = args.micro_batch * args.seq_len


def step():
    block = torch.randint(0, config.vocab_size, (args.micro_batch, args.seq_len + 1))
    inputs, targets = block[:, :-1], block[:, 1:].clone()
    if args.target_len > 0:
        targets[:, : args.seq_len - args.target_len] = -100
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


step()
started = time.perf_counter()
for _ in range(args.steps):
    step()
seconds = time.perf_counter() - started
tokens_per_s = tokens_per_step * args.steps / seconds
achieved = tokens_per_s * flops_per_token / 1e9
print(
    f"pytorch {torch.__version__} ({args.threads} threads): hidden {args.hidden}, {args.layers} layers, "
    f"{params} parameters, seq {args.seq_len} x {args.micro_batch}: {tokens_per_s:.0f} tokens/s, "
    f"{seconds / args.steps:.3f} s/step, {achieved:.1f} GFLOP/s = "
    f"{100 * achieved / args.peak_gflops:.1f}% of {args.peak_gflops:.0f} GFLOP/s"
)
