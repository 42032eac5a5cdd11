# SPDX-License-Identifier: MPL-2.0
"""A torch.hub checkpoint holding a random-weight siglip2-g adaptor with real widths.

The adaptor benchmark (README: Performance) needs heads of the real size, and the
real `c-radio_v4-so400m_half.pth.tar` cannot be downloaded here. This keeps the
`args` of a template checkpoint (the teachers, the MLP version) and writes RADIO
"v2" MLP heads for siglip2-g: the summary head (`_heads.siglip2-g.*`) and the
feature head (`_feature_projections.siglip2-g.*`), each fc1 (WIDTH -> HIDDEN),
INNER residual blocks (LayerNorm, GELU, Linear HIDDEN -> HIDDEN), a final LayerNorm,
GELU and Linear HIDDEN -> OUT, in f16. The defaults are SO400M's width 1152,
SigLIP2-g's 1536, and RADIO's training defaults for the heads (mlp_hidden_size 1520,
mlp_num_inner 3): the real checkpoint's sizes are not published apart from it.

    python make_bench_adaptor.py TEMPLATE.pth.tar OUT.pth.tar [--width 1152] ...
"""

import argparse

import torch


def head(prefix, width, hidden, inner, out, gen):
    def linear(name, i, o):
        bound = 1.0 / i**0.5
        return {
            f"{prefix}.{name}.weight": (torch.rand(o, i, generator=gen) * 2 - 1) * bound,
            f"{prefix}.{name}.bias": (torch.rand(o, generator=gen) * 2 - 1) * bound,
        }

    def norm(name, n):
        return {f"{prefix}.{name}.weight": torch.ones(n), f"{prefix}.{name}.bias": torch.zeros(n)}

    tensors = linear("fc1", width, hidden)
    for k in range(inner):
        tensors |= norm(f"blocks.{k}.0", hidden) | linear(f"blocks.{k}.2", hidden, hidden)
    tensors |= norm("final.0", hidden) | linear("final.2", hidden, out)
    return {k: v.half() for k, v in tensors.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("template")
    ap.add_argument("output")
    ap.add_argument("--width", type=int, default=1152)
    ap.add_argument("--hidden", type=int, default=1520)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--out", type=int, default=1536)
    a = ap.parse_args()
    template = torch.load(a.template, map_location="cpu", weights_only=False)
    gen = torch.Generator().manual_seed(0)
    dims = (a.width, a.hidden, a.inner, a.out)
    state = head("_heads.siglip2-g", *dims, gen) | head("_feature_projections.siglip2-g", *dims, gen)
    torch.save({"args": template["args"], "state_dict": state, "epoch": 0}, a.output)
    params = sum(t.numel() for t in state.values())
    print(f"{a.output}: siglip2-g heads, {params:,} parameters")


if __name__ == "__main__":
    main()
