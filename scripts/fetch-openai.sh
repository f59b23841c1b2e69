#!/usr/bin/env bash
# Installs the official `openai` Python package (PyPI `openai==3.57.0`) into a virtual
# environment in a cache folder, for the test that drives `prox serve` with the real client
# (crates/prox-serve/tests/openai_python.rs).
#
#   scripts/fetch-openai.sh [CACHE_DIR]     default: $HOME/.cache/prox/openai
#
# Prints the path of the environment's python. The test reads it from $PROX_OPENAI_PYTHON,
# or from the default cache folder.
set -euo pipefail

cache_dir="${1:-${HOME}/.cache/prox/openai}"
version="3.57.0"
env_dir="${cache_dir}/${version}"
python="${env_dir}/bin/python"

if [[ -f "${env_dir}/.complete" ]]; then
    echo "${python}"
    exit 0
fi

mkdir -p "${cache_dir}"
rm -rf "${env_dir}"
python3 -m venv "${env_dir}" >&2
"${python}" -m pip install --quiet --disable-pip-version-check "openai==${version}" >&2
"${python}" -c "import openai" >&2
# Marked complete only once installed, so an interrupted fetch is redone, never half used.
touch "${env_dir}/.complete"
echo "${python}"
