"""The Python side of `cargo xtask bench media`: the same work as the Rust
side, done by the reference tools, timed in-process (best of N passes).

Reads a JSON spec on stdin, prints a JSON object of seconds per pass and
the tools' versions (`versions`, see provenance.py). A missing package is
reported as {"skipped": "..."} and the run goes on.
"""
import json
import sys

sys.dont_write_bytecode = True
from provenance import versions  # noqa: E402
from timing import best_of  # noqa: E402


def audio(spec):
    import librosa

    def work():
        for path in spec["audio"]:
            y, sr = librosa.load(path, sr=spec["audio_rate"], mono=True)
            mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=spec["n_fft"],
                                                 hop_length=spec["hop"], n_mels=spec["n_mels"])
            librosa.power_to_db(mel, top_db=80.0)
    return best_of(spec["reps"], work), f"librosa {librosa.__version__}"


def images(spec):
    import numpy as np
    import PIL
    from PIL import Image
    mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
    size = spec["image_size"]

    def work():
        for path in spec["images"]:
            image = Image.open(path).convert("RGB")
            w, h = image.size
            scale = size / min(w, h)
            image = image.resize((max(size, int(w * scale)), max(size, int(h * scale))), Image.BICUBIC)
            w, h = image.size
            left, top = (w - size) // 2, (h - size) // 2
            image = image.crop((left, top, left + size, top + size))
            array = (np.asarray(image, dtype=np.float32) / 255.0 - mean) / std
            np.ascontiguousarray(array.transpose(2, 0, 1))
    return best_of(spec["reps"], work), f"Pillow {PIL.__version__} + numpy"


def tokens(spec):
    import tokenizers
    tokenizer = tokenizers.Tokenizer.from_file(spec["tokenizer"])
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=128)
    sentences = spec["sentences"]
    return (best_of(spec["reps"], lambda: tokenizer.encode_batch(sentences)),
            f"tokenizers {tokenizers.__version__} (Python)")


def main():
    spec = json.load(sys.stdin)
    results = {}
    for name, task in [("audio", audio), ("image", images), ("tokens", tokens)]:
        try:
            seconds, tool = task(spec)
            results[name] = {"seconds": seconds, "tool": tool}
        except ImportError as e:
            results[name] = {"skipped": f"{e} (pip install -r scripts/parity/requirements.txt)"}
    results["versions"] = versions(("numpy", "numpy"), ("librosa", "librosa"),
                                   ("soundfile", "soundfile"), ("Pillow", "PIL"),
                                   ("tokenizers", "tokenizers"))
    print(json.dumps(results))


main()
