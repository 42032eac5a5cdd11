#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# The model benchmark of issue "C-RADIOv4 in candle": the Rust forward (f32, CPU)
# against PyTorch (transformers' RadioModel, f32, CPU) on random-weight models with
# the real SO400M and ViT-B dimensions, side by side in one run.
#
#   benches/model-vs-pytorch.sh [ROUNDS] [SIZE] [THREADS]     (defaults: 3 224x224 2)
#   FEATURES=openblas benches/model-vs-pytorch.sh             (linear layers through OpenBLAS)
#
# Each round runs both implementations (10 timed forwards after warm-up, batch 1)
# back to back, so machine noise hits both; the report is the median over rounds
# of each side's median and their ratio (below 1.0 = Rust faster). It also prints
# the Rust process's resident memory after loading SO400M against the file size.
# Needs ~4 GB of disk for torch and the models (under target/bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}" size="${2:-224x224}" threads="${3:-2}"
work=target/bench
venv="$work/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers safetensors
fi
if [ ! -f "$work/models/vitb-bench/model.safetensors" ]; then
  "$venv/bin/python" benches/pytorch/make_bench_model.py "$work/models" --which so400m vitb
fi
cargo build --release --bin radio-embed ${FEATURES:+--features "$FEATURES"}
bin=target/release/radio-embed
# OpenBLAS keeps threads of its own; it gets as many as rayon.
export OPENBLAS_NUM_THREADS="$threads"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); features: ${FEATURES:-default}"
h="${size%x*}" w="${size#*x}"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for model in vitb-bench so400m-bench; do
  dir="$work/models/$model"
  : > "$work/rust.txt"; : > "$work/torch.txt"
  for _ in $(seq "$rounds"); do
    "$bin" bench --model "$dir" --size "$size" --batch 1 --iters 10 --threads "$threads" \
      | tee "$work/last.txt" | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' >> "$work/rust.txt"
    "$venv/bin/python" benches/pytorch/torch_reference.py "$dir" --input "1x3x${h}x${w}" \
      --threads "$threads" --warmup 2 --runs 10 \
      | sed -n 's/.*median_forward_ms=\([0-9.]*\).*/\1/p' >> "$work/torch.txt"
  done
  rust="$(median < "$work/rust.txt")" torch="$(median < "$work/torch.txt")"
  printf '%-13s %s batch 1, %s threads: rust %8.1f ms  pytorch %8.1f ms  ratio %.2f\n' \
    "$model" "$size" "$threads" "$rust" "$torch" "$(echo "$rust / $torch" | bc -l)"
  grep "resident after load" "$work/last.txt" | sed "s/^/$model /"
done
