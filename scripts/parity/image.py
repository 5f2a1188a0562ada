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

# Decoder fixtures: one synthetic picture in every supported format and pixel
# layout, plus a JPEG whose EXIF says "rotate 90 degrees clockwise". The
# reference is Pillow's decode, upright (ImageOps.exif_transpose), as RGB.
from PIL import ImageOps  # noqa: E402

formats_dir = pathlib.Path("tests/fixtures/media/images")
formats_dir.mkdir(parents=True, exist_ok=True)
y, x = np.mgrid[0:23, 0:37]
rgb = np.stack([x * 7, y * 11, (x + y) * 4], axis=-1).astype(np.uint8)
picture = Image.fromarray(rgb, "RGB")
variants = {
    "rgb.png": (picture, {}),
    "grey.png": (picture.convert("L"), {}),
    "rgba.png": (picture.convert("RGBA"), {}),
    "palette.gif": (picture.convert("P"), {}),
    "rgb.bmp": (picture, {}),
    "rgb.tiff": (picture, {}),
    "lossless.webp": (picture, {"lossless": True}),
    "quality90.jpg": (picture, {"quality": 90}),
}
for name, (image, options) in variants.items():
    image.save(formats_dir / name, **options)
exif = Image.Exif()
exif[0x0112] = 6  # Orientation: rotate 90 CW to display
picture.save(formats_dir / "exif-rotated.jpg", quality=90, exif=exif)
decoded = {}
for path in sorted(formats_dir.iterdir()):
    upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    decoded[f"pillow.{path.name}"] = np.asarray(upright)
save_file(decoded, formats_dir / "pillow-decoded.safetensors",
          metadata={"Pillow": PIL.__version__})
print("decoder fixtures:", ", ".join(sorted(p.name for p in formats_dir.iterdir())))
