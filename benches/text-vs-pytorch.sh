#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# Text-query latency (issue 17): `radio-embed embed-text` against transformers'
# SiglipTextModel on a random-weight tower with SigLIP2 giant-opt's text dimensions
# (about 53 GFLOP for 64 tokens), f32 on the CPU, side by side in one run.
#
#   benches/text-vs-pytorch.sh [ROUNDS] [THREADS]     (defaults: 3 2)
#   RADIOEMBED_CPU_MATMUL=gemm benches/text-vs-pytorch.sh   (the gemm crate's path)
#
# Each round runs both (10 timed queries after a warm-up); the report is the median
# of each side's medians and their ratio (below 1.0 = ours faster), with the CPU
# model and each process's resident memory (the folder also holds a 1 GB vision
# filler that the text path must not read). Needs ~7 GB of disk under target/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}" threads="${2:-2}"
work=target/bench
venv="$work/venv"
model="$work/models/siglip2-text-bench"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers safetensors
fi
if [ ! -f "$model/model.safetensors" ]; then
  "$venv/bin/python" benches/pytorch/make_text_bench_model.py "$model"
fi
cargo build --release --bin radio-embed
# OpenBLAS keeps threads of its own; it gets as many as rayon.
export OPENBLAS_NUM_THREADS="$threads"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); CPU matmul: ${RADIOEMBED_CPU_MATMUL:-default (openblas)}"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
: > "$work/text-rust.txt"; : > "$work/text-torch.txt"
for _ in $(seq "$rounds"); do
  target/release/radio-embed embed-text --text-model "$model" --output "$work/text-out.safetensors" \
    --time 10 --threads "$threads" "a photo of a red car" | tee "$work/text-last.txt" \
    | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' >> "$work/text-rust.txt"
  "$venv/bin/python" benches/pytorch/text_reference.py "$model" --threads "$threads" --runs 10 \
    | tee "$work/text-torch-last.txt" | sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' >> "$work/text-torch.txt"
done
rust="$(median < "$work/text-rust.txt")" torch="$(median < "$work/text-torch.txt")"
printf 'siglip2 giant-opt text tower, 64 tokens, %s threads: rust %.1f ms  pytorch %.1f ms  ratio %.2f\n' \
  "$threads" "$rust" "$torch" "$(echo "$rust / $torch" | bc -l)"
echo "rust:    $(sed -n 's/.*\(resident after load.*\)/\1/p' "$work/text-last.txt")"
echo "pytorch: resident (peak) $(sed -n 's/.*resident_mib=\([0-9]*\).*/\1/p' "$work/text-torch-last.txt") MiB"
echo "model file: $(du -m "$model/model.safetensors" | cut -f1) MiB (text tower + 1024 MiB vision filler)"
