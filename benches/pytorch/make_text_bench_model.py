#!/usr/bin/env python
# SPDX-License-Identifier: MPL-2.0
"""Write a random-weight SigLIP2 folder with the text tower of
google/siglip2-giant-opt-patch16-384, for the text-embedding benchmark. Large
(about 2.8 GB of text weights plus a vision filler); never commit it.

    make_text_bench_model.py OUT_DIR [--seed 0] [--vision-mb 1024]

OUT_DIR gets config.json (a SiglipModel config whose text_config has the real giant-opt
dimensions: hidden 1152, 27 layers, 16 heads, MLP 4304, projection 1536, vocab 256,000,
64 positions), tokenizer.json (the tiny fixture's: the benchmark times the tower on 64
ids, whatever they are), and model.safetensors holding `text_model.*` (transformers'
SiglipTextModel initialised from a seed) and a `vision_model.filler` tensor of
--vision-mb MB standing in for the vision tower, which the text path must never read.
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import SiglipTextConfig, SiglipTextModel

TEXT = dict(vocab_size=256000, hidden_size=1152, intermediate_size=4304,
            num_hidden_layers=27, num_attention_heads=16, max_position_embeddings=64,
            projection_size=1536, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
            pad_token_id=0, bos_token_id=2, eos_token_id=1)
FIXTURE_TOKENIZER = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures",
                                 "textsearch", "siglip-text", "tokenizer.json")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vision-mb", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    model = SiglipTextModel(SiglipTextConfig(**TEXT)).eval()
    # As a SiglipModel checkpoint names them (transformers 5 drops the prefix
    # from a bare SiglipTextModel's state dict).
    tensors = {("" if k.startswith("text_model.") else "text_model.") + k: v.contiguous()
               for k, v in model.state_dict().items()}
    tensors["vision_model.filler"] = torch.zeros(args.vision_mb * 1024 * 256)
    save_file(tensors, os.path.join(args.out, "model.safetensors"))
    config = {"architectures": ["SiglipModel"], "model_type": "siglip",
              "text_config": dict(TEXT, model_type="siglip_text_model"),
              "vision_config": {"model_type": "siglip_vision_model"}}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    shutil.copy(FIXTURE_TOKENIZER, os.path.join(args.out, "tokenizer.json"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
