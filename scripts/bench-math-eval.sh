#!/usr/bin/env bash
# `prox math-eval run` generation throughput with SmolLM2-135M-Instruct on GSM8K prompts,
# side by side: the embedded engine, Hugging Face transformers `generate` (the harness's
# non-vLLM path: greedy, batched, the same stop strings, the GGUF's weights; see
# scripts/bench-math-eval.py) and `--backend openai` against `prox serve`.
#
#   scripts/bench-math-eval.sh [--n 32] [--batch-size 16] [--max-new-tokens 128] [--reps 3]
#                              [--quantize q8_0|keep]
#
# The defaults are the full run (32 GSM8K prompts, batches of 16, greedy, 3 alternating reps);
# `--n 2 --batch-size 2 --max-new-tokens 16 --reps 1` checks every side end to end in a few
# minutes. `--quantize` goes to both prox sides (`math-eval run` and `prox serve`); unset, they
# load the Q4_1 file as the engine does by default on the CPU, its Q4_1 projections requantized
# to Q8_0 for the engine's kernel; `keep` computes with the file's Q4_1 blocks (candle's
# kernels). PROX_BIN names a built `prox` to use instead of building one.
#
# Tokens are those of the kept completions (cut at the stop strings), counted with one
# tokenizer for all sides; seconds are generation only (model loading excluded, as
# generations.jsonl records them for prox). THREADS (default: all cores) sets torch's threads.
# Runs alternate and the table gives medians; the machine is shared, so the load average is
# printed: compare runs of one invocation only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

n=32 batch=16 max_new=128 reps=3 quantize=()
while (($#)); do
    case "$1" in
    --n) n="$2" ;;
    --batch-size) batch="$2" ;;
    --max-new-tokens) max_new="$2" ;;
    --reps) reps="$2" ;;
    --quantize) quantize=(--quantize "$2") ;;
    *) echo "unknown argument $1" >&2 && exit 2 ;;
    esac
    shift 2
done
threads="${THREADS:-$(nproc)}"
harness="${PROX_FIXTURES:-../shared/fixtures}/math-eval/harness"

prox_release
gguf="$(smollm2_gguf)"
python="$(bench_python)"
work="$(mktemp -d /tmp/prox-bench-math.XXXXXX)"
trap 'serve_stop_all; rm -rf "$work"' EXIT

"$prox" math-eval prompts --data "$harness" --tasks gsm8k --output "$work/prompts.jsonl" 2>/dev/null
serve_start "$work/serve" "$gguf" smollm2 --max-batch 32 "${quantize[@]}"
load_line
weights="${quantize[*]:-default: Q4_1 requantized to Q8_0}"
echo "# $n prompts, batches of $batch, at most $max_new new tokens, $reps reps; prox: $weights"

# gen_seconds FILE: the generation seconds of a generations.jsonl (each row its batch share).
gen_seconds() {
    python3 -c 'import json,sys; print(sum(json.loads(l)["seconds"] for l in open(sys.argv[1]) if l.strip()))' "$1"
}

declare -A seconds rss
for side in embedded transformers openai; do seconds[$side]="" rss[$side]=""; done
for rep in $(seq "$reps"); do
    for side in embedded transformers openai; do
        out="$work/$side-$rep"
        case $side in
        embedded | openai)
            backend=(--backend embedded "${quantize[@]}")
            [[ $side == openai ]] && backend=(--backend openai --endpoint "$serve_url")
            measure "$work/time" "$prox" math-eval run --model "$gguf" --data "$harness" \
                --output "$out" --tasks gsm8k --max-samples "$n" --batch-size "$batch" \
                --max-new-tokens "$max_new" "${backend[@]}" >/dev/null 2>&1
            s="$(gen_seconds "$out/gsm8k/generations.jsonl")"
            ;;
        transformers)
            mkdir -p "$out/gsm8k"
            measure "$work/time" "$python" scripts/bench-math-eval.py generate --gguf "$gguf" \
                --prompts "$work/prompts.jsonl" --n "$n" --batch-size "$batch" \
                --max-new-tokens "$max_new" --threads "$threads" \
                --output "$out/gsm8k/generations.jsonl" >"$work/hf.json" 2>/dev/null
            s="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$work/hf.json")"
            ;;
        esac
        seconds[$side]+="$s "
        rss[$side]+="$(cut -d' ' -f4 "$work/time") "
        echo "# run $rep: $side ${s%.*} s of generation" >&2
    done
done

# Greedy decoding of the same weights: how many completions agree exactly across sides.
python3 - "$work" <<'PY'
import json, sys
def outputs(side):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/{side}-1/gsm8k/generations.jsonl") if l.strip()]
    return {r["idx"]: r["output"] for r in rows}
e, t, o = outputs("embedded"), outputs("transformers"), outputs("openai")
print(f"# identical completions: embedded = openai {sum(e[i] == o.get(i) for i in e)}/{len(e)}, "
      f"embedded = transformers {sum(e[i] == t.get(i) for i in e)}/{len(e)}")
PY
printf '%-26s %8s %7s %9s %8s %8s\n' side tokens gen_s "tokens/s" "req/s" rss_mib
for side in embedded transformers openai; do
    tokens="$("$python" scripts/bench-math-eval.py count --gguf "$gguf" \
        "$work/$side-1/gsm8k/generations.jsonl" 2>/dev/null)"
    # shellcheck disable=SC2086
    s="$(median ${seconds[$side]})" mem="$(median ${rss[$side]})"
    case $side in
    embedded) label="prox (embedded)" ;;
    transformers) label="transformers generate" ;;
    openai) label="prox --backend openai" mem="(client)" ;;
    esac
    awk -v l="$label" -v t="$tokens" -v s="$s" -v n="$n" -v m="$mem" \
        'BEGIN { printf "%-26s %8d %7.1f %9.1f %8.2f %8s\n", l, t, s, t / s, n / s, m }'
done
