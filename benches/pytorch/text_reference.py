#!/usr/bin/env python
# SPDX-License-Identifier: MPL-2.0
"""Time transformers' SiglipTextModel on one 64-token query, as the text benchmark's
baseline: the pooled output of `input_ids` alone, f32, on the CPU.

    text_reference.py MODEL_DIR [--threads 2] [--runs 10]

prints `median_ms=... resident_mib=...`.
"""
import argparse
import resource
import statistics
import time

import torch
from transformers import SiglipTextModel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = SiglipTextModel.from_pretrained(args.model).eval()
    ids = torch.zeros((1, 64), dtype=torch.long)
    ids[0, :7] = torch.tensor([14, 172, 122, 43, 152, 137, 1])
    times = []
    with torch.inference_mode():
        model(input_ids=ids)
        for _ in range(args.runs):
            start = time.perf_counter()
            model(input_ids=ids).pooler_output.sum().item()
            times.append((time.perf_counter() - start) * 1000)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"median_ms={statistics.median(times):.1f} resident_mib={rss:.0f}")


if __name__ == "__main__":
    main()
