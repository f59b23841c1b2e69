#!/usr/bin/env bash
# `prox convert litgpt` against `cp` of the same checkpoint, side by side: a 0.3B-shape
# (tiny_LLaMA_0_3b, 354,284,800 parameters, 1.42 GB of float32) fabric checkpoint with random
# weights, written by scripts/write-litgpt-checkpoint.py in torch's pickle layout, no torch
# needed.
#
#   scripts/bench-convert.sh                  # 3 runs each, medians
#   RUNS=5 ARCH=tiny_LLaMA_0_7b scripts/bench-convert.sh
#   OPTIMIZER=1 scripts/bench-convert.sh      # full fabric state: + AdamW moments (3x the file)
#   PROX=/path/to/prox scripts/bench-convert.sh
#
# Prints the median wall time of `cp` (and of `cp` followed by `sync` of the copy, since the
# conversion syncs what it writes before its rename), of the conversion, their ratio, and the
# conversion's peak resident memory (/usr/bin/time -v) against the size of the weights. The
# goal (issue 20): conversion within 1.5x cp, peak memory under 1.2x the weights. Both read the
# checkpoint from the page cache (it was just written); WORK_DIR (default: a temporary folder
# under /tmp) needs about 3x the checkpoint's size free.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${RUNS:-3}"
arch="${ARCH:-tiny_LLaMA_0_3b}"
target="${CARGO_TARGET_DIR:-$root/target}"

if [[ -z "${PROX:-}" ]]; then
    (cd "$root" && cargo build --release -p prox --quiet)
    PROX="$target/release/prox"
fi
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (GNU time) for the peak memory" >&2; exit 2; }

work="$(mktemp -d "${WORK_DIR:-/tmp}/bench-convert.XXXXXX")"
trap 'rm -rf "$work"' EXIT
ckpt="$work/iter-002000-ckpt.pth"
optimizer_flag=()
[[ "${OPTIMIZER:-0}" == 1 ]] && optimizer_flag=(--optimizer)
python3 "$root/scripts/write-litgpt-checkpoint.py" --arch "$arch" "${optimizer_flag[@]}" --output "$ckpt"
file_bytes=$(stat -c %s "$ckpt")
# Written back before timing, so that no run pays for the writer's dirty pages.
sync "$ckpt"

seconds() { # command... -> wall seconds on stdout
    local start end
    sync # every run starts with nothing left to write back
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}
median() { awk '{ printf "%f\n", $1 }' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

cp_times=() cp_sync_times=() convert_times=() peaks=()
for ((i = 1; i <= runs; i++)); do
    rm -f "$work/copy.pth"
    cp_times+=("$(seconds cp "$ckpt" "$work/copy.pth")")
    rm -f "$work/copy.pth"
    cp_sync_times+=("$(seconds sh -c "cp '$ckpt' '$work/copy.pth' && sync '$work/copy.pth'")")
    rm -f "$work/copy.pth"
    rm -rf "$work/hf"
    sync
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$work/time.txt" "$PROX" -q convert litgpt --input "$ckpt" --output "$work/hf" >/dev/null
    end=$(date +%s.%N)
    convert_times+=("$(echo "$end - $start" | bc -l)")
    peaks+=("$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time.txt")")
done
weights_bytes=$(stat -c %s "$work/hf/model.safetensors")

cp_median=$(printf '%s\n' "${cp_times[@]}" | median)
cp_sync_median=$(printf '%s\n' "${cp_sync_times[@]}" | median)
convert_median=$(printf '%s\n' "${convert_times[@]}" | median)
peak_kb=$(printf '%s\n' "${peaks[@]}" | sort -g | tail -1)

printf 'checkpoint        %s, %.2f GB (%s runs each)\n' "$arch" "$(echo "$file_bytes / 1000000000" | bc -l)" "$runs"
printf 'cp                %.2f s   (runs: %s)\n' "$cp_median" "${cp_times[*]}"
printf 'cp + sync         %.2f s   (runs: %s)\n' "$cp_sync_median" "${cp_sync_times[*]}"
printf 'prox convert      %.2f s   (runs: %s)\n' "$convert_median" "${convert_times[*]}"
printf 'convert / cp      %.2f   (convert / cp+sync %.2f; goal <= 1.5)\n' \
    "$(echo "$convert_median / $cp_median" | bc -l)" "$(echo "$convert_median / $cp_sync_median" | bc -l)"
printf 'peak RSS          %.0f MB = %.2f x the weights (%.2f GB; goal < 1.2)\n' \
    "$(echo "$peak_kb / 1024" | bc -l)" "$(echo "$peak_kb * 1024 / $weights_bytes" | bc -l)" \
    "$(echo "$weights_bytes / 1000000000" | bc -l)"
