#!/usr/bin/env bash
# Throughput of `prox tokenize` against the reference recipe (scripts/reference_prepare.py:
# transformers' fast tokenizer and litgpt's packing loop in one process, as the reference runs on
# a machine with 2 or 3 cores), on the same input, in the same run.
#
#   scripts/bench-tokenize.sh            # ~50 MB of input, 3 runs each
#   BENCH_MB=10 RUNS=5 scripts/bench-tokenize.sh
#
# The input is every text of the fixtures (packed/, prompts/, executor/: English, code-like
# and Unicode text, 3261 texts, 4.7 MB) repeated to BENCH_MB megabytes; BENCH_MB=4 holds each
# text once. Both write the default 2049 × 1024-token files; the script checks that the files
# are identical, then prints for each the median wall time (loading the tokenizer included),
# tokens per second and CPU time, and the ratio of the wall times.
#
# Needs cargo, and a python with `transformers` and `numpy` (REFERENCE_PYTHON, default python3).
# The reference used transformers 4.39.1, which encodes `tokenizer.json` as it is; transformers 5
# rebuilds the Llama tokenizer (Metaspace, prepend_scheme "first") and encodes texts holding a
# literal `<s>` or `</s>` differently, so a difference in the files fails the run only under
# 4.39.1:
#   python3 -m venv /tmp/ref439 && /tmp/ref439/bin/pip install transformers==4.39.1 numpy
#   REFERENCE_PYTHON=/tmp/ref439/bin/python scripts/bench-tokenize.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fixtures="${PROX_FIXTURES:-$root/../shared/fixtures}"
tokenizer="$fixtures/llama2-tokenizer"
bench_mb="${BENCH_MB:-50}"
runs="${RUNS:-3}"
target="${CARGO_TARGET_DIR:-$root/target}"
reference_python="${REFERENCE_PYTHON:-python3}"

[[ -d "$tokenizer" ]] || { echo "fixtures not found at $fixtures (set PROX_FIXTURES)" >&2; exit 2; }
transformers_version="$("$reference_python" -c 'import transformers, numpy; print(transformers.__version__)' 2>/dev/null)" ||
    { echo "$reference_python needs transformers and numpy: pip install transformers numpy" >&2; exit 2; }

(cd "$root" && cargo build --release -p prox --quiet)
prox="$target/release/prox"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
input="$work/input.jsonl"
python3 - "$fixtures" "$input" "$bench_mb" <<'PY'
import json, sys
fixtures, out, megabytes = sys.argv[1], sys.argv[2], float(sys.argv[3])
texts = []
for name in ["packed/input.jsonl", "prompts/vectors.jsonl", "executor/vectors.jsonl"]:
    with open(f"{fixtures}/{name}", encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f if line.strip()]
lines = [json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts]
size = sum(len(l.encode()) for l in lines)
with open(out, "w", encoding="utf-8") as f:
    written = 0
    while written < megabytes * 1e6:
        f.writelines(lines)
        written += size
print(f"input: {written / 1e6:.1f} MB, {len(texts)} distinct texts", file=sys.stderr)
PY

# Runs a command; prints its wall time and CPU time (user + system), in seconds.
cat >"$work/measure.py" <<'PY'
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
if done.returncode != 0:
    sys.exit(f"{sys.argv[1]} failed with exit code {done.returncode}")
print(f"{wall:.3f} {usage.ru_utime + usage.ru_stime:.3f}")
PY
measure() { python3 "$work/measure.py" "$@"; }

declare -a prox_runs single_runs reference_runs
prox_args=(-q tokenize --tokenizer "$tokenizer" --input "$input" --prefix train_web_0 --output)
for ((i = 1; i <= runs; i++)); do
    rm -rf "$work/prox" "$work/single" "$work/reference"
    prox_runs+=("$(measure "$prox" "${prox_args[@]}" "$work/prox")")
    single_runs+=("$(RAYON_NUM_THREADS=1 measure "$prox" "${prox_args[@]}" "$work/single")")
    reference_runs+=("$(measure "$reference_python" "$root/scripts/reference_prepare.py" \
        --tokenizer "$tokenizer" --input "$input" --output "$work/reference" --prefix train_web_0)")
    echo "run $i (wall, cpu s): prox ${prox_runs[-1]}; prox on 1 thread ${single_runs[-1]}; reference ${reference_runs[-1]}" >&2
done

# The same work: identical files.
ls "$work/reference" >"$work/reference.list"
ls "$work/prox" | { grep '\.bin$' || true; } >"$work/prox.list"
identical="files identical"
if ! diff -q "$work/reference.list" "$work/prox.list" >/dev/null; then
    identical="FILE LISTS DIFFER"
else
    while read -r name; do
        cmp -s "$work/reference/$name" "$work/prox/$name" || { identical="FILES DIFFER ($name)"; break; }
    done <"$work/prox.list"
fi
if [[ "$identical" != "files identical" ]]; then
    if [[ "$transformers_version" == "4.39.1" ]]; then
        echo "$identical between prox and the reference" >&2
        exit 1
    fi
    identical="$identical: transformers $transformers_version is not the reference's 4.39.1"
fi

tokens="$(python3 -c "import json; print(json.load(open('$work/prox/summary.json'))['tokens'])")"
join() { local IFS=,; echo "$*"; }
python3 - "$tokens" "$(nproc)" "$(join "${prox_runs[@]}")" "$(join "${single_runs[@]}")" \
    "$(join "${reference_runs[@]}")" "$identical" "$transformers_version" <<'PY'
import statistics, sys
tokens, cores = int(sys.argv[1]), sys.argv[2]
prox, single, reference = (
    [tuple(float(x) for x in run.split()) for run in arg.split(",")] for arg in sys.argv[3:6]
)
identical, version = sys.argv[6], sys.argv[7]

def line(name, runs):
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    walls = ", ".join(f"{w:.2f}" for w, _ in runs)
    print(f"{name:36} wall {wall:7.2f} s {tokens / wall / 1e6:6.2f} M tokens/s   cpu {cpu:7.2f} s   (walls {walls})")
    return wall, cpu

print(f"{tokens} tokens per run, {cores} cores, transformers {version}, {identical}")
p = line("prox tokenize", prox)
s = line("prox tokenize, RAYON_NUM_THREADS=1", single)
r = line("reference (transformers, 1 process)", reference)
print(f"ratio of median walls: prox is {r[0] / p[0]:.1f}x the reference "
      f"({r[0] / s[0]:.1f}x on one thread); it uses {r[1] / p[1]:.1f}x less CPU time")
PY
