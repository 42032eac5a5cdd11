#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The one-call GPU check (issue 13). The GPU machine has no Rust, no GStreamer
# and no network, so everything it runs is built here:
#
#   scripts/gpu-check.sh build     here: target/gpu-check/bundle.tar.xz, with the
#                                  stripped CUDA test executables (the library's
#                                  epilogue and attention tests, numerics,
#                                  preprocessing), radio-embed and the libraries
#                                  they need that a machine without GStreamer
#                                  lacks; prints its size
#   scripts/gpu-check.sh run       there, from the repository root (the device
#                                  call carries target/gpu-check): versions, the
#                                  CUDA tests, then random-weight SO400M at
#                                  512x512 batch 16 in bf16: transformers'
#                                  RadioModel (SDPA) against ours on both
#                                  attention paths (RADIO_ATTENTION), on the same
#                                  input; a table and a last line PASS or FAIL
#                                  with the reasons
#   scripts/gpu-check.sh profile   there, after `run`: our forward and PyTorch's,
#                                  one each under Nsight Compute (ncu), their
#                                  kernels' GPU time by kind side by side
#                                  (scripts/kernel_profile.py)
#   scripts/gpu-check.sh dry-run   here: `run` against the stub driver and the
#                                  CPU PyTorch of benches/model-vs-pytorch.sh,
#                                  so that a typo fails here and not on the GPU;
#                                  every GPU step fails with its reason
#
# On the GPU machine: python3 with torch and transformers (RadioModel) and the
# CUDA 13 libraries of its nvidia-* wheels (found under site-packages) or in
# CUDA_LIBS; driver >= 580 (CUDA 13).
set -uo pipefail
cd "$(dirname "$0")/.."
bundle_dir=target/gpu-check
bundle="$bundle_dir/bundle.tar.xz"
# What the forward step runs: SO400M dims, 512x512, batch 16, as issue 13 sets.
BATCH=16 SIZE=512
# H200 (SXM) dense bf16 peak, TFLOP/s, for the MFU column.
PEAK_TFLOPS=989

# Libraries the GPU machine has (glibc, the compiler runtime) or must bring from
# its own CUDA install (driver, toolkit): never carried.
system_lib() {
  case "$1" in
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux-* \
      | libgcc_s.so.* | libstdc++.so.* | linux-vdso.so.*) return 0 ;;
    libcuda.so.* | libcublas.so.* | libcublasLt.so.* | libcurand.so.* | libcudart.so.* \
      | libnvrtc.so.* | libnvrtc-builtins.so.*) return 0 ;;
  esac
  return 1
}

build() {
  set -e
  eval "$(scripts/cuda-toolkit.sh)"
  export CARGO_TARGET_DIR=target/cuda
  local stage=target/gpu-check-stage
  rm -rf "$stage" "$bundle_dir"
  mkdir -p "$stage/bin" "$stage/lib" "$bundle_dir"
  # GStreamer stays a library dependency of the crate; the GPU machine gets the
  # Debian libraries the executables link, next to them.
  local features=(--release --no-default-features --features cuda)
  cargo test "${features[@]}" --no-run --lib --test cuda_numerics --test gpu_preprocess \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])' | while read -r name exe; do
    cp "$exe" "$stage/bin/$name"
  done
  cargo build "${features[@]}" --bin radio-embed
  cp "$CARGO_TARGET_DIR/release/radio-embed" "$stage/bin/"
  for exe in gstradio cuda_numerics gpu_preprocess radio-embed; do
    [ -x "$stage/bin/$exe" ] || { echo "gpu-check build: $exe was not built" >&2; exit 1; }
    strip "$stage/bin/$exe"
  done
  # Every library the executables load (the CUDA ones resolve to the stub and
  # the toolkit here), minus what the GPU machine has itself.
  LD_LIBRARY_PATH="$CUDA_TOOLKIT_LIB:$CUDA_STUB_LIB" ldd "$stage"/bin/* | awk '/=>/ { print $1, $3 }' \
    | sort -u | while read -r name path; do
      system_lib "$name" && continue
      if [ ! -f "$path" ]; then echo "gpu-check build: $name not found" >&2; exit 1; fi
      cp -L "$path" "$stage/lib/$name"
    done
  strip --strip-unneeded "$stage"/lib/* 2>/dev/null || true
  tar -C "$stage" -cf - bin lib | xz -T2 -6 > "$bundle"
  echo "carried libraries: $(cd "$stage/lib" && ls | tr '\n' ' ')"
  du -sh "$stage/bin"/* "$stage/lib" | sed 's/^/  unpacked /'
  local bytes tree
  bytes=$(stat -c %s "$bundle")
  tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  awk -v b="$bytes" -v t="$tree" -v f="$bundle" 'BEGIN { m = 1048576
    printf "bundle %s: %.1f MiB; with the working tree (%.1f MiB) %.1f MiB of the 64 MiB a device call carries\n",
      f, b / m, t / m, (b + t) / m }'
  if [ $((bytes + tree)) -ge $((64 * 1048576)) ]; then
    echo "gpu-check build: too large for one device call" >&2
    exit 1
  fi
}

# --- run -------------------------------------------------------------------

failures=()
fail() { failures+=("$1"); echo "  FAIL: $1"; }

# step NAME SECONDS COMMAND...: runs one step under its own timeout, its output
# in $work/NAME.log and on stdout; returns the command's status.
step() {
  local name=$1 seconds=$2
  shift 2
  echo "== $name"
  timeout "$seconds" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  sed 's/^/  /' "$work/$name.log" | tail -n 40
  [ $rc -eq 124 ] && echo "  (stopped after ${seconds} s)"
  return $rc
}

# The value of KEY=VALUE in a step's log.
value() { grep -o "$2=[^ ]*" "$work/$1.log" 2>/dev/null | tail -1 | cut -d= -f2; }

run() {
  local dry=$1 profile=${2:-0}
  [ -f "$bundle" ] || { echo "no $bundle: run 'scripts/gpu-check.sh build' first" >&2; exit 2; }
  work=${GPU_CHECK_WORK:-/tmp/gpu-check}
  rm -rf "$work" && mkdir -p "$work/bundle"
  local python=${PYTHON:-python3} exe="$work/bundle/bin"
  local cuda_libs=${CUDA_LIBS:-}
  if [ "$dry" = 1 ]; then
    # The stub driver answers every call with CUDA_ERROR_STUB_LIBRARY.
    eval "$(scripts/cuda-toolkit.sh)"
    cuda_libs="$CUDA_TOOLKIT_LIB:$CUDA_STUB_LIB"
    [ -x target/bench/venv/bin/python ] && python=target/bench/venv/bin/python
    echo "DRY RUN: stub CUDA driver, $python; every GPU step is expected to fail"
  fi
  # Python unpacks it: a minimal image may lack the xz program, never lzma.
  "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$bundle" "$work/bundle" || { echo "cannot unpack $bundle" >&2; exit 2; }
  if [ "$dry" = 0 ]; then
    # The CUDA 13 libraries of the nvidia-* wheels next to PyTorch.
    local wheels
    wheels=$("$python" -c 'import glob, os, site
dirs = [d for p in site.getsitepackages() for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))]
print(":".join(sorted(dirs)))' 2>/dev/null)
    cuda_libs="${cuda_libs:+$cuda_libs:}$wheels"
  fi
  # Our executables find the carried libraries first; python and nvidia-smi keep
  # the machine's own (a Debian libz or libffi must not replace Ubuntu's there).
  local ours=(env "LD_LIBRARY_PATH=$work/bundle/lib:$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")

  echo "== versions"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/  /'
  else
    fail "nvidia-smi not found: no NVIDIA driver on this machine"
  fi
  "$python" - <<'EOF' 2>&1 | sed 's/^/  /'
import importlib.metadata as md
import torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU: "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
for pkg in ("transformers", "nvidia-cuda-nvrtc", "nvidia-cublas", "nvidia-cuda-runtime"):
    try:
        print(f"{pkg} {md.version(pkg)}")
    except md.PackageNotFoundError:
        print(f"{pkg}: not installed")
EOF
  if ! "$python" -c 'from transformers import RadioModel' 2> /dev/null; then
    fail "this python's transformers has no RadioModel (added July 2026): carry a newer transformers wheel"
  fi

  if [ "$profile" = 1 ]; then
    profile_steps "$work/models/so400m-bench" "$BATCH" "$SIZE"
    return
  fi

  # The tests print SKIPPED without a usable GPU and still pass: here that is a failure.
  # The library's own GPU tests are the epilogue and attention kernels' and
  # the outputs' copy to the host (the rest is CPU work).
  local -A filter=([gstradio]="model::cuda_ postprocess::tests::cuda_")
  for t in gstradio cuda_numerics gpu_preprocess; do
    if step "$t" 300 "${ours[@]}" "$exe/$t" ${filter[$t]:-} --test-threads=1 --nocapture; then
      if grep -q SKIPPED "$work/$t.log"; then
        fail "$t skipped its GPU tests: $(grep -m1 SKIPPED "$work/$t.log")"
      fi
    else
      fail "$t failed: $(grep -m1 -E 'panicked|error' "$work/$t.log" || tail -1 "$work/$t.log")"
    fi
  done

  step make-model 300 "$python" benches/pytorch/make_bench_model.py "$work/models" --which so400m \
    || fail "make_bench_model.py failed"
  model_steps cuda "$work/models/so400m-bench" "$BATCH" "$SIZE" 30
  summarize
  if [ "$dry" = 1 ]; then
    # The GPU steps failed above; the same steps on the CPU with the tiny fixture
    # check what the table is read from.
    echo "DRY RUN: GPU steps failed as expected (${#failures[@]}); the same steps on the CPU:"
    failures=()
    rm -f "$work"/*.log
    model_steps cpu tests/fixtures/tiny-so400m 2 64 3
    summarize
  fi
  if [ ${#failures[@]} -eq 0 ]; then
    echo "PASS"
  else
    echo "FAIL: $(printf '%s; ' "${failures[@]}")"
    exit 1
  fi
}

# model_steps DEVICE MODEL BATCH SIZE ITERS: PyTorch's f32 outputs and bf16 timing
# on DEVICE (cuda or cpu), ours on the same input, and the cosine between them.
model_steps() {
  local device=$1 model=$2 batch=$3 size=$4 iters=$5
  local ref="$work/ref-f32.safetensors" ours_out="$work/ours-bf16.safetensors"
  local our_device=$device
  [ "$device" = cuda ] && our_device=cuda:0
  checked_device=$device
  shape="$(basename "$model") ${size}x${size} batch $batch bf16 on $device"
  step pytorch-f32 300 "$python" benches/pytorch/torch_reference.py "$model" --device "$device" \
    --input "${batch}x3x${size}x${size}" --seed 0 --out "$ref" || fail "PyTorch f32 reference on $device failed"
  step pytorch-bf16 300 "$python" benches/pytorch/torch_reference.py "$model" --device "$device" --bf16 \
    --input "$ref:input" --warmup 5 --runs "$iters" || fail "PyTorch bf16 timing on $device failed"
  # Ours on both attention paths (RADIO_ATTENTION): candle's ops and the fused kernel.
  local path
  for path in reference fused; do
    step "ours-forward-$path" 300 "${ours[@]}" "RADIO_ATTENTION=$path" "$exe/radio-embed" forward \
      --model "$model" --device "$our_device" --dtype bf16 --input "$ref" --output "$ours_out" \
      || fail "radio-embed forward on $our_device ($path attention) failed"
    if [ -f "$ours_out" ]; then
      step "cosine-$path" 120 "$python" benches/pytorch/torch_reference.py --compare "$ref" "$ours_out" \
        || fail "comparing the outputs ($path attention) failed"
      rm -f "$ours_out"
    fi
    # Peak device memory of our bench, sampled from the driver while it runs.
    local sampler=""
    if [ "$device" = cuda ] && command -v nvidia-smi > /dev/null; then
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 \
        > "$work/memory-$path.log" 2>&1 &
      sampler=$!
    fi
    step "ours-bench-$path" 300 "${ours[@]}" "RADIO_ATTENTION=$path" "$exe/radio-embed" bench \
      --model "$model" --device "$our_device" --dtype bf16 --batch "$batch" --size "${size}x${size}" \
      --iters "$iters" --frames NV12:1920x1080 \
      || fail "radio-embed bench on $our_device ($path attention) failed"
    [ -n "$sampler" ] && kill "$sampler" 2> /dev/null
  done
  rm -f "$ref"
}

# profile_steps MODEL BATCH SIZE: one bf16 forward of ours and one of PyTorch's, on
# the same input, each under ncu timing every kernel alone; then the table.
profile_steps() {
  local model=$1 batch=$2 size=$3 ref="$work/ref-f32.safetensors"
  local ncu=${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}
  [ -x "$ncu" ] || { echo "profile: no ncu (Nsight Compute) here; set NCU" >&2; exit 1; }
  local ncu_args=(--csv --metrics gpu__time_duration.sum --target-processes all)
  step make-model 300 "$python" benches/pytorch/make_bench_model.py "$work/models" --which so400m \
    || { echo "make_bench_model.py failed" >&2; exit 1; }
  step input 300 "$python" benches/pytorch/torch_reference.py "$model" --device cuda \
    --input "${batch}x3x${size}x${size}" --seed 0 --out "$ref" || { echo "no input" >&2; exit 1; }
  step ncu-ours 400 "$ncu" "${ncu_args[@]}" --log-file "$work/ncu-ours.csv" "${ours[@]}" \
    "$exe/radio-embed" forward --model "$model" --device cuda:0 --dtype bf16 --input "$ref" \
    --output "$work/ours.safetensors"
  step ncu-pytorch 400 "$ncu" "${ncu_args[@]}" --log-file "$work/ncu-pytorch.csv" "$python" \
    benches/pytorch/torch_reference.py "$model" --device cuda --bf16 --input "$ref:input"
  echo "== kernels, $(basename "$model") ${size}x${size} batch $batch bf16, each timed alone by ncu"
  "$python" scripts/kernel_profile.py "$work/ncu-ours.csv" "$work/ncu-pytorch.csv"
}

summarize() {
  local theirs peak_theirs path best=""
  theirs=$(value pytorch-bf16 median_forward_ms)
  peak_theirs=$(value pytorch-bf16 peak_memory_mib)
  echo
  echo "| what | value |"
  echo "|---|---|"
  echo "| $shape: PyTorch SDPA (CUDA events on a GPU), peak memory (allocator) | ${theirs:-?} ms, ${peak_theirs:-?} MiB |"
  below() { [ -n "$1" ] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
  for path in reference fused; do
    local log="$work/ours-bench-$path.log" ours frames gflops cos_s cos_f peak
    ours=$(grep -o 'median [0-9.]* ms/forward' "$log" 2>/dev/null | awk '{ print $2 }')
    frames=$(grep -o 'median [0-9.]* ms/batch' "$log" 2>/dev/null | awk '{ print $2 }')
    gflops=$(grep -o '[0-9.]* GFLOP/s' "$log" 2>/dev/null | head -1 | awk '{ print $1 }')
    cos_s=$(value "cosine-$path" summary_cosine_min)
    cos_f=$(value "cosine-$path" features_cosine_min)
    peak=$(grep -E '^[0-9]+$' "$work/memory-$path.log" 2>/dev/null | sort -n | tail -1)
    local ratio="?" mfu="?"
    [ -n "$theirs" ] && [ -n "$ours" ] && ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.3f", a / b }')
    [ -n "$gflops" ] && mfu=$(awk -v g="$gflops" -v p="$PEAK_TFLOPS" 'BEGIN { printf "%.1f %%", g / p / 10 }')
    echo "| ours, $path attention: forward (wall clock until read), ours / PyTorch, MFU of $PEAK_TFLOPS TFLOP/s | ${ours:-?} ms, $ratio, $mfu |"
    echo "| ours, $path attention: NV12 1920x1080 host frames -> embeddings on the host | ${frames:-?} ms a batch |"
    echo "| ours, $path attention: peak memory (driver, whole GPU) | ${peak:-?} MiB |"
    echo "| ours, $path attention: bf16 against PyTorch f32, worst cosine summary / patch | ${cos_s:-?} / ${cos_f:-?} |"
    below "$cos_s" 0.999 && fail "$path attention: summary cosine $cos_s < 0.999"
    below "$cos_f" 0.995 && fail "$path attention: patch cosine $cos_f < 0.995"
    if [ -n "$ours" ] && { [ -z "$best" ] || awk -v a="$ours" -v b="$best" 'BEGIN { exit !(a < b) }'; }; then
      best=$ours
    fi
  done
  # Speed is a goal on the GPU only; the CPU pass of a dry run checks the parsing.
  if [ "$checked_device" = cuda ] && [ -n "$theirs" ] && [ -n "$best" ] \
    && awk -v a="$best" -v b="$theirs" 'BEGIN { exit !(a > b) }'; then
    fail "ours (best path) ${best} ms is slower than PyTorch's ${theirs} ms"
  fi
}

case "${1:-}" in
  build) build ;;
  run) run 0 ;;
  profile) run 0 1 ;;
  dry-run) run 1 ;;
  *) echo "usage: $0 build|run|profile|dry-run" >&2; exit 2 ;;
esac
