#!/usr/bin/env bash
# "A refiner for your own data", the whole loop at toy scale on one machine: an instruct model
# behind `prox serve` annotates generated documents (`prox annotate`, both stages), a tiny
# model is fine-tuned on the annotations (`prox finetune`), measured on held-out annotations
# before and after (`prox validate`, embedded and through a server), and refines a corpus
# (`prox refine`).
#
#   scripts/refiner-demo.sh [WORK_DIR]        (default: a fresh folder under /tmp)
#
# The annotator is SmolLM2-135M-Instruct ($PROX_SMOLLM2_GGUF, else scripts/fetch-smollm2.sh),
# a weak one: many answers are rejected and the labels it gives are poor. The refiner is the
# tiny random fixture model (../shared/fixtures/tiny-llama, or $PROX_DEMO_REFINER), fine-tuned
# for a few steps. So the F1 figures mean little: the point is that every step reads what the
# previous one wrote. For real refiners, annotate with a large model (any OpenAI-compatible
# server) and fine-tune a real small model with the paper's defaults.
#
# Sizes: PROX_DEMO_DOC_SAMPLE (6) and PROX_DEMO_CHUNK_SAMPLE (6) documents annotated, of
# PROX_DEMO_DOC_LINES (4) lines each; PROX_DEMO_MAX_TOKENS (32) per annotator answer. The
# prompts are the short ones of scripts/refiner-demo-prompts/ (one line to answer, one noise
# prompt), as SmolLM2 on two busy cores takes about a minute per request of the built-in
# rubrics; PROX_DEMO_PROMPTS= (empty) uses the built-in ones. Every server started here is
# stopped on exit; the first failing step stops the script.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

work="${1:-$(mktemp -d /tmp/prox-refiner.XXXXXX)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
refiner="${PROX_DEMO_REFINER:-${PROX_FIXTURES:-../shared/fixtures}/tiny-llama}"
doc_sample="${PROX_DEMO_DOC_SAMPLE:-6}"
chunk_sample="${PROX_DEMO_CHUNK_SAMPLE:-6}"
doc_lines="${PROX_DEMO_DOC_LINES:-4}"
max_tokens="${PROX_DEMO_MAX_TOKENS:-32}"
prompts="${PROX_DEMO_PROMPTS:-scripts/refiner-demo-prompts}"

step=""
times=()
trap 'status=$?; serve_stop_all; if ((status != 0)); then echo "refiner-demo: FAILED at step: $step (exit $status); work folder: $work" >&2; fi' EXIT

# begin LABEL: starts a timed step; the next `begin` (or `finish`) closes the previous one.
step_started=""
begin() {
    if [[ -n "$step" ]]; then times+=("$(elapsed "$step_started")	$step"); fi
    step="$1"
    step_started="$(now)"
    echo "== $step" >&2
}

# json FILE EXPR: a value of a JSON file, EXPR a Python expression over `j`.
json() {
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

begin "build prox (release)"
prox_release
gguf="$(smollm2_gguf)"

begin "generate the corpora"
# Two corpora of short documents (the first lines of generated ones, noise lines included,
# so that a 135M annotator on two cores answers in minutes): one to annotate, one (another
# seed) to refine with the fine-tuned refiner.
for corpus in annotate:11 refine:12; do
    python3 scripts/gen-corpus.py --mb 0.2 --seed "${corpus#*:}" | python3 -c '
import json, sys
for line in sys.stdin:
    row = json.loads(line)
    row["doc_content"] = "\n".join(row["doc_content"].split("\n")[:'"$doc_lines"'])
    print(json.dumps(row))' >"$work/${corpus%:*}-corpus.jsonl"
done

begin "start prox serve (SmolLM2-135M-Instruct)"
serve_start "$work/serve-annotator" "$gguf" smollm2 --max-batch 32
annotator_url="$serve_url"
echo "annotator at $annotator_url" >&2

# Exit status 1 of annotate means some documents failed (listed in failures.jsonl): that is a
# failing step here too, as a demo that loses documents proves nothing.
for stage in doc chunk; do
    sample=$doc_sample
    [[ $stage == chunk ]] && sample=$chunk_sample
    begin "annotate, $stage stage ($sample documents)"
    "$prox" annotate --stage "$stage" --input "$work/annotate-corpus.jsonl" \
        --text-field doc_content --output "$work/annotate-$stage" \
        --endpoint "$annotator_url" --model smollm2 --tokenizer "$refiner" \
        --sample "$sample" --seed 1 --max-tokens "$max_tokens" --max-in-flight 32 \
        ${prompts:+--prompts "$prompts"}
done

begin "split the annotations (train / held out)"
# A stage whose annotator gave fewer than two usable examples (SmolLM2 often writes a Python
# function instead of calls at the chunk stage: see annotate-chunk/rejected.jsonl) is not
# fine-tuned; refine then runs the untrained refiner at that stage, and the summary says so.
stages=()
for stage in doc chunk; do
    if (($(wc -l <"$work/annotate-$stage/sft.jsonl") < 2)); then
        echo "WARNING: the $stage stage has fewer than 2 examples: not fine-tuned" >&2
        continue
    fi
    stages+=("$stage")
    # The last quarter of the examples (at least one) is held out for validation.
    python3 - "$work/annotate-$stage/sft.jsonl" "$work/train-$stage.jsonl" \
        "$work/heldout-$stage.jsonl" <<'PY'
import sys
source, train, heldout = sys.argv[1:]
rows = open(source).readlines()
if len(rows) < 2:
    sys.exit(f"error: {source} holds {len(rows)} examples: too few to train and validate on")
cut = len(rows) - max(1, len(rows) // 4)
open(train, "w").writelines(rows[:cut])
open(heldout, "w").writelines(rows[cut:])
print(f"{source}: {cut} to train on, {len(rows) - cut} held out", file=sys.stderr)
PY
done
((${#stages[@]} > 0)) || { echo "error: no stage has examples to fine-tune on" >&2; exit 1; }

for stage in "${stages[@]}"; do
    begin "validate the untrained refiner, $stage stage"
    "$prox" validate --stage "$stage" --model "$refiner" --data "$work/heldout-$stage.jsonl" \
        --output "$work/validate-before-$stage.json" --max-new-tokens 32
done

for stage in "${stages[@]}"; do
    begin "fine-tune the refiner, $stage stage"
    # A tiny random model learns the program format only with a large learning rate.
    "$prox" finetune --init-from "$refiner" --data "$work/train-$stage.jsonl" \
        --out "$work/finetune-$stage" --epochs 3 --global-batch 4 --micro-batch 2 \
        --lr 1e-3 --min-lr 1e-4 --val-fraction 0.2 --log-interval 5
done
# The last checkpoint of a fine-tuned stage, else the untrained refiner.
checkpoint() {
    if [[ -d "$work/finetune-$1/checkpoints" ]]; then
        ls -d "$work/finetune-$1"/checkpoints/step-* | sort | tail -1
    else
        echo "$refiner"
    fi
}
doc_model="$(checkpoint doc)"
chunk_model="$(checkpoint chunk)"

for stage in "${stages[@]}"; do
    begin "validate the fine-tuned refiner, $stage stage"
    model=$doc_model
    [[ $stage == chunk ]] && model=$chunk_model
    "$prox" validate --stage "$stage" --model "$model" --data "$work/heldout-$stage.jsonl" \
        --output "$work/validate-after-$stage.json" --max-new-tokens 32
done

served="${stages[0]}"
served_model="$(checkpoint "$served")"
begin "validate the fine-tuned $served refiner through prox serve"
serve_start "$work/serve-refiner" "$served_model" refiner
"$prox" validate --stage "$served" --endpoint "$serve_url" --model refiner \
    --tokenizer "$served_model" --data "$work/heldout-$served.jsonl" \
    --output "$work/validate-served-$served.json" --max-new-tokens 32

begin "refine a corpus with the fine-tuned refiners"
"$prox" refine --input "$work/refine-corpus.jsonl" --text-field doc_content --output "$work/run" \
    --doc-model "$doc_model" --chunk-model "$chunk_model" \
    --doc-max-new-tokens 8 --chunk-max-new-tokens 32 --batch-size 16
begin "done"

echo
echo "refiner demo: every output is under $work"
printf '  %-34s %s\n' \
    "annotations (doc, chunk)" "annotate-doc/, annotate-chunk/ (sft.jsonl, answers.jsonl, rejected.jsonl, stats.json)" \
    "train / held-out splits" "train-{doc,chunk}.jsonl, heldout-{doc,chunk}.jsonl" \
    "refiners (doc, chunk)" "${doc_model#"$work"/}, ${chunk_model#"$work"/}" \
    "validation reports" "validate-{before,after}-{$(IFS=,; echo "${stages[*]}")}.json, validate-served-$served.json" \
    "refined corpus" "run/output/"
echo
for stage in doc chunk; do
    stats="$work/annotate-$stage/stats.json"
    echo "annotate $stage: $(json "$stats" 'j["documents"]["input"]') documents," \
        "$(json "$stats" 'j["examples"]') examples, $(json "$stats" 'j["rejected"]') rejected" \
        "($(json "$stats" '", ".join(f"{k} {v}" for k, v in j["rejections"].items()) or "none"'))," \
        "$(json "$stats" 'j["failed"]') failed; $(json "$stats" 'j["requests"]["sent"]') requests"
done
f1() { json "$1" '"n/a" if j["f1"] is None else round(j["f1"], 4)'; }
for stage in "${stages[@]}"; do
    echo "validate $stage ($(json "$work/validate-after-$stage.json" 'j["examples"]') held out):" \
        "F1 before $(f1 "$work/validate-before-$stage.json"), after $(f1 "$work/validate-after-$stage.json");" \
        "invalid predictions before $(json "$work/validate-before-$stage.json" 'j["invalid_predictions"]')," \
        "after $(json "$work/validate-after-$stage.json" 'j["invalid_predictions"]')"
done
echo "validate $served through prox serve: F1 $(f1 "$work/validate-served-$served.json")" \
    "(embedded: $(f1 "$work/validate-after-$served.json"))"
stats="$work/run/stats.json"
echo "refine: $(json "$stats" 'j["documents"]["input"]') documents in," \
    "$(json "$stats" 'j["documents"]["output"]') out ($(json "$stats" 'j["documents"]["modified"]') modified)," \
    "$(json "$stats" 'j["documents"]["dropped"]') dropped, $(json "$stats" 'j["documents"]["failed"]') failed;" \
    "kept token ratio $(json "$stats" 'round(j["tokens"]["kept_ratio"], 3)')"
echo
echo "seconds per step:"
printf '  %s\n' "${times[@]}"
