#!/usr/bin/env bash
# The GPU check of issue 20, prepared here and run on a machine with a CUDA device (the device
# machine has no network, so everything it runs is built here and carried):
#
#   scripts/gpu_check.sh bundle        # here: builds gpu-bundle/ (about 30 MB, git-ignored)
#   scripts/gpu_check.sh run [SIZE]    # there: the kernels' test and one sector, CPU vs CUDA
#
# `run` executes, with the bundle's NVRTC on LD_LIBRARY_PATH (libcuda comes from the driver):
#   1. rust_core's CUDA tests, the ignored one included (`gpu::cuda::tests`: every kernel against
#      the CPU backend, byte for byte, and a cancelled call stops);
#   2. examples/gpu_check.rs on one sector (default 512MiB): PC2 and C2 on the CPU backend and on
#      the CUDA backend from the same PC1, every file compared byte for byte, both proofs
#      verified, a table of times with the card's name for docs/benchmarks.md.
# With the device tool: `run` with command "scripts/gpu_check.sh run 512MiB" and
# carry ["gpu-bundle"]. Nothing here has run on a GPU yet (no device was lent so far).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$here/gpu-bundle"

case "${1:-}" in
bundle)
    venv_lib="$("$here/.venv/bin/python" -c 'import os, nvidia.cuda_nvrtc as m; print(os.path.join(list(m.__path__)[0], "lib"))')"
    target="${NVRTC_TARGET:-$HOME/.cache/sectorstorage/rust_core-nvrtc-target}"
    cd "$here/rust_core"
    export CARGO_TARGET_DIR="$target"
    cargo build --release --features cuda --example gpu_check
    tests="$(cargo test --release --features cuda --lib --no-run --message-format=json 2>/dev/null \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "rust_core":
        print(m["executable"])' | tail -1)"
    rm -rf "$bundle" && mkdir -p "$bundle"
    cp "$tests" "$bundle/rust_core_tests"
    cp "$target/release/examples/gpu_check" "$bundle/gpu_check"
    xz -T0 -6 -c "$venv_lib/libnvrtc.so.12" > "$bundle/libnvrtc.so.12.xz"
    cp "$venv_lib"/libnvrtc-builtins.so.* "$bundle/"
    du -sh "$bundle"
    ;;
run)
    size="${2:-512MiB}"
    [ -d "$bundle" ] || { echo "no $bundle: run 'scripts/gpu_check.sh bundle' on the build machine and carry it"; exit 2; }
    lib="$(mktemp -d)"
    xz -dc "$bundle/libnvrtc.so.12.xz" > "$lib/libnvrtc.so.12"
    cp "$bundle"/libnvrtc-builtins.so.* "$lib/"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    echo "==> CUDA kernels against the CPU backend (gpu::cuda::tests, ignored ones included)"
    "$bundle/rust_core_tests" --include-ignored gpu::
    echo "==> one $size sector: PC2 and C2 on the CPU and on the CUDA backend"
    "$bundle/gpu_check" --size "$size" --workdir "${TMPDIR:-/tmp}/gpu_check"
    ;;
*)
    sed -n '2,15p' "$0"
    exit 2
    ;;
esac
