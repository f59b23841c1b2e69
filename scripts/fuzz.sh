#!/usr/bin/env bash
# Fuzzing as CI runs it: every target of fuzz/ for a while, from its seed corpus.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 60: a fresh random campaign each time
#   FUZZ_RUNS=N scripts/fuzz.sh              N inputs per target from seed FUZZ_SEED (default
#                                            1): the same inputs on every run, as CI does it
#
# CI runs the fixed campaign, so that its verdict depends on the code alone: a finding of a
# random campaign would turn an unrelated change red. Longer random campaigns are for finding
# new bugs; a finding goes into fuzz/corpus/<target>/ with the fix, and every later run
# replays it.
#
# - installs cargo-fuzz (a pinned version, --locked) when it is missing;
# - builds every target once with nightly (address sanitizer, debug assertions and overflow
#   checks) into $PROX_FUZZ_TARGET_DIR, default ~/.cache/prox-fuzz-target: apart from the main
#   build, so that neither invalidates the other; fuzz/Cargo.lock must be up to date (--locked);
# - runs each target for SECONDS_PER_TARGET on one core, from fuzz/corpus/<target> and with its
#   dictionary from fuzz/dicts. The corpus is only read: new inputs go to a temporary folder
#   that is deleted at the end, so the repository's seeds stay as they are;
# - a crash, timeout, leak or out-of-memory fails the script once every target has run, with
#   the input printed in base64 and saved under fuzz/artifacts/<target>/ (ignored by git).
#   Replay one: cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
runs="${FUZZ_RUNS:-}"
seed="${FUZZ_SEED:-1}"
if [[ -n "${runs}" ]]; then
    budget=(-runs="${runs}" -seed="${seed}")
    campaign="${runs} inputs from seed ${seed}"
else
    budget=(-max_total_time="${seconds}")
    campaign="${seconds} s"
fi
cargo_fuzz_version="0.13.2"
# A single input slower than this is a finding (math_answer grades twice, each within 0.5 s
# of budget and 5 s of slack).
timeout_seconds=20
rss_limit_mb=2048

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz ${cargo_fuzz_version}" ]]; then
    echo "fuzz.sh: installing cargo-fuzz ${cargo_fuzz_version}" >&2
    # In a temporary build folder of its own, whatever CARGO_TARGET_DIR the caller set.
    env -u CARGO_TARGET_DIR cargo install --locked --force cargo-fuzz --version "${cargo_fuzz_version}"
fi

export CARGO_TARGET_DIR="${PROX_FUZZ_TARGET_DIR:-$HOME/.cache/prox-fuzz-target}"
export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
cargo +nightly fetch --locked --manifest-path fuzz/Cargo.toml
cargo +nightly fuzz build --release --debug-assertions
bin_dir="${CARGO_TARGET_DIR}/x86_64-unknown-linux-gnu/release"

dictionary() {
    case "$1" in
    program_*) echo fuzz/dicts/program.dict ;;
    records_jsonl | serve_request) echo fuzz/dicts/json.dict ;;
    records_parquet) echo fuzz/dicts/parquet.dict ;;
    math_answer) echo fuzz/dicts/latex.dict ;;
    convert_checkpoint) echo fuzz/dicts/pickle.dict ;;
    esac
}

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
failed=()
for target in $(cargo +nightly fuzz list); do
    mkdir -p "${work}/${target}" "fuzz/artifacts/${target}"
    log="${work}/${target}.log"
    dict="$(dictionary "${target}")"
    echo "== fuzz ${target} (${campaign})"
    # TMPDIR: the scratch files the targets write for readers that take a path go with ${work}.
    if TMPDIR="${work}" ASAN_OPTIONS="detect_odr_violation=0" "${bin_dir}/${target}" \
        "${work}/${target}" "fuzz/corpus/${target}" \
        ${dict:+"-dict=${dict}"} \
        "${budget[@]}" -timeout="${timeout_seconds}" -rss_limit_mb="${rss_limit_mb}" \
        -artifact_prefix="fuzz/artifacts/${target}/" -print_final_stats=1 >"${log}" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "${log}")"
        coverage="$(grep -o 'cov: [0-9]*' "${log}" | tail -n 1)"
        echo "${target}: ${runs:-?} inputs, ${coverage:-cov: ?}, no failure"
    else
        failed+=("${target}")
        tail -n 60 "${log}"
        input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "${log}" | tail -n 1)"
        if [[ -n "${input}" && -f "${input}" ]]; then
            echo "${target}: the failing input, saved as ${input} (base64):"
            base64 -w 0 "${input}"
            echo
        fi
    fi
done
if ((${#failed[@]} > 0)); then
    echo "fuzz.sh: failures in ${failed[*]}" >&2
    exit 1
fi
