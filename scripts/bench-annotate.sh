#!/usr/bin/env bash
# `prox annotate` (document stage) against `prox serve` with SmolLM2-135M-Instruct, side by
# side with the official `openai` Python client sending the same requests (both rubric
# prompts of every document, the same max_tokens and requests in flight) to the same server:
# documents/s, requests/s and the client's own CPU seconds. When both clients reach the same
# requests/s, the server is the bottleneck, not the client.
#
#   scripts/bench-annotate.sh [--docs 16] [--reps 3] [--max-tokens 64] [--in-flight 32]
#
# The runs alternate (prox, python, prox, ...) and the table gives medians. The machine is
# shared: the load average is printed, compare runs of one invocation only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

docs=16 reps=3 max_tokens=64 in_flight=32
flag_values docs reps max_tokens in_flight -- "$@"

prox_release
gguf="$(smollm2_gguf)"
openai_python="${PROX_OPENAI_PYTHON:-$(scripts/fetch-openai.sh)}"
work="$(mktemp -d /tmp/prox-bench-annotate.XXXXXX)"
trap 'serve_stop_all; rm -rf "$work"' EXIT

python3 scripts/gen-corpus.py --mb 1 --seed 5 >"$work/all.jsonl"
head -n "$docs" "$work/all.jsonl" >"$work/corpus.jsonl"
serve_start "$work/serve" "$gguf" smollm2 --max-batch 32
load_line

prox_wall=() prox_cpu=() py_wall=() py_cpu=()
for rep in $(seq "$reps"); do
    measure "$work/prox.time" "$prox" annotate --stage doc --input "$work/corpus.jsonl" \
        --text-field doc_content --output "$work/annotate-$rep" --endpoint "$serve_url" \
        --model smollm2 --tokenizer "${PROX_FIXTURES:-../shared/fixtures}/tiny-llama" \
        --max-tokens "$max_tokens" --max-in-flight "$in_flight" 2>/dev/null
    read -r wall user sys _ <"$work/prox.time"
    prox_wall+=("$wall") prox_cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')")

    measure "$work/py.time" "$openai_python" scripts/bench-annotate.py --endpoint "$serve_url" \
        --model smollm2 --corpus "$work/corpus.jsonl" --text-field doc_content \
        --templates crates/prox-annotate/prompts/doc --max-tokens "$max_tokens" \
        --in-flight "$in_flight" >"$work/py-$rep.json"
    read -r wall user sys _ <"$work/py.time"
    py_wall+=("$wall") py_cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')")
    echo "# run $rep: prox annotate ${prox_wall[-1]} s, openai python ${py_wall[-1]} s" >&2
done

stats="$work/annotate-1/stats.json"
requests="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"]["sent"])' "$stats")"
# The same prompts reached the server: their prompt tokens agree.
python3 - "$stats" "$work/py-1.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
theirs = json.load(open(sys.argv[2]))
print(f"# prompt tokens: prox annotate {ours['requests']['prompt_tokens']}, openai python "
      f"{theirs['prompt_tokens']}; rejected {ours['documents']['rejected']} of "
      f"{ours['documents']['input']} documents "
      f"({', '.join(f'{k} {v}' for k, v in ours['rejections'].items()) or 'none'})")
PY
printf '%-22s %6s %7s %9s %8s %10s\n' client docs wall_s "docs/s" "req/s" client_cpu_s
for side in prox py; do
    if [[ $side == prox ]]; then
        label="prox annotate" wall="$(median "${prox_wall[@]}")" cpu="$(median "${prox_cpu[@]}")"
    else
        label="openai (python)" wall="$(median "${py_wall[@]}")" cpu="$(median "${py_cpu[@]}")"
    fi
    awk -v l="$label" -v d="$docs" -v w="$wall" -v r="$requests" -v c="$cpu" \
        'BEGIN { printf "%-22s %6d %7.1f %9.3f %8.3f %10.2f\n", l, d, w, d / w, r / w, c }'
done
