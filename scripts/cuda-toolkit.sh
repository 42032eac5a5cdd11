#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Installs a CUDA 13.0 toolkit that candle's `cuda` feature builds against, from
# PyPI wheels, into .cuda/ (no GPU or driver needed), and prints the environment
# to build with:   eval "$(scripts/cuda-toolkit.sh)"
#
# The wheels have no libcuda (the driver library), so a stub whose every cu*
# function returns CUDA_ERROR_STUB_LIBRARY is built for linking and for running
# the CPU tests of a cuda build. Never put .cuda/stub on the library path of a
# machine with a real NVIDIA driver.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)/.cuda"
cu="$root/nvidia/cu13"

if [ ! -x "$cu/bin/nvcc" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get install -y -qq python3-pip >&2
  fi
  python3 -m pip install -q --disable-pip-version-check --break-system-packages \
    --target "$root" \
    "cuda-toolkit[nvcc,nvvm,crt,cudart,cccl,nvrtc,curand,cublas]==13.0.2" >&2
fi

# The wheels ship only versioned libraries; the linker wants the plain names.
for lib in nvrtc cublas cublasLt cudart; do
  ln -sf "lib$lib.so.13" "$cu/lib/lib$lib.so"
done
ln -sf libcurand.so.10 "$cu/lib/libcurand.so"

if [ ! -e "$root/stub/libcuda.so.1" ]; then
  mkdir -p "$root/stub"
  gcc -E -P -I "$cu/include" "$cu/include/cuda.h" \
    | grep -oE '\bcu[A-Za-z0-9_]+[[:space:]]*\(' | tr -d ' (' | sort -u \
    | awk '{ printf "int %s(void) { return 34; }\n", $1 }' > "$root/stub/stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/stub/libcuda.so.1" "$root/stub/stub.c"
  ln -sf libcuda.so.1 "$root/stub/libcuda.so"
fi

cat <<ENV
export CUDA_ROOT="$cu" CUDA_HOME="$cu" CUDA_PATH="$cu"
export PATH="$cu/bin:\$PATH"
export CUDA_COMPUTE_CAP=90 CUDAFORGE_THREADS=2
export LIBRARY_PATH="$cu/lib:$root/stub\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export CUDA_TOOLKIT_LIB="$cu/lib" CUDA_STUB_LIB="$root/stub"
ENV
