#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# GPU checks on a machine with an NVIDIA driver, using binaries built elsewhere
# (it builds nothing). Build them here first:
#   scripts/gpu-check.sh build     -> target/gpu-check/ (test and bench executables)
# then, on the GPU machine, from the repository root:
#   scripts/gpu-check.sh run       -> a short table of results and timings
# The GPU machine needs the CUDA 13 runtime libraries (cuBLAS, cuRAND, cudart,
# NVRTC) on LD_LIBRARY_PATH or in CUDA_LIBS, and driver >= 580.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/gpu-check
case "${1:-}" in
  build)
    eval "$(scripts/cuda-toolkit.sh)"
    export CARGO_TARGET_DIR=target/cuda
    mkdir -p "$out"
    cargo test --release --features cuda --no-run --message-format=json 2>/dev/null \
      | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"] in ("gpu_preprocess","cuda_numerics","model_fixtures"):
        print(m["executable"])' | xargs -I{} cp {} "$out/"
    cargo bench --features cuda --bench preprocess --no-run 2>&1 | tail -1
    cp "$(ls -t target/cuda/release/deps/preprocess-* | grep -v '\.d$' | head -1)" "$out/preprocess-bench"
    cargo build --release --features cuda --bin radio-embed
    cp target/cuda/release/radio-embed "$out/"
    ls -la "$out"
    ;;
  run)
    export LD_LIBRARY_PATH="${CUDA_LIBS:+$CUDA_LIBS:}${LD_LIBRARY_PATH:-}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    status=0
    for t in "$out"/gpu_preprocess-* "$out"/cuda_numerics-* "$out"/model_fixtures-*; do
      if "$t" --test-threads=1 --nocapture >"$t.log" 2>&1; then r=pass; else r=FAIL; status=1; fi
      printf '%-40s %s (%s)\n' "$(basename "$t")" "$r" "$(grep -o 'test result:.*' "$t.log" | head -1)"
    done
    "$out/preprocess-bench" 2>/dev/null | grep -E 'GPU|ratio' || true
    for dtype in f32 bf16; do
      "$out/radio-embed" bench --model tests/fixtures/tiny-so400m --size 512x512 --batch 8 \
        --device cuda:0 --dtype "$dtype" --iters 20 | grep median || status=1
    done
    exit $status
    ;;
  *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
