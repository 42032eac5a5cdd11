#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""GPU time per kind of kernel, from Nsight Compute's CSV, for two runs side by side.

    ncu --csv --metrics gpu__time_duration.sum --log-file ours.csv radio-embed forward ...
    ncu --csv --metrics gpu__time_duration.sum --log-file theirs.csv python torch_reference.py ...
    kernel_profile.py ours.csv [theirs.csv]

Prints a table of the kernels' GPU time grouped by what they do (matrix products,
attention, layer norm, ...), each kernel timed alone by ncu, then each run's costliest
kernels. `scripts/gpu-check.sh profile` runs it on the GPU machine, so that where our
forward loses time against PyTorch's shows by kind, not only as one total. Kernels that
load the model (casts of the weights) count too: their group says so.
"""
import collections
import csv
import re
import sys

METRIC = "gpu__time_duration.sum"
MS_PER_UNIT = {"nsecond": 1e-6, "ns": 1e-6, "usecond": 1e-3, "us": 1e-3,
               "msecond": 1.0, "ms": 1.0, "second": 1e3, "s": 1e3}
# Kinds of kernel by name, first match wins: cuBLAS / CUTLASS names for the products,
# ours (attention.cu, epilogue.cu, the preprocessing kernels), candle's and PyTorch's.
KINDS = [
    ("matrix products (cuBLAS, CUTLASS)", re.compile(r"gemm|cutlass|xmma|nvjet|cublas", re.I)),
    ("attention (fused kernels, softmax)", re.compile(r"attention|flash|fmha|softmax", re.I)),
    ("layer norm", re.compile(r"layer_?norm", re.I)),
    ("bias, GELU, residual", re.compile(r"bias|gelu|residual", re.I)),
    ("preprocessing", re.compile(r"^(vertical|horizontal)", re.I)),
    ("copies and casts (weights at load too)", re.compile(r"copy|cast|convert", re.I)),
]
OTHER = "other element-wise"


def kernel_times(path):
    """(kernel name, ms) for each kernel launch in an ncu CSV file."""
    with open(path, newline="") as f:
        # ncu's own lines (==PROF==, the program's output) come before the CSV.
        lines = [line for line in f if line.startswith('"')]
    times = []
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != METRIC:
            continue
        unit = row.get("Metric Unit", "nsecond")
        if unit not in MS_PER_UNIT:
            sys.exit(f"{path}: unknown unit {unit!r} for {METRIC}")
        times.append((row["Kernel Name"], float(row["Metric Value"].replace(",", "")) * MS_PER_UNIT[unit]))
    if not times:
        sys.exit(f"{path}: no {METRIC} rows (did ncu run, and may it read the GPU's counters?)")
    return times


def kind(name):
    return next((label for label, pattern in KINDS if pattern.search(name)), OTHER)


def by_kind(times):
    totals = collections.defaultdict(lambda: [0.0, 0])
    for name, ms in times:
        totals[kind(name)][0] += ms
        totals[kind(name)][1] += 1
    return totals


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    runs = [(path, kernel_times(path)) for path in sys.argv[1:]]
    kinds = [by_kind(times) for _, times in runs]
    labels = [label for label, _ in KINDS] + [OTHER]
    print("| kernels | " + " | ".join(f"{path}: ms (launches)" for path, _ in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for label in labels:
        cells = [f"{k[label][0]:.2f} ({k[label][1]})" if label in k else "-" for k in kinds]
        print(f"| {label} | " + " | ".join(cells) + " |")
    totals = [f"{sum(ms for _, ms in times):.2f} ({len(times)})" for _, times in runs]
    print("| all | " + " | ".join(totals) + " |")
    for path, times in runs:
        per_name = collections.defaultdict(lambda: [0.0, 0])
        for name, ms in times:
            per_name[name][0] += ms
            per_name[name][1] += 1
        print(f"\ncostliest kernels of {path}:")
        for name, (ms, count) in sorted(per_name.items(), key=lambda kv: -kv[1][0])[:10]:
            print(f"  {ms:9.2f} ms {count:5d}x  {name[:110]}")


if __name__ == "__main__":
    main()
