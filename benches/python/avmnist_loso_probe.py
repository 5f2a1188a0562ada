"""Is the head what keeps a frozen Whisper encoder below 0.99 on voices it
never heard? A probe beside `avmnist_logreg_reference.py`: the same clips,
the same leave-one-speaker-out folds (train on five FSDD speakers, test on
the sixth), but many readings of the encoder's output and many heads:

- logistic regression (C = 1, to convergence) on the mean over the
  positions that hold audio of each hidden state (the embeddings' output
  and every layer's), of the last two layers side by side, of their
  average, of the last layer's mean and standard deviation, and with each
  speaker's vectors centred and scaled by that speaker's own statistics
  (Kaldi's per-speaker CMVN: needs no labels of the test speaker);
- small heads trained in torch (Adam 2e-3, batch 64, 30 epochs, the epoch
  with the best accuracy on 10 % of the training pairs kept): a linear
  layer and an MLP on the last layer's mean, attention pooling and a 1-D
  convolution with max pooling over the last layer's positions;
- with `--asr SPEAKER`: whisper's own decoder on that speaker's clips
  (greedy transcription, the first spoken digit word or numeral counted,
  and the first decoded token's logits over the ten digit words).

Usage (the venv of scripts/parity/requirements*.txt plus scikit-learn):

    python benches/python/avmnist_loso_probe.py ../shared/data/avmnist \
        ../shared/models/whisper-tiny.en --cache target/loso-probe.npz [--asr nicolas]

Prints a Markdown table: mean ± sample standard deviation over the six
folds, then each held-out speaker's accuracy. Embedding the 3,000 clips
takes about 16 minutes on two cores; `--cache` keeps the vectors.
"""
import argparse
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True
from avmnist_logreg_reference import BATCH, SAMPLES_PER_POSITION, SPEAKERS, WHISPER_RATE, clip, pairs  # noqa: E402

POSITIONS = 64  # positions kept for the sequence heads (1.28 s; 4 of the 3,000 clips are longer and cut)
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def clips(root, rows):
    return [clip(root, row) for row in rows]


def load(folder):
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    return model, WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)


def embed(root, rows, folder):
    """Per clip: every hidden state's mean and standard deviation over the
    positions that hold audio, and the last layer's first POSITIONS
    positions with their count."""
    import torch

    model, extractor = load(folder)
    encoder = model.get_encoder()
    means, stds, sequences, lengths = [], [], [], []
    for start in range(0, len(rows), BATCH):
        audio = clips(root, rows[start:start + BATCH])
        features = extractor(audio, sampling_rate=WHISPER_RATE, return_tensors="pt")
        with torch.no_grad():
            states = torch.stack(encoder(features.input_features, output_hidden_states=True).hidden_states, 1)
        for samples, h in zip(audio, states):
            n = min(h.shape[1], math.ceil(len(samples) / SAMPLES_PER_POSITION))
            means.append(h[:, :n].mean(1).numpy())
            stds.append(h[:, :n].std(1).numpy())
            # A copy: a view would keep the whole batch of states alive.
            sequences.append(h[-1, :POSITIONS].numpy().copy())
            lengths.append(min(n, POSITIONS))
    return {"means": np.stack(means), "stds": np.stack(stds),
            "sequences": np.stack(sequences), "lengths": np.array(lengths)}


def speaker_normalized(x, speakers):
    x = x.copy()
    for s in SPEAKERS:
        rows = speakers == s
        x[rows] = (x[rows] - x[rows].mean(0)) / (x[rows].std(0) + 1e-5)
    return x


def logistic(x, y, speakers):
    from sklearn.linear_model import LogisticRegression

    return [LogisticRegression(C=1.0, max_iter=5000).fit(x[speakers != s], y[speakers != s])
            .score(x[speakers == s], y[speakers == s]) for s in SPEAKERS]


def torch_heads(data, y, speakers):
    import torch
    from torch import nn

    torch.set_num_threads(1)
    dim = data["means"].shape[-1]
    sequences = torch.tensor(data["sequences"], dtype=torch.float32)
    mask = torch.arange(POSITIONS)[None, :] < torch.tensor(data["lengths"])[:, None]
    last = torch.tensor(data["means"][:, -1])

    class Pooled(nn.Module):
        def __init__(self, hidden):
            super().__init__()
            self.net = (nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.ReLU(),
                                      nn.Dropout(0.2), nn.Linear(hidden, 10))
                        if hidden else nn.Linear(dim, 10))

        def forward(self, x, m):
            return self.net(x)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.score, self.out = nn.LayerNorm(dim), nn.Linear(dim, 1), nn.Linear(dim, 10)

        def forward(self, x, m):
            x = self.norm(x)
            weights = self.score(x).squeeze(-1).masked_fill(~m, -1e9).softmax(-1)
            return self.out(nn.functional.dropout((weights.unsqueeze(-1) * x).sum(1), 0.2, self.training))

    class Convolution(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.conv, self.out = nn.LayerNorm(dim), nn.Conv1d(dim, 128, 5, padding=2), nn.Linear(128, 10)

        def forward(self, x, m):
            h = torch.relu(self.conv(self.norm(x).transpose(1, 2))).transpose(1, 2)
            h = h.masked_fill(~m.unsqueeze(-1), -1e9).max(1).values
            return self.out(nn.functional.dropout(h, 0.2, self.training))

    def folds(make, inputs):
        def setup():
            model = make()
            return model, torch.optim.Adam(model.parameters(), 2e-3), lambda rows: model(inputs[rows], mask[rows])

        return speaker_folds(setup, y, speakers, 30)

    return [("linear layer, last layer's mean", folds(lambda: Pooled(0), last)),
            ("MLP (128 hidden), last layer's mean", folds(lambda: Pooled(128), last)),
            ("attention pooling over the positions", folds(Attention, sequences)),
            ("1-D convolution (128, width 5) + max over the positions", folds(Convolution, sequences))]


def speaker_folds(setup, y, speakers, epochs):
    """Each held-out speaker's test accuracy at the best validation epoch.
    Fold k is seeded k and keeps 10 % of the training pairs for validation;
    `setup()` gives the fold's (model, optimizer, logits of rows)."""
    import torch
    from torch import nn

    accuracies = []
    for k, held_out in enumerate(SPEAKERS):
        torch.manual_seed(k)
        rng = np.random.default_rng(k)  # the split and every epoch's order
        train, test = np.where(speakers != held_out)[0], np.where(speakers == held_out)[0]
        rng.shuffle(train)
        valid, train = train[:len(train) // 10], train[len(train) // 10:]
        model, optimizer, logits = setup()

        def accuracy(rows):
            with torch.no_grad():
                right = sum(int((logits(rows[b:b + 256]).argmax(1).numpy() == y[rows[b:b + 256]]).sum())
                            for b in range(0, len(rows), 256))
            return right / len(rows)

        best = (-1.0, 0.0)
        for _ in range(epochs):
            model.train()
            order = rng.permutation(train)
            for b in range(0, len(order), 64):
                rows = order[b:b + 64]
                loss = nn.functional.cross_entropy(logits(rows), torch.tensor(y[rows]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            valid_accuracy = accuracy(valid)
            if valid_accuracy > best[0]:
                best = (valid_accuracy, accuracy(test))
        accuracies.append(best[1])
        print(f"  {held_out}: {best[1]:.3f}", file=sys.stderr)
    return accuracies


def asr(root, rows, folder, speaker):
    """Greedy transcription and first-token scoring of `speaker`'s clips."""
    import torch
    from transformers import WhisperTokenizer

    model, extractor = load(folder)
    tokenizer = WhisperTokenizer.from_pretrained(folder)
    first = {k: {tokenizer.encode(v, add_special_tokens=False)[0]
                 for v in (" " + w, " " + w.capitalize(), w.capitalize(), " " + str(k), str(k))}
             for k, w in enumerate(WORDS)}
    prompt = torch.tensor([model.generation_config.decoder_start_token_id,
                           tokenizer.convert_tokens_to_ids("<|notimestamps|>")])
    rows = [r for r in rows if r["speaker"] == speaker]
    transcribed = scored = 0
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        features = extractor(clips(root, batch), sampling_rate=WHISPER_RATE, return_tensors="pt").input_features
        with torch.no_grad():
            texts = tokenizer.batch_decode(model.generate(features, max_new_tokens=8), skip_special_tokens=True)
            logits = model(input_features=features, decoder_input_ids=prompt.expand(len(batch), 2)).logits[:, -1]
        for row, text, lg in zip(batch, texts, logits):
            label = int(row["label"])
            words = re.sub(r"[^a-z0-9 ]", "", text.lower()).split()
            said = next((WORDS.index(w) if w in WORDS else int(w) for w in words
                         if w in WORDS or (w.isdigit() and len(w) == 1)), -1)
            transcribed += said == label
            scored += int(np.argmax([max(lg[i].item() for i in first[k]) for k in range(10)])) == label
    return transcribed / len(rows), scored / len(rows)


def print_table(first_column, readings):
    """A Markdown table of (name, accuracy per held-out speaker) rows: mean ±
    sample standard deviation over the folds, then each speaker's."""
    print(f"| {first_column} | mean ± sd | " + " | ".join(SPEAKERS) + " |")
    print("| --- | ---: |" + " ---: |" * len(SPEAKERS))
    for name, accuracies in readings:
        print(f"| {name} | {np.mean(accuracies):.4f} ± {np.std(accuracies, ddof=1):.4f} | "
              + " | ".join(f"{a:.3f}" for a in accuracies) + " |")


def probe_parser(doc):
    """The arguments every leave-one-speaker-out probe takes: the AV-MNIST
    folder, the Whisper folder and `--cache`; `doc`'s first paragraph is the
    description."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("whisper")
    parser.add_argument("--cache", type=Path)
    return parser


def cached_arrays(path, make):
    """`make()`'s dict of arrays, kept in the .npz `path` (when given) and
    read from it when it exists."""
    started = time.time()
    if path and path.is_file():
        data = dict(np.load(path))
    else:
        data = make()
        if path:
            np.savez(path, **data)
    print(f"embedded the clips in {time.time() - started:.0f} s", file=sys.stderr)
    return data


def labelled_pairs(root):
    """The pairs with each one's speaker and digit as arrays."""
    rows = pairs(root)
    return rows, np.array([r["speaker"] for r in rows]), np.array([int(r["label"]) for r in rows])


def main():
    parser = probe_parser(__doc__)
    parser.add_argument("--asr", metavar="SPEAKER")
    args = parser.parse_args()
    rows, speakers, y = labelled_pairs(args.data)
    data = cached_arrays(args.cache, lambda: embed(args.data, rows, args.whisper))
    means, layers = data["means"], data["means"].shape[1]
    readings = [(f"logistic regression, hidden state {i}'s mean" + (" (last)" if i == layers - 1 else ""),
                 logistic(means[:, i], y, speakers)) for i in range(layers)]
    pair = np.concatenate([means[:, -2], means[:, -1]], 1)
    readings += [
        ("logistic regression, last two layers' means side by side", logistic(pair, y, speakers)),
        ("logistic regression, mean of every hidden state's mean", logistic(means.mean(1), y, speakers)),
        ("logistic regression, last layer's mean and standard deviation",
         logistic(np.concatenate([means[:, -1], data["stds"][:, -1]], 1), y, speakers)),
        ("logistic regression, last layer's mean, per-speaker CMVN",
         logistic(speaker_normalized(means[:, -1], speakers), y, speakers)),
        ("logistic regression, last two layers, per-speaker CMVN",
         logistic(speaker_normalized(pair, speakers), y, speakers)),
    ]
    readings += torch_heads(data, y, speakers)
    print_table("reading and head", readings)
    if args.asr:
        transcribed, scored = asr(args.data, rows, args.whisper, args.asr)
        print(f"\n{args.asr}: whisper's greedy transcription names the digit in {transcribed:.3f} of the clips; "
              f"the first token's logits over the ten digit words pick it in {scored:.3f}")


if __name__ == "__main__":
    main()
