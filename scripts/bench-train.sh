#!/usr/bin/env bash
# Training throughput of `prox-train` against PyTorch with the same model, batch and recipe
# step (forward, backward, clipping by total norm, AdamW), float32, on the same cores.
#
#   scripts/bench-train.sh [--hidden 256] [--layers 8] [--seq-len 512] [--micro-batch 4] [--steps 5]
#                          [--target-len T]
#
# --target-len T times a fine-tuning step (`prox finetune`'s) instead: the loss on the last T
# tokens of each sequence only, the rest masked as a prompt (PyTorch: label -100).
#
# THREADS (default 2) sets both sides' threads. PyTorch and transformers are installed once
# into $PROX_BENCH_VENV (default ~/.cache/prox/torch-venv; about 5 GB, as the PyPI torch wheel
# brings its CUDA libraries); set PROX_BENCH_VENV to a venv that has them to skip that.
set -euo pipefail

cd "$(dirname "$0")/.."
threads="${THREADS:-2}"
venv="${PROX_BENCH_VENV:-$HOME/.cache/prox/torch-venv}"

if ! "$venv/bin/python" -c 'import torch, transformers' 2>/dev/null; then
    echo "installing torch and transformers into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch==2.5.1 transformers==4.46.3
fi

# Built before timing; run through cargo, as other crates have an example named `bench` too.
cargo build --release -q -p prox-train --example bench

echo "== prox-train ($threads threads)"
RAYON_NUM_THREADS="$threads" cargo run --release -q -p prox-train --example bench -- "$@"
echo "== PyTorch ($threads threads)"
OMP_NUM_THREADS="$threads" "$venv/bin/python" scripts/bench-train.py --threads "$threads" "$@"
