"""Image parity fixtures: Hugging Face's CLIPImageProcessor and
ViTImageProcessor (the Pillow-based ones) on the photos of ../shared, plus
Pillow's own resize filters.

Run by hand (not in CI), from the repository root:
    ../pyref/bin/python scripts/parity/image.py [SHARED_DIR]
Writes tests/fixtures/parity/image.safetensors, read by tests/tests/parity_image.rs.
To stay small, the processor outputs are stored at 48x48 (same code path,
smaller target); at the checkpoints' real 224 only rows 96..128 of one photo
are kept.
"""
import pathlib
import sys

import numpy as np
import PIL
from PIL import Image
from safetensors.numpy import save_file
from transformers import CLIPImageProcessorPil, ViTImageProcessorPil

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
photos = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"]
out = {}


def processors(size):
    clip = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    vit = ViTImageProcessorPil(size={"height": size, "width": size})
    return clip, vit


for name in photos:
    key = name.split(".")[0]
    image = Image.open(shared / "data/media/images" / name).convert("RGB")
    clip, vit = processors(48)
    out[f"clip.{key}"] = clip(image, return_tensors="np").pixel_values[0].astype(np.float32)
    out[f"vit.{key}"] = vit(image, return_tensors="np").pixel_values[0].astype(np.float32)
    # Pillow's filters alone, uint8 HWC, to a size that both shrinks and stretches.
    for filter_name, flag in [("nearest", Image.NEAREST), ("bilinear", Image.BILINEAR),
                              ("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)]:
        out[f"pillow.{filter_name}.{key}"] = np.asarray(image.resize((48, 80), resample=flag))

image = Image.open(shared / "data/media/images/chelsea.png").convert("RGB")
for kind, processor in zip(["clip", "vit"], processors(224)):
    full = processor(image, return_tensors="np").pixel_values[0]
    out[f"{kind}224.chelsea.rows96to128"] = np.ascontiguousarray(full[:, 96:128, :], dtype=np.float32)

target = pathlib.Path("tests/fixtures/parity/image.safetensors")
save_file(out, target, metadata={"Pillow": PIL.__version__,
                                 "transformers": __import__("transformers").__version__})
print(f"wrote {target} ({target.stat().st_size} bytes)")
