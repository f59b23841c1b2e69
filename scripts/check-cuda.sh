#!/usr/bin/env bash
# Compiles the CUDA build of the engine and the CLI (`--features cuda`) on a machine with no
# GPU and no system CUDA toolkit: the toolkit comes from NVIDIA's PyPI wheels, installed once
# into a cached virtual environment.
#   scripts/check-cuda.sh            # cargo check + clippy (CUDA build) of prox-engine and prox
#   scripts/check-cuda.sh build      # also cargo build (dev profile): links the prox binary
#   scripts/check-cuda.sh bundle     # release binaries for a GPU machine, in .gpu-bundle/
#                                    # (what scripts/gpu-check.sh runs there; see that script)
#   CUDA_COMPUTE_CAP=80 scripts/check-cuda.sh build   # kernels for another GPU (default 90: H100)
#
# Why these wheels: only the CUDA 13 wheels (`cuda-toolkit[nvcc]`) ship the `nvcc` driver with
# cudafe++, cicc and the headers in one tree (nvidia/cu13/); `nvidia-cuda-nvcc-cu12` holds
# ptxas alone. The version is pinned to 13.0: candle's kernels are carried as PTX, which the
# driver compiles when the binary starts, and a driver refuses PTX from a toolkit newer than
# itself. 13.0 runs on every CUDA 13 driver (the GPU machine's: 580, CUDA 13.0). cudarc
# (candle's CUDA binding) reads the version from `nvcc --version` and binds that API.
#
# Linking: candle enables cudarc's `dynamic-linking`, so the binary is linked against libcuda,
# libcublas, libcublasLt, libcurand, libnvrtc and libcudart. The wheels hold all of them but
# libcuda, which belongs to the GPU driver: like the toolkit's own lib/stubs/libcuda.so, a stub
# with the driver's soname and empty functions is made here for the linker only. At run time
# the real driver's libcuda.so.1 is loaded instead, and the other libraries come from the
# wheels (LD_LIBRARY_PATH=$CUDA_ROOT/lib) or a system toolkit of the same major version.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-check}"
case "$mode" in
check | build | bundle) ;;
*)
    echo "usage: $0 [check|build|bundle]" >&2
    exit 2
    ;;
esac

tools="${PROX_CUDA_TOOLS:-$HOME/.cache/prox/cuda-tools}"
venv="$tools/venv"
# nvcc's own parts (cicc in nvvm, the crt headers) are separate wheels that the toolkit's
# metadata leaves unpinned: pinned here too, or pip takes the newest and its PTX with them.
toolkit=(
    "cuda-toolkit[nvcc,cudart,cccl,cublas,curand]==13.0.2"
    "nvidia-nvvm==13.0.88"
    "nvidia-cuda-crt==13.0.88"
    "nvidia-cuda-nvrtc==13.0.88"
)
stamp="$venv/.prox-installed"

if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "${toolkit[*]}" ]]; then
    echo "installing the CUDA toolkit wheels (${toolkit[*]}) into $venv" >&2
    # Afresh: wheels of another version left in the same tree would mix two toolkits.
    rm -rf "$venv"
    mkdir -p "$tools"
    python3 -m venv "$venv"
    nice -n 19 "$venv/bin/pip" install -q --disable-pip-version-check "${toolkit[@]}"
    echo "${toolkit[*]}" >"$stamp"
fi

root=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
if [[ ! -x "$root/bin/nvcc" ]]; then
    echo "error: no nvcc in $root/bin (the wheel layout changed?)" >&2
    exit 1
fi

# Link-time stand-ins in lib/stubs (a folder cudarc's build script searches under CUDA_ROOT).
stubs="$root/lib/stubs"
mkdir -p "$stubs"
for lib in cudart cublas cublasLt curand nvrtc; do
    # The wheels ship only versioned names (libcublas.so.13); `-lcublas` needs libcublas.so.
    real=$(find "$root/lib" -maxdepth 1 -name "lib$lib.so.*" | sort | head -n 1)
    if [[ -z "$real" ]]; then
        echo "error: no lib$lib.so.* in $root/lib" >&2
        exit 1
    fi
    ln -sf "$real" "$stubs/lib$lib.so"
done
if [[ ! -f "$stubs/libcuda.so" ]]; then
    # cudarc's sources: in cargo's registry once fetched (on a fresh machine, not yet).
    cudarc_src() {
        find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name 'cudarc-*' 2>/dev/null | sort | tail -n 1 || true
    }
    registry_src=$(cudarc_src)
    if [[ -z "$registry_src" ]]; then
        cargo fetch --locked >/dev/null
        registry_src=$(cudarc_src)
    fi
    # Every driver entry point cudarc declares (all CUDA versions: a superset is harmless).
    grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' "$registry_src/src/driver/sys/mod.rs" |
        sed 's/^pub unsafe fn //' | sort -u |
        awk '{ print "void " $1 "(void) {}" }' >"$stubs/libcuda-stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda-stub.c"
fi

export CUDA_ROOT="$root" CUDA_PATH="$root" CUDA_HOME="$root"
export PATH="$root/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/prox-target-cuda}"
nvcc --version | tail -n 2 >&2

run() {
    echo "+ $*" >&2
    nice -n 19 "$@"
}
if [[ "$mode" != bundle ]]; then
    run cargo check --locked -p prox-engine -p prox-train -p prox --features prox/cuda --all-targets
    run cargo clippy --locked -p prox-engine -p prox-train -p prox --features prox/cuda --all-targets -- -D warnings
fi
if [[ "$mode" == build ]]; then
    # Linking is what this step checks, so the dev profile. Its first run compiles candle's
    # kernels again (~20 min on 2 cores): without the test targets, features unify differently
    # than for `check --all-targets`, and the kernel build script's hash changes with them.
    run cargo build --locked -p prox --features cuda
    bin="$CARGO_TARGET_DIR/debug/prox"
    echo "built $bin; it needs at run time:" >&2
    ldd "$bin" | grep -E 'libcuda|libcublas|libcurand|libnvrtc|libcudart' >&2 || true
fi
if [[ "$mode" == bundle ]]; then
    # What a GPU machine with no Rust toolchain needs: the CLI, the GPU-against-CPU test binary
    # and the engine bench, stripped and compressed, plus the tiny fixture model. The CUDA
    # libraries are not carried (cuBLAS alone is hundreds of MiB): gpu-check.sh finds them on
    # the machine, in a system toolkit or in PyTorch's nvidia wheels (CUDA 13, as built here).
    run cargo build --locked --release -p prox --features cuda
    run cargo build --locked --release -p prox-engine --features cuda --example bench
    tests_bin=$(nice -n 19 cargo test --locked --release -p prox-engine --features cuda --test engine \
        --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine" and m.get("executable"):
        print(m["executable"])' | tail -n 1)
    if [[ -z "$tests_bin" ]]; then
        echo "error: cargo built no test binary for crates/prox-engine/tests/engine" >&2
        exit 1
    fi
    fixtures="${PROX_FIXTURES:-../shared/fixtures}"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/bin" "$stage/fixtures"
    cp "$CARGO_TARGET_DIR/release/prox" "$stage/bin/prox"
    cp "$CARGO_TARGET_DIR/release/examples/bench" "$stage/bin/bench"
    cp "$tests_bin" "$stage/bin/cuda-tests"
    strip "$stage/bin/"*
    cp -r "$fixtures/tiny-llama" "$fixtures/llama2-tokenizer" "$stage/fixtures/"
    rm -rf .gpu-bundle
    mkdir -p .gpu-bundle
    tar -C "$stage" -cf - . | xz -T0 -6 >.gpu-bundle/bundle.tar.xz
    # A device call carries the working tree too (tracked and untracked files, not ignored).
    tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -n 1 | cut -f1)
    bundle=$(stat -c %s .gpu-bundle/bundle.tar.xz)
    limit=$((64 * 1024 * 1024))
    echo "bundle: $((bundle / 1024 / 1024)) MiB compressed; working tree $((tree / 1024 / 1024)) MiB; limit 64 MiB" >&2
    if ((bundle + tree > limit)); then
        echo "error: bundle + working tree exceed the 64 MiB a device call carries" >&2
        exit 1
    fi
    echo "ready: carry .gpu-bundle and run scripts/gpu-check.sh on the GPU machine" >&2
fi
