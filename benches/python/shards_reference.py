"""The Python side of `cargo xtask bench shards`: webdataset writing the
same samples as tar shards, and one stream worker reading polymodal's
shards and decoding every sample to the same features with Pillow,
soundfile and librosa.

Two modes:
- a JSON spec on stdin: times writing the samples with webdataset's
  ShardWriter (best of N passes) and prints {"write": ..., "stream_tool": ...,
  "versions": ...}; a missing package is {"skipped": "..."};
- `worker W N PATTERN REPS`: worker W of N streams every N-th shard of
  PATTERN for an epoch (shards shuffled, a shuffle buffer of 1000), best of
  REPS passes, and prints {"samples", "seconds", "peak_mb"}.
"""
import io
import json
import random
import resource
import sys

sys.dont_write_bytecode = True
from provenance import versions  # noqa: E402
from timing import best_of  # noqa: E402

SHUFFLE_BUFFER = 1000
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def write(spec):
    import os
    import webdataset as wds
    out = spec["out"]
    os.makedirs(os.path.dirname(out), exist_ok=True)

    def work():
        with wds.ShardWriter(out, maxcount=spec["per_shard"], verbose=0) as sink:
            for i, sample in enumerate(spec["samples"]):
                with open(sample["image"], "rb") as f:
                    png = f.read()
                with open(sample["audio"], "rb") as f:
                    wav = f.read()
                meta = json.dumps({"id": sample["id"], "label": sample["label"]})
                sink.write({"__key__": f"{i:09d}", "json": meta.encode(), "png": png, "wav": wav})
    return best_of(spec["reps"], work), f"webdataset {wds.__version__} ShardWriter"


def features(sample):
    import librosa
    import numpy as np
    import soundfile
    from PIL import Image
    image = Image.open(io.BytesIO(sample["png"])).convert("L")
    if image.size != (28, 28):
        image = image.resize((28, 28), Image.BILINEAR)
    pixels = (np.asarray(image, dtype=np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    audio, rate = soundfile.read(io.BytesIO(sample["wav"]), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    audio = np.pad(audio[:8000], (0, max(0, 8000 - len(audio))))
    mel = librosa.feature.melspectrogram(y=audio, sr=rate, n_fft=256, hop_length=160, n_mels=40)
    db = librosa.power_to_db(mel, top_db=80.0)
    db = (db - db.mean()) / max(float(db.std()), 1e-6)
    return pixels, db, json.loads(sample["json"])["label"]


def worker(w, n, pattern, reps):
    import braceexpand
    import webdataset as wds
    urls = list(braceexpand.braceexpand(pattern))[w::n]
    state = {"epoch": 0, "samples": 0}

    def epoch():
        rng = random.Random(7 + state["epoch"])
        state["epoch"] += 1
        shards = urls[:]
        rng.shuffle(shards)
        stream = wds.WebDataset(shards, shardshuffle=False, empty_check=False).shuffle(
            SHUFFLE_BUFFER, initial=SHUFFLE_BUFFER, rng=rng)
        state["samples"] = sum(1 for sample in stream if features(sample) is not None)
    seconds = best_of(reps, epoch)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"samples": state["samples"], "seconds": seconds, "peak_mb": peak_mb}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        w, n, pattern, reps = sys.argv[2:6]
        worker(int(w), int(n), pattern, int(reps))
        return
    spec = json.load(sys.stdin)
    results = {}
    try:
        seconds, tool = write(spec)
        results["write"] = {"seconds": seconds, "tool": tool}
        import librosa
        import PIL
        import webdataset as wds
        results["stream_tool"] = (f"webdataset {wds.__version__} + Pillow {PIL.__version__} "
                                  f"+ soundfile + librosa {librosa.__version__}")
    except ImportError as e:
        results["write"] = {"skipped": f"{e} (pip install -r scripts/parity/requirements.txt)"}
    results["versions"] = versions(("webdataset", "webdataset"), ("Pillow", "PIL"),
                                   ("soundfile", "soundfile"), ("librosa", "librosa"),
                                   ("numpy", "numpy"))
    print(json.dumps(results))


main()
