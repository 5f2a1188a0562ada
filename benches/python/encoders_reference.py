"""The Python side of `cargo xtask bench encoders`: the same encoder work as
the Rust side, with PyTorch, timed in-process (best of N passes after a
warm-up pass, no gradients, the same thread count). On CUDA when the Rust
side runs on a GPU and torch has one, else on the CPU; in float32 or float16
as the Rust side.

Reads a JSON spec on stdin, prints a JSON object of seconds per pass and
the tools' versions (`versions`, see provenance.py). A missing package is
reported as {"skipped": "..."} and the run goes on.
"""
import json
import sys

sys.dont_write_bytecode = True
from provenance import versions  # noqa: E402
from timing import best_of  # noqa: E402  (each pass ends in a copy to the CPU, which waits for CUDA)

PACKAGES = (("torch", "torch"), ("torchvision", "torchvision"),
            ("sentence-transformers", "sentence_transformers"), ("transformers", "transformers"))


def placement(spec):
    """The torch device and dtype of this run, and how to name them."""
    import torch

    device = "cuda" if spec.get("gpu") and torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if spec.get("precision") == "f16" else torch.float32
    return device, dtype, f"{device}, {str(dtype).removeprefix('torch.')}"


def minilm(spec, batch):
    from sentence_transformers import SentenceTransformer, __version__

    device, dtype, where = placement(spec)
    model = SentenceTransformer(spec["minilm"], device=device).to(dtype)
    sentences = spec["sentences"]

    def work():
        if batch == 1:
            for s in sentences:
                model.encode([s], batch_size=1)
        else:
            model.encode(sentences, batch_size=batch)
    return best_of(spec["reps"], work), f"sentence-transformers {__version__} ({where})"


def resnet18(spec):
    import torch
    import torchvision

    device, dtype, where = placement(spec)
    model = torchvision.models.resnet18().eval().to(device, dtype)
    images = torch.randn(spec["image_batch"], 3, 224, 224, device=device, dtype=dtype)
    # Each pass reads its result back to the host, as the Rust side does.
    return best_of(spec["reps"], lambda: model(images).cpu()), \
        f"torchvision {torchvision.__version__} ({where})"


def resnet18_train(spec):
    """One training step of torchvision's resnet18: forward, cross-entropy
    over its 1,000 classes, backward, Adam (the Rust side's step)."""
    import torch
    import torchvision

    device, dtype, where = placement(spec)
    model = torchvision.models.resnet18().train().to(device, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(spec["image_batch"], 3, 224, 224, device=device, dtype=dtype)
    labels = torch.arange(spec["image_batch"], device=device) * 100
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        with torch.enable_grad():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), labels).backward()
            optimizer.step()
        # A weight read back to the host, as the Rust side does.
        model.fc.bias.detach().cpu()
    return best_of(spec["reps"], step), \
        f"torchvision {torchvision.__version__} + torch.optim.Adam ({where})"


def vit_tiny(spec):
    import torch
    import transformers
    from transformers import ViTConfig, ViTModel

    device, dtype, where = placement(spec)
    model = ViTModel(ViTConfig(**spec["vit"]), add_pooling_layer=False).eval().to(device, dtype)
    images = torch.randn(spec["image_batch"], 3, 224, 224, device=device, dtype=dtype)
    return best_of(spec["reps"], lambda: model(pixel_values=images).last_hidden_state.cpu()), \
        f"transformers {transformers.__version__} ViTModel ({where})"


def main():
    spec = json.load(sys.stdin)
    out = {}
    try:
        import torch
        torch.set_num_threads(spec["threads"])
        torch.set_grad_enabled(False)
    except ImportError as e:
        out = {k: {"skipped": str(e)}
               for k in ["minilm_1", "minilm_32", "resnet18", "vit_tiny", "resnet18_train"]}
        out["versions"] = versions(*PACKAGES)
        json.dump(out, sys.stdout)
        return
    jobs = {
        "minilm_1": lambda: minilm(spec, 1),
        "minilm_32": lambda: minilm(spec, 32),
        "resnet18": lambda: resnet18(spec),
        "vit_tiny": lambda: vit_tiny(spec),
        "resnet18_train": lambda: resnet18_train(spec),
    }
    for name, job in jobs.items():
        try:
            seconds, tool = job()
            out[name] = {"seconds": seconds, "tool": tool}
        except ImportError as e:
            out[name] = {"skipped": str(e)}
    out["versions"] = versions(*PACKAGES)
    json.dump(out, sys.stdout)


main()
