"""The reference side of `cargo xtask bench fusion --audio-encoder DIR`:
what a Hugging Face user does to classify FSDD clips with a frozen Whisper
encoder. transformers' WhisperFeatureExtractor and WhisperModel's encoder
from the same folder, each clip's last hidden state averaged over the
encoder positions that hold audio (Whisper pads every input to 30 s: a
position covers 320 samples at 16 kHz), then scikit-learn's logistic
regression (lbfgs, C = 1, to convergence) on those vectors. No validation
hold-out: logistic regression has no epochs to choose.

It answers, on the split the benchmark ran: digit accuracy on FSDD's
official split (recordings 0-4 test), per fold of leave-one-speaker-out
(train on five speakers, test on the sixth), and speaker identification on
the official split (six classes).

Reads a JSON spec on stdin ({"data": AV-MNIST folder, "encoder": the
Whisper folder, "cache": an optional folder where the pooled vectors are
kept, keyed by the SHA-256 of the weights, of the pairing and of the
transformers version, so that the second split's run does not encode the
3,000 clips again}) and prints one JSON object: "official", "speakers" (a list
of [speaker, accuracy]), "speaker_identification", "clips",
"encode_seconds" and the tools' versions (`versions`, see provenance.py).
A missing package is reported as {"skipped": "..."}.
"""
import csv
import hashlib
import json
import math
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
from provenance import versions  # noqa: E402

PACKAGES = (("torch", "torch"), ("transformers", "transformers"),
            ("scikit-learn", "sklearn"), ("librosa", "librosa"),
            ("soundfile", "soundfile"), ("numpy", "numpy"))
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
WHISPER_RATE, SAMPLES_PER_POSITION, BATCH = 16000, 320, 16


def pairs(root):
    """The train and test rows of the pairing, train first."""
    rows = []
    for split in ("train", "test"):
        with open(root / f"pairs_{split}.csv", newline="") as f:
            rows += [dict(row, split=split) for row in csv.DictReader(f)]
    return rows


def clip(root, row):
    """The pair's clip, mono, at Whisper's rate."""
    import librosa
    import soundfile

    audio, rate = soundfile.read(root / row["wav"], dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return librosa.resample(audio, orig_sr=rate, target_sr=WHISPER_RATE)


def embed(root, rows, folder, transform=None):
    """[N, dim] mean of the encoder's last hidden state over the positions
    that hold audio (of each clip passed through `transform` first, when
    given: a probe's augmentation)."""
    import numpy as np
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    # float32: the shared checkpoint is stored in f16.
    model = WhisperModel.from_pretrained(folder, dtype=torch.float32)
    if (Path(folder) / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(folder)
    else:
        # Whisper's published settings (16 kHz, 25 ms window, 10 ms hop,
        # 30 s) at the folder's number of mel bands.
        extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    encoder = model.get_encoder().eval()
    pooled = []
    for start in range(0, len(rows), BATCH):
        clips = [clip(root, row) for row in rows[start:start + BATCH]]
        if transform is not None:
            clips = [transform(c) for c in clips]
        features = extractor(clips, sampling_rate=WHISPER_RATE, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(features.input_features).last_hidden_state
        for samples, states in zip(clips, hidden):
            positions = min(states.shape[0], math.ceil(len(samples) / SAMPLES_PER_POSITION))
            pooled.append(states[:positions].mean(dim=0).numpy())
    return np.stack(pooled)


def cached_embed(root, rows, folder, cache, transform=None, name="logreg-reference"):
    """`embed`, kept in `cache` (when given) under `name` and a key of its
    inputs (`name` must tell one `transform` from another)."""
    import numpy as np
    import transformers

    if cache is None:
        return embed(root, rows, folder, transform)
    key = hashlib.sha256(transformers.__version__.encode())
    for path in (Path(folder) / "model.safetensors", root / "pairs_train.csv",
                 root / "pairs_test.csv"):
        key.update(path.read_bytes())
    path = Path(cache) / f"{name}-{key.hexdigest()[:16]}.npy"
    if path.is_file():
        return np.load(path)
    x = embed(root, rows, folder, transform)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def accuracy(x, y, train, test):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=5000).fit(x[train], y[train])
    return float(model.score(x[test], y[test]))


def main():
    spec = json.load(sys.stdin)
    out = {"versions": versions(*PACKAGES)}
    try:
        import numpy as np
        import sklearn  # noqa: F401
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        out["skipped"] = f"{e.name} not installed"
        print(json.dumps(out))
        return
    torch.manual_seed(0)
    root = Path(spec["data"])
    rows = pairs(root)
    started = time.perf_counter()
    x = cached_embed(root, rows, spec["encoder"], spec.get("cache"))
    out["encode_seconds"] = time.perf_counter() - started
    out["clips"] = len(rows)
    digits = np.array([int(r["label"]) for r in rows])
    speakers = np.array([r["speaker"] for r in rows])
    official = np.array([r["split"] == "train" for r in rows])
    out["official"] = accuracy(x, digits, official, ~official)
    out["speakers"] = [[s, accuracy(x, digits, speakers != s, speakers == s)]
                       for s in SPEAKERS]
    out["speaker_identification"] = accuracy(x, speakers, official, ~official)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
