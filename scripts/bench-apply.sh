#!/usr/bin/env bash
# The pipeline's own cost, without a model: `prox apply` of the chunk stage from a generated
# JSONL.zst corpus to Parquet. Prints wall time, throughput (uncompressed input MB/s) and peak
# memory of each run, then the median.
#   scripts/bench-apply.sh [SIZE_MB (default 1024)] [RUNS (default 3)]
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
cargo build --release --locked -p prox >&2
prox="$CARGO_TARGET_DIR/release/prox"
results=()
for run in $(seq "$runs"); do
    rm -f "$dir"/out*.parquet "$dir"/out.*
    stats=$( { /usr/bin/time -f "%e %M" "$prox" -q apply --stage chunk --text-field doc_content \
        --input "$corpus" --output "$dir/out.parquet" >/dev/null; } 2>&1 | tail -1)
    read -r seconds kib <<<"$stats"
    mbps=$(python3 -c "print(f'{$bytes / 1e6 / $seconds:.1f}')")
    echo "run $run: ${seconds} s, ${mbps} MB/s of $((bytes / 1000000)) MB, peak RSS $((kib / 1024)) MiB"
    results+=("$mbps")
done
printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print "median: " a[int((NR+1)/2)] " MB/s"}'
