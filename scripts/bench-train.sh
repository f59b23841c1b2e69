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
# THREADS (default 2) sets both sides' threads. REPS (default 3) runs of each side alternate
# (prox-train, PyTorch, prox-train, ...); the table gives the medians of tokens/s and of the
# peak resident memory. PyTorch and transformers come from scripts/lib.sh's bench_python
# ($PROX_BENCH_VENV, installed once from PyPI).
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/lib.sh
threads="${THREADS:-2}"
reps="${REPS:-3}"
python="$(bench_python)"
work="$(mktemp -d /tmp/prox-bench-train.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# Built before timing; run through cargo, as other crates have an example named `bench` too.
cargo build --release -q -p prox-train --example bench
load_line

declare -A speed rss
for rep in $(seq "$reps"); do
    echo "== prox-train ($threads threads), run $rep"
    measure "$work/time" env RAYON_NUM_THREADS="$threads" \
        cargo run --release -q -p prox-train --example bench -- "$@" | tee "$work/out"
    speed[prox]+="$(grep -o '[0-9]* tokens/s' "$work/out" | cut -d' ' -f1) "
    rss[prox]+="$(cut -d' ' -f4 "$work/time") "
    echo "== PyTorch ($threads threads), run $rep"
    measure "$work/time" env OMP_NUM_THREADS="$threads" \
        "$python" scripts/bench-train.py --threads "$threads" "$@" | tee "$work/out"
    speed[torch]+="$(grep -o '[0-9]* tokens/s' "$work/out" | cut -d' ' -f1) "
    rss[torch]+="$(cut -d' ' -f4 "$work/time") "
done

printf '%-12s %10s %14s\n' side "tokens/s" peak_rss_mib
# shellcheck disable=SC2086
for side in prox torch; do
    label=prox-train
    [[ $side == torch ]] && label=PyTorch
    printf '%-12s %10s %14s\n' "$label" "$(median ${speed[$side]})" "$(median ${rss[$side]})"
done
echo "# medians of $reps runs each; tokens/s ratio prox-train / PyTorch:" \
    "$(awk -v a="$(median ${speed[prox]})" -v b="$(median ${speed[torch]})" 'BEGIN { printf "%.2f", a / b }')"
