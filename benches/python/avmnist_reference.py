"""The PyTorch side of `cargo xtask bench epoch` (and of `cargo xtask gpu`):
what `polymodal train` does on AV-MNIST with concat fusion and every other
setting at its default, written the way a PyTorch user writes it. The same
features (28x28 MNIST images with MNIST's statistics; 1 s of 8 kHz audio as
a 40-band log-mel spectrogram in dB, top_db 80, standardised per clip), the
same 10 % stratified validation hold-out, the same model (two ConvBlocks and a
4x4 GridPool per modality, concatenation, linear + ReLU + dropout, linear
head), Adam with Burn's defaults, cross-entropy, shuffled batches; then
validation and test accuracy. On CUDA when the Rust side runs on a GPU and
torch has one, else on the CPU.

Reads a JSON spec on stdin, prints one JSON object of seconds per phase
(decode_seconds: files to features; epoch_seconds: a list, each epoch's
training steps + validation, as polymodal's metrics count an epoch, the
first one paying the start-up costs (CUDA context, cuDNN/cuBLAS set-up);
test_seconds; total_seconds: all of them), the parameter count, the
accuracies and the tools' versions (`versions`, see provenance.py). A
missing package is reported as {"skipped": "..."}.
"""
import copy
import csv
import gzip
import json
import math
import resource
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
from provenance import versions  # noqa: E402

PACKAGES = (("torch", "torch"), ("numpy", "numpy"), ("librosa", "librosa"),
            ("soundfile", "soundfile"))

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CLIP_SAMPLES, SAMPLE_RATE = 8000, 8000
N_FFT, HOP, N_MELS, TOP_DB = 256, 160, 40, 80.0
CLASSES, VALID_FRACTION, HOLDOUT_SEED, EVAL_BATCH = 10, 0.1, 2026, 64


def read_idx(path):
    """A gzipped idx file of unsigned bytes as a numpy array."""
    import numpy as np

    data = gzip.decompress(Path(path).read_bytes())
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, np.uint8, offset=4 * (rank + 1)).reshape(dims)


def log_mel(clips):
    """[N, 8000] clips -> [N, 40, frames] standardised log-mel spectrograms
    (polymodal's MelConfig::librosa(8000, 256, 160, 40): periodic Hann,
    centred with zero padding, power 2, Slaney mels and norm; dB with top_db
    taken per clip; then zero mean and unit variance per clip)."""
    import librosa
    import numpy as np

    power = librosa.feature.melspectrogram(
        y=clips, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
        center=True, pad_mode="constant", power=2.0)
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    db = np.maximum(db, db.max(axis=(1, 2), keepdims=True) - TOP_DB)
    mean = db.mean(axis=(1, 2), keepdims=True)
    std = np.maximum(db.std(axis=(1, 2), keepdims=True), 1e-6)
    return ((db - mean) / std).astype(np.float32)


def load_split(root, name, mnist):
    """Images [N, 1, 28, 28], spectrograms [N, 1, 40, frames], labels [N]."""
    import numpy as np
    import soundfile

    with open(root / name, newline="") as f:
        pairs = list(csv.DictReader(f))
    clips = np.zeros((len(pairs), CLIP_SAMPLES), np.float32)
    images, labels = [], []
    for i, pair in enumerate(pairs):
        audio, rate = soundfile.read(root / pair["wav"], dtype="float32", always_2d=True)
        assert rate == SAMPLE_RATE, f"{pair['wav']}: {rate} Hz"
        audio = audio.mean(axis=1)[:CLIP_SAMPLES]
        clips[i, :len(audio)] = audio
        pixels, digits = mnist["train" if pair["mnist_split"] == "train" else "t10k"]
        index, label = int(pair["mnist_index"]), int(pair["label"])
        assert digits[index] == label, f"{pair['wav']}: label {label} is not MNIST's"
        images.append(pixels[index])
        labels.append(label)
    images = (np.stack(images).astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return images[:, None], log_mel(clips)[:, None], np.array(labels, np.int64)


def stratified_holdout(labels, fraction, seed):
    """polymodal's split: per class (in label order) shuffle, hold out
    round(fraction x count), clamped to [1, count - 1]. The RNG differs from
    Rust's StdRng, so the sizes match but not the members."""
    import numpy as np

    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = len(members)
        count = 0 if n < 2 else min(max(math.floor(n * fraction + 0.5), 1), n - 1)
        held.extend(members[:count])
        kept.extend(members[count:])
    return np.sort(kept), np.sort(held)


def decode(root):
    """(train, valid, test), each (images, spectrograms, labels) as tensors."""
    import torch

    mnist = {split: (read_idx(root / f"mnist/{split}-images-idx3-ubyte.gz"),
                     read_idx(root / f"mnist/{split}-labels-idx1-ubyte.gz"))
             for split in ["train", "t10k"]}
    train = load_split(root, "pairs_train.csv", mnist)
    test = load_split(root, "pairs_test.csv", mnist)
    kept, held = stratified_holdout(train[2], VALID_FRACTION, HOLDOUT_SEED)

    def tensors(arrays, rows=None):
        return tuple(torch.from_numpy(a if rows is None else a[rows]) for a in arrays)
    return tensors(train, kept), tensors(train, held), tensors(test)


def build_model(dim):
    """polymodal's MultimodalClassifier for image + audio with concat fusion."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class ConvBlock(nn.Sequential):
        """polymodal_core::ConvBlock: 3x3 same conv, batch norm, ReLU, 2x2 max pool."""

        def __init__(self, c_in, c_out):
            super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
                             nn.ReLU(), nn.MaxPool2d(2))

    class GridPool(nn.Module):
        """polymodal_core::GridPool: average onto a 4x4 grid, flatten, linear, ReLU."""

        def __init__(self, channels, dim):
            super().__init__()
            self.project = nn.Linear(channels * 16, dim)

        def forward(self, x):
            return F.relu(self.project(F.adaptive_avg_pool2d(x, 4).flatten(1)))

    class ConvEncoder(nn.Module):
        """polymodal_image::ConvEncoder: pooled vector + one token per map cell."""

        def __init__(self, dim):
            super().__init__()
            self.block1, self.block2 = ConvBlock(1, 16), ConvBlock(16, 32)
            self.project = nn.Linear(32, dim)
            self.pool = GridPool(32, dim)

        def forward(self, images):
            x = self.block2(self.block1(images))
            sequence = F.relu(self.project(x.flatten(2).transpose(1, 2)))
            return self.pool(x), sequence

    class SpectrogramEncoder(nn.Module):
        """polymodal_audio::SpectrogramEncoder: pooled vector + one token per time step."""

        def __init__(self, dim):
            super().__init__()
            self.block1, self.block2 = ConvBlock(1, 16), ConvBlock(16, 32)
            self.project = nn.Linear(32 * 4, dim)
            self.pool = GridPool(32, dim)

        def forward(self, spectrograms):
            x = self.block2(self.block1(spectrograms))
            steps = x.shape[3]
            bands = F.adaptive_avg_pool2d(x, (4, steps)).flatten(1, 2)
            sequence = F.relu(self.project(bands.transpose(1, 2)))
            return self.pool(x), sequence

    class Classifier(nn.Module):
        """Encoders (image, then audio) -> ConcatFusion (linear, ReLU, dropout 0.1) -> head.
        Concat fusion reads the pooled vectors only; the token sequences are
        computed and dropped, as polymodal's encoders do."""

        def __init__(self, dim):
            super().__init__()
            self.image, self.audio = ConvEncoder(dim), SpectrogramEncoder(dim)
            self.fusion = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Dropout(0.1))
            self.head = nn.Linear(2 * dim, CLASSES)

        def forward(self, images, spectrograms):
            image, _ = self.image(images)
            audio, _ = self.audio(spectrograms)
            return self.head(self.fusion(torch.cat([image, audio], 1)))

    return Classifier(dim)


def train_epoch(model, optimizer, data, spec, epoch, device):
    """One pass in a seeded shuffled order; the mean loss."""
    import numpy as np
    import torch.nn.functional as F

    images, spectrograms, labels = data
    epoch_seed = (spec["seed"] + epoch * 0x9E3779B97F4A7C15) % 2**64
    order = np.random.default_rng(epoch_seed).permutation(len(labels))
    batch = spec["batch_size"]
    model.train()
    total, steps = 0.0, 0
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        logits = model(images[rows].to(device), spectrograms[rows].to(device))
        loss = F.cross_entropy(logits, labels[rows].to(device))
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"non-finite loss {value} in epoch {epoch}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += value
        steps += 1
    return total / steps


def accuracy(model, data, device):
    """Accuracy in batches of 64, in eval mode (running batch-norm statistics)."""
    import torch

    images, spectrograms, labels = data
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), EVAL_BATCH):
            rows = slice(start, start + EVAL_BATCH)
            logits = model(images[rows].to(device), spectrograms[rows].to(device))
            predicted = logits.softmax(1).argmax(1).cpu()
            correct += int((predicted == labels[rows]).sum())
    return correct / len(labels)


def main():
    spec = json.load(sys.stdin)
    try:
        import torch
        import numpy  # noqa: F401
        import librosa  # noqa: F401
        import soundfile  # noqa: F401
    except ImportError as e:
        json.dump({"skipped": str(e), "versions": versions(*PACKAGES)}, sys.stdout)
        return
    torch.set_num_threads(spec["threads"])
    device = "cuda" if spec.get("gpu") and torch.cuda.is_available() else "cpu"

    def clock():
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    start = clock()
    train, valid, test = decode(Path(spec["data"]))
    decode_seconds = clock() - start

    torch.manual_seed(spec["seed"])
    model = build_model(spec["dim"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec["learning_rate"],
                                 betas=(0.9, 0.999), eps=1e-5)
    epoch_seconds = []
    best, best_state = -1.0, None
    for epoch in range(1, spec["epochs"] + 1):
        start = clock()
        train_epoch(model, optimizer, train, spec, epoch, device)
        valid_accuracy = accuracy(model, valid, device)
        epoch_seconds.append(clock() - start)
        if valid_accuracy > best:
            best, best_state = valid_accuracy, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    start = clock()
    test_accuracy = accuracy(model, test, device)
    test_seconds = clock() - start

    # Counted as Burn's num_params counts: batch-norm running means and
    # variances included (192 of them).
    running = [b for name, b in model.named_buffers()
               if name.endswith(("running_mean", "running_var"))]
    parameters = sum(t.numel() for t in [*model.parameters(), *running])
    json.dump({
        "decode_seconds": decode_seconds,
        "epoch_seconds": epoch_seconds,
        "test_seconds": test_seconds,
        "total_seconds": decode_seconds + sum(epoch_seconds) + test_seconds,
        "parameters": parameters,
        "valid_accuracy": best,
        "test_accuracy": test_accuracy,
        "tool": f"PyTorch {torch.__version__} ({device})",
        # Peak resident memory of this process (decoding + training), in MB.
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "versions": versions(*PACKAGES),
    }, sys.stdout)


main()
