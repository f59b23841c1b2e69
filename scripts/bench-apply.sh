#!/usr/bin/env bash
# The pipeline's own cost, without a model: `prox apply` of the chunk stage from a generated
# JSONL.zst corpus to Parquet. Prints wall time, throughput (uncompressed input MB/s) and peak
# memory of each run, then the median. CPU seconds (user + system) are printed too: on a shared
# machine they move less than wall time.
#   scripts/bench-apply.sh [SIZE_MB (default 1024)] [RUNS (default 3)]
#   PROX_BINS="/tmp/prox-before target/release/prox" scripts/bench-apply.sh 200 5
# With PROX_BINS, each run times every binary in turn (side by side), and a median is printed
# per binary; nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${1:-1024}"
runs="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/prox-target}"
dir="${BENCH_DIR:-$HOME/.cache/prox/bench-apply}"
mkdir -p "$dir"
corpus="$dir/corpus-${size_mb}mb.jsonl.zst"
if [[ ! -f "$corpus" ]]; then
    echo "generating $corpus" >&2
    python3 scripts/gen-corpus.py --mb "$size_mb" | zstd -q -T2 -o "$corpus"
fi
bytes=$(zstd -dc "$corpus" | wc -c)
if [[ -z "${PROX_BINS:-}" ]]; then
    cargo build --release --locked -p prox >&2
    PROX_BINS="$CARGO_TARGET_DIR/release/prox"
fi
read -r -a bins <<<"$PROX_BINS"
declare -A results
for run in $(seq "$runs"); do
    for prox in "${bins[@]}"; do
        rm -f "$dir"/out*.parquet "$dir"/out.*
        stats=$( { /usr/bin/time -f "%e %M %U %S" "$prox" -q apply --stage chunk \
            --text-field doc_content --input "$corpus" --output "$dir/out.parquet" >/dev/null; } \
            2>&1 | tail -1)
        read -r seconds kib user sys <<<"$stats"
        mbps=$(python3 -c "print(f'{$bytes / 1e6 / $seconds:.1f}')")
        cpu=$(python3 -c "print(f'{$user + $sys:.2f}')")
        echo "run $run $prox: ${seconds} s (CPU ${cpu} s), ${mbps} MB/s of $((bytes / 1000000)) MB, peak RSS $((kib / 1024)) MiB"
        results[$prox]+="$mbps "
    done
done
for prox in "${bins[@]}"; do
    # shellcheck disable=SC2086
    printf '%s\n' ${results[$prox]} | sort -n \
        | awk -v p="$prox" '{a[NR]=$1} END {print "median " p ": " a[int((NR+1)/2)] " MB/s"}'
done
