#!/usr/bin/env bash
# Engine benchmark on the full ProX refiner shape (random weights): prefill and decode
# tokens/s, the document-stage choice against free decoding, peak memory; one process per
# dtype. Each process first measures the machine and prints it: the CPU, the kernels chosen
# (float GEMM path, Q8_0 kernel), the f32 FMA peak at each vector width (timed, since no flag
# tells how many FMA units a core has) and a parallel copy's memory bandwidth; prefill and
# decode give their share of that peak, decoding the GB/s of weights it reads against the
# copy's. Timings on a shared machine are noisy: compare runs of one session.
#
#   scripts/bench-engine.sh                 # f32, bf16, q8_0 (about 8 minutes on 2 cores)
#   DTYPES="f32 q8_0" REPS=5 scripts/bench-engine.sh
#   BENCH_ARGS="--prefill-batches 1,8,32" scripts/bench-engine.sh
#   TORCH_PYTHON=~/.cache/prox/torch-venv/bin/python scripts/bench-engine.sh
#   PROX_Q8_KERNEL=avx2 DTYPES=q8_0 scripts/bench-engine.sh   # a lower Q8_0 kernel
#   "$CARGO_TARGET_DIR"/release/examples/bench --products 1,8,32,512   # every kernel, one layer
#
# With TORCH_PYTHON (a Python with torch and transformers >= 4.45), the same shape also runs in
# PyTorch, float32, on as many threads (scripts/bench-engine-torch.py), after our dtypes.
set -euo pipefail
cd "$(dirname "$0")/.."

DTYPES=${DTYPES:-"f32 bf16 q8_0"}
REPS=${REPS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

cargo build --release -p prox-engine --example bench
bin="$CARGO_TARGET_DIR/release/examples/bench"

cores=$(nproc)
flags=$(grep -o -w -E 'avx2|fma|avx512f|avx512bw|avx512_vnni|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "# cpu flags: $flags"
echo "# RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-unset}"

for dtype in $DTYPES; do
  # The 8-prompt prefill costs about 45 s per repetition in f32: bf16 gets batch 1 only,
  # to keep the whole run under ~10 minutes.
  prefill="1,8"
  [ "$dtype" = bf16 ] && prefill="1"
  # shellcheck disable=SC2086
  "$bin" --dtype "$dtype" --reps "$REPS" --prefill-batches "$prefill" \
    --decode-batches 1,8,32 --decode-steps 8 --choice-batch 2 ${BENCH_ARGS:-}
done

if [ -n "${TORCH_PYTHON:-}" ]; then
  threads=${RAYON_NUM_THREADS:-$cores}
  "$TORCH_PYTHON" scripts/bench-engine-torch.py --threads "$threads" --reps "$REPS" \
    --prefill-batches 1,8 --decode-batches 1,8,32 --decode-steps 8
fi
