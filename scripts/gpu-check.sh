#!/usr/bin/env bash
# The engine's CUDA path on a machine with an NVIDIA GPU, checked against the CPU, with figures.
# The GPU machine has no Rust toolchain: build here first, then carry .gpu-bundle/ there.
#
#   scripts/check-cuda.sh bundle        # here: release CUDA binaries + tiny model, size checked
#   scripts/gpu-check.sh                # there, from the repository root (bash only, no cargo)
#   STEPS="probe tests" scripts/gpu-check.sh     # some steps only
#   GPU_CHECK_DEVICE=cpu STEPS="generate refine" scripts/gpu-check.sh
#       # a dry run without a GPU: the script's own logic, the "GPU" side on the CPU too;
#       # GPU_CHECK_BIN=DIR takes prox, bench and cuda-tests from DIR instead of the bundle
#
# Steps, each under its own time limit (seconds in the variable beside it), then a summary:
#   probe     nvidia-smi, the driver's CUDA version, compute capability, where the CUDA runtime
#             and cuBLAS libraries are (system or PyTorch's nvidia wheels), ldd of the binaries
#             (PROBE_S=60)
#   tests     crates/prox-engine/tests/engine/cuda.rs: GPU against CPU in f32, bf16, f16, Q8_0, and
#             greedy generation of the tiny fixture model (TESTS_S=300)
#   generate  `prox generate` on the tiny model, --device cuda against --device cpu, f32:
#             identical ids expected (GENERATE_S=120)
#   refine    `prox refine` (embedded backend, both stages) on the tiny model, cuda against
#             cpu: identical output rows expected (REFINE_S=180)
#   bench     the engine bench on the full refiner shape (random weights) on the GPU per dtype
#             (BENCH_DTYPES="f32 bf16 f16 q8_0"), then PyTorch on the same shapes when python3
#             has torch (BENCH_S=420)
#   throughput `prox refine` over a synthetic corpus with a random refiner-shape model on the
#             GPU: raw tokens of documents per second through both stages (THROUGHPUT_S=300,
#             THROUGHPUT_MB=4 of corpus, THROUGHPUT_ARGS="--dtype bf16 --batch-size 256
#             --engine-batch 128 --doc-max-new-tokens 16 --chunk-max-new-tokens 48" added to
#             refine's arguments)
#
# Exit status: 0 when every step that ran passed; 1 when one failed; 3 when there is no NVIDIA
# GPU (nothing else is run). Output also goes to $OUT/gpu-check.log when OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-"probe tests generate refine bench throughput"}
work=${GPU_CHECK_DIR:-/tmp/prox-gpu-check}
log_dir=${OUT:-$work}
mkdir -p "$work" "$log_dir"
log="$log_dir/gpu-check.log"
exec > >(tee -a "$log") 2>&1

say() { printf '== %s\n' "$*"; }

device=${GPU_CHECK_DEVICE:-cuda}
gpu_name() { nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1; }
if [[ "$device" == cpu ]]; then
    echo "gpu-check: dry run: the GPU side runs on the CPU (GPU_CHECK_DEVICE=cpu); no GPU is checked"
    gpu_name() { echo "no GPU: dry run on the CPU"; }
# No GPU: say so plainly and stop, before unpacking anything.
elif ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU here: nvidia-smi is not installed (no NVIDIA driver)."
    echo "gpu-check: run this script on a machine with an NVIDIA GPU; nothing was checked."
    exit 3
elif ! gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1) || [[ -z "$gpus" ]]; then
    echo "gpu-check: no NVIDIA GPU here: nvidia-smi finds none ($gpus)."
    echo "gpu-check: nothing was checked."
    exit 3
fi

if [[ -n "${GPU_CHECK_BIN:-}" ]]; then
    # Binaries already at hand (a dry run here, or a machine that built them): no bundle.
    bin=$GPU_CHECK_BIN
    export PROX_FIXTURES="${PROX_FIXTURES:-../shared/fixtures}"
else
    bundle=.gpu-bundle/bundle.tar.xz
    if [[ ! -f "$bundle" ]]; then
        echo "gpu-check: $bundle is missing: build it where Rust is (scripts/check-cuda.sh bundle)"
        echo "gpu-check: and carry .gpu-bundle to this machine."
        exit 2
    fi
    rm -rf "$work/bundle"
    mkdir -p "$work/bundle"
    xz -dc "$bundle" | tar -C "$work/bundle" -xf - || {
        echo "gpu-check: cannot unpack $bundle"
        exit 2
    }
    bin="$work/bundle/bin"
    export PROX_FIXTURES="$work/bundle/fixtures"
fi
tiny="$PROX_FIXTURES/tiny-llama"

# The CUDA 13 libraries the binaries load besides the driver: from the system's loader path,
# else from PyTorch's nvidia wheels (site-packages/nvidia/*/lib, nvidia/cu13/lib).
needed="libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13"
lib_dirs=""
if command -v python3 >/dev/null 2>&1; then
    lib_dirs=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
roots = list(nvidia.__path__)
dirs = set()
for root in roots:
    for path in glob.glob(os.path.join(root, "**", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(path))
print(":".join(sorted(dirs)))
PY
    )
fi
for cuda in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d "$cuda" ]] && lib_dirs="$lib_dirs:$cuda"
done
export LD_LIBRARY_PATH="${lib_dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

export bin work tiny needed device PROX_FIXTURES LD_LIBRARY_PATH
declare -a names results seconds
run_step() {
    local name=$1 limit=$2
    shift 2
    say "$name (limit ${limit}s)"
    local start=$SECONDS
    # timeout runs programs, not shell functions: each step runs in a child bash.
    timeout --kill-after=10 "$limit" bash -c "$*"
    local rc=$?
    local took=$((SECONDS - start))
    local result=PASS
    if ((rc == 124 || rc == 137)); then
        result="TIMEOUT"
    elif ((rc != 0)); then
        result="FAIL(rc=$rc)"
    fi
    names+=("$name")
    results+=("$result")
    seconds+=("$took")
    say "$name: $result in ${took}s"
}

step_probe() {
    nvidia-smi
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv
    echo "driver CUDA version: $(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p')"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    local missing=0
    for lib in $needed; do
        local where
        where=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF; exit}')
        if [[ -z "$where" ]]; then
            IFS=: read -ra dirs <<<"$LD_LIBRARY_PATH"
            for d in "${dirs[@]}"; do
                [[ -e "$d/$lib" ]] && where="$d/$lib (wheel or toolkit)" && break
            done
        else
            where="$where (system)"
        fi
        echo "$lib: ${where:-NOT FOUND}"
        [[ -z "$where" ]] && missing=1
    done
    for b in prox bench cuda-tests; do
        echo "ldd $b:"
        ldd "$bin/$b" | grep -E 'libcu|libnvrtc|not found' | sed 's/^/  /'
        if ldd "$bin/$b" | grep -q 'not found'; then missing=1; fi
    done
    return $missing
}

step_tests() {
    "$bin/cuda-tests" --test-threads 1 cuda::
}

# `prox generate` on the same prompts on both devices; the ids must be equal.
step_generate() {
    local dir="$work/generate"
    rm -rf "$dir" && mkdir -p "$dir"
    printf '%s\n' '{"prompt": "The city council approved a new plan"}' \
        '{"prompt": "Skip to main content"}' '{"prompt": "Copyright 2024. All rights reserved."}' \
        >"$dir/prompts.jsonl"
    declare -A sides=([cpu]=cpu [cuda]="$device")
    for side in cpu cuda; do
        "$bin/prox" generate --model "$tiny" --input "$dir/prompts.jsonl" \
            --output "$dir/$side.jsonl" --max-new-tokens 24 --device "${sides[$side]}" || return 1
    done
    python3 - "$dir/cpu.jsonl" "$dir/cuda.jsonl" <<'PY'
import json, sys
cpu, gpu = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
bad = [i for i, (a, b) in enumerate(zip(cpu, gpu)) if a.get("ids") != b.get("ids")]
print(f"generate: {len(cpu)} prompts, {len(bad)} differ between cpu and cuda: {bad}")
sys.exit(1 if bad or len(cpu) != len(gpu) else 0)
PY
}

# `prox refine` (both stages, embedded engine) on both devices; the kept and dropped rows must
# be equal.
step_refine() {
    local dir="$work/refine"
    rm -rf "$dir" && mkdir -p "$dir"
    declare -A sides=([cpu]=cpu [cuda]="$device")
    for side in cpu cuda; do
        "$bin/prox" refine --doc-model "$tiny" --chunk-model "$tiny" \
            --doc-max-new-tokens 8 --chunk-max-new-tokens 24 \
            --input examples/web-sample.jsonl --text-field raw_content --output "$dir/$side" \
            --output-format jsonl.gz --device "${sides[$side]}" || return 1
    done
    local differ=0
    for part in output dropped; do
        local a b
        a=$(cat "$dir/cpu/$part"/*.jsonl.gz 2>/dev/null | gzip -dc | sha256sum)
        b=$(cat "$dir/cuda/$part"/*.jsonl.gz 2>/dev/null | gzip -dc | sha256sum)
        echo "refine $part: cpu ${a%% *} cuda ${b%% *}"
        [[ "$a" == "$b" ]] || differ=1
    done
    return $differ
}

step_bench() {
    local failed=0
    for dtype in ${BENCH_DTYPES:-f32 bf16 f16 q8_0}; do
        "$bin/bench" --device "$device" --dtype "$dtype" --reps 3 --prefill-batches 1,8,32 \
            --decode-batches 1,8,32,128 --decode-steps 16 --choice-batch 8 || failed=1
    done
    if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
        for dtype in f32 bf16; do
            python3 scripts/bench-engine-torch.py --device cuda --dtype "$dtype" --reps 3 \
                --prefill-batches 1,8,32 --decode-batches 1,8,32,128 --decode-steps 16 ||
                failed=1
        done
    else
        echo "bench: python3 has no torch with CUDA here: no PyTorch figures"
    fi
    return $failed
}

# Raw tokens of documents per second through both stages, with a random model of the
# refiners' shape (its programs are noise, its cost is the real one).
step_throughput() {
    # bf16 and larger batches: how a GPU would be used (the defaults suit a CPU). A random
    # model never ends its programs, so each would run to --*-max-new-tokens (2000 and 256):
    # on the H200, 0.25 MB did not finish in 100 s. The caps hold each program to about a
    # real refiner's length.
    local THROUGHPUT_ARGS=${THROUGHPUT_ARGS:-"--dtype bf16 --batch-size 256 --engine-batch 128 --doc-max-new-tokens 16 --chunk-max-new-tokens 48"}
    local dir="$work/throughput"
    rm -rf "$dir" && mkdir -p "$dir"
    "$bin/bench" --save "$dir/model" || return 1
    cp "$PROX_FIXTURES/llama2-tokenizer/"* "$dir/model/"
    python3 scripts/gen-corpus.py --mb "${THROUGHPUT_MB:-4}" --seed 1 >"$dir/corpus.jsonl" || return 1
    local start
    start=$(date +%s.%N)
    "$bin/prox" refine --doc-model "$dir/model" --chunk-model "$dir/model" \
        --input "$dir/corpus.jsonl" --text-field doc_content --output "$dir/run" \
        --device "$device" --progress-seconds 10 $THROUGHPUT_ARGS || return 1
    python3 - "$dir/run/stats.json" "$start" "$(date +%s.%N)" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
raw = stats["tokens"]["input"]
print(f"throughput: {stats['documents']['input']} documents, {raw} raw tokens in {wall:.1f} s "
      f"wall = {raw / wall:.0f} raw tokens/s (the paper: about 87k per A100 with vLLM); "
      f"model time {stats['seconds']['model']:.1f} s, "
      f"prompt tokens {stats['throughput']['prompt_tokens_per_second']:.0f}/s, "
      f"generated {stats['throughput']['generated_tokens_per_second']:.0f}/s")
for name, stage in stats["stages"].items():
    print(f"  {name} stage: {stage['documents']} documents, {stage['prompts']} prompts, "
          f"{stage['prompt_tokens']} prompt tokens, {stage['generated_tokens']} generated, "
          f"{stage['seconds']:.1f} s")
PY
}

export -f step_probe step_tests step_generate step_refine step_bench step_throughput
for step in $STEPS; do
    case "$step" in
    probe) run_step probe "${PROBE_S:-60}" step_probe ;;
    tests) run_step tests "${TESTS_S:-300}" step_tests ;;
    generate) run_step generate "${GENERATE_S:-120}" step_generate ;;
    refine) run_step refine "${REFINE_S:-180}" step_refine ;;
    bench) run_step bench "${BENCH_S:-420}" step_bench ;;
    throughput) run_step throughput "${THROUGHPUT_S:-300}" step_throughput ;;
    *)
        echo "gpu-check: unknown step $step (known: probe tests generate refine bench throughput)"
        exit 2
        ;;
    esac
done

say "summary ($(gpu_name))"
status=0
for i in "${!names[@]}"; do
    printf '%-10s %-14s %5ss\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
    [[ "${results[$i]}" == PASS ]] || status=1
done
exit $status
