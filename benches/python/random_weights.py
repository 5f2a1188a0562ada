"""Seeded random weights for a Hugging Face folder that holds its
configuration and tokenizer but no weights, written as model.safetensors
in float32 with the names `save_pretrained` gives.

The GPU kit (`cargo xtask gpu-kit`) carries all-MiniLM-L6-v2's files
without its 87 MiB of weights, which do not fit in what a GPU machine
receives; the encoder benchmark times the same architecture on both sides,
and neither side's speed depends on the values.

Usage: python random_weights.py MODEL_DIR
"""

import sys


def main():
    import torch
    from transformers import AutoConfig, AutoModel

    folder = sys.argv[1]
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(folder)
    model = AutoModel.from_config(config).float()
    model.save_pretrained(folder, safe_serialization=True)
    print(f"random weights ({sum(p.numel() for p in model.parameters())} parameters) in {folder}")


if __name__ == "__main__":
    main()
