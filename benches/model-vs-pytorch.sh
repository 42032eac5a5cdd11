#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The model benchmark of issues "C-RADIOv4 in candle" and "CPU speed on every x86
# server": the Rust forward (f32, CPU) against PyTorch (transformers' RadioModel,
# f32, CPU) on random-weight models with the real ViT-B and SO400M dimensions,
# side by side in one run.
#
#   benches/model-vs-pytorch.sh [ROUNDS] [THREADS]            (defaults: 3 2)
#   CASES="so400m-bench:512x512:1" benches/model-vs-pytorch.sh 1
#   RADIOEMBED_CPU_MATMUL=gemm benches/model-vs-pytorch.sh    (the gemm crate's path)
#   OPENBLAS_CORETYPE=Haswell benches/model-vs-pytorch.sh     (OpenBLAS's AVX2 kernels)
#   BF16=1 benches/model-vs-pytorch.sh   (bf16: RADIOEMBED_CPU_MATMUL=bf16 against
#                                        PyTorch with the model cast to bfloat16;
#                                        =bf16-avx512 or =bf16-amx picks a kernel)
#
# CASES lists MODEL:HxW:BATCH (default: ViT-B and SO400M at 224x224, batch 1 and 8,
# and SO400M at 512x512, batch 1). Each round runs both implementations back to
# back (ITERS timed forwards after 2 warm-ups: 10 for batch 1, 3 above), so machine
# noise hits both; the report is the median over rounds of each side's median and
# their ratio (below 1.0 = Rust faster), with the CPU, the matmul path and the
# GFLOP/s reached against the CPU's peak. Needs ~4 GB of disk for torch and the
# models (under target/bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}" threads="${2:-2}"
cases="${CASES:-vitb-bench:224x224:1 vitb-bench:224x224:8 so400m-bench:224x224:1 so400m-bench:224x224:8 so400m-bench:512x512:1}"
work=target/bench
venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers safetensors
fi
for model in vitb so400m; do
  if [ ! -f "$work/models/$model-bench/model.safetensors" ]; then
    "$venv/bin/python" benches/pytorch/make_bench_model.py "$work/models" --which "$model"
  fi
done
cargo build --release --bin radio-embed
bin=target/release/radio-embed
torch_dtype=()
if [ "${BF16:-0}" = 1 ]; then
  export RADIOEMBED_CPU_MATMUL="${RADIOEMBED_CPU_MATMUL:-bf16}"
  torch_dtype=(--bf16)
fi

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

first=1
for case in $cases; do
  IFS=: read -r model size batch <<<"$case"
  h="${size%x*}" w="${size#*x}" dir="$work/models/$model"
  iters="${ITERS:-$([ "$batch" = 1 ] && echo 10 || echo 3)}"
  : > "$work/rust.txt"; : > "$work/torch.txt"
  for _ in $(seq "$rounds"); do
    "$bin" bench --model "$dir" --size "$size" --batch "$batch" --iters "$iters" \
      --threads "$threads" > "$work/last.txt"
    sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' "$work/last.txt" >> "$work/rust.txt"
    "$venv/bin/python" benches/pytorch/torch_reference.py "$dir" --input "${batch}x3x${h}x${w}" \
      --threads "$threads" --warmup 2 --runs "$iters" "${torch_dtype[@]}" \
      | sed -n 's/.*median_forward_ms=\([0-9.]*\).*/\1/p' >> "$work/torch.txt"
  done
  if [ "$first" = 1 ]; then
    grep -E '^CPU' "$work/last.txt"
    first=0
  fi
  rust="$(median < "$work/rust.txt")" torch="$(median < "$work/torch.txt")"
  printf '%-13s %-8s batch %s, %s threads: rust %8.1f ms  pytorch %8.1f ms  ratio %.2f\n' \
    "$model" "$size" "$batch" "$threads" "$rust" "$torch" "$(echo "$rust / $torch" | bc -l)"
  # The last round's throughput against the peak, and the memory after load.
  grep -E '% of the|resident after load' "$work/last.txt" | sed 's/^/    /'
done
