"""Would fine-tuning Whisper's last encoder layer lift audio alone to 0.99
on voices never heard? A probe beside `avmnist_loso_probe.py`, which shows
that no head on the frozen encoder does: the same clips and the same
leave-one-speaker-out folds, with whisper-tiny.en's last layer trained.

Fine-tuning the whole encoder costs about 12 minutes per fold and epoch on
two cores, because every clip is padded to 30 s (1,500 positions) and runs
through every layer. Here the layers below the last stay frozen, so their
output is computed once per clip and kept; the last layer (a copy of its
pretrained weights), the encoder's final layer norm and a linear head on
the mean over the positions that hold audio then train on those kept
states. To keep that cheap the last layer attends only over the positions
that hold audio (the first POSITIONS at most) instead of all 1,500: the
frozen model's last layer, run the same way, is the first row, so the
table shows what the truncation costs by itself.

Rows, one per setting (Adam, batch 64, EPOCHS epochs, the epoch with the
best accuracy on 10 % of the training pairs kept, fold k seeded k):

- the last layer frozen, attending over the audio positions, a linear
  head trained on its mean (what the truncation costs);
- the last layer and final norm fine-tuned at each learning rate of
  RATES, the head at 2e-3.

With `--whole`, the whole encoder (convolutions, positions, every layer,
final norm) instead runs on each clip's log-mel input, its first
2 x POSITIONS frames of Whisper's 30 s input, every layer attending over
the positions that hold audio only: frozen, then fine-tuned at
WHOLE_RATE for WHOLE_EPOCHS epochs (about 2.5 minutes per fold).

Usage (the venv of scripts/parity/requirements*.txt):

    python benches/python/avmnist_finetune_probe.py ../shared/data/avmnist \
        ../shared/models/whisper-tiny.en --cache target/finetune-probe.npz
    python benches/python/avmnist_finetune_probe.py ../shared/data/avmnist \
        ../shared/models/whisper-tiny.en --whole --cache target/finetune-whole.npz

Prints a Markdown table: mean ± sample standard deviation over the six
folds, then each held-out speaker's accuracy. Embedding the 3,000 clips
takes about 16 minutes on two cores (their log-mel input for `--whole`:
half a minute); `--cache` keeps the states.
"""
import copy
import math
import sys
import time

import numpy as np

sys.dont_write_bytecode = True
from avmnist_logreg_reference import BATCH, SAMPLES_PER_POSITION, SPEAKERS, WHISPER_RATE  # noqa: E402
from avmnist_loso_probe import (cached_arrays, clips, labelled_pairs, load, print_table,  # noqa: E402
                                probe_parser, speaker_folds)

POSITIONS = 64  # 1.28 s: 4 of the 3,000 clips are longer and cut
EPOCHS = 8
RATES = (3e-5, 1e-4, 3e-4)
WHOLE_RATE, WHOLE_EPOCHS = 3e-5, 5


def embed(root, rows, folder):
    """Per clip: the input of the encoder's last layer (the output of the
    layers below, run over the whole padded input) at its first POSITIONS
    positions, and how many of them hold audio."""
    import torch

    model, extractor = load(folder)
    encoder = model.get_encoder()
    states, lengths = [], []
    for start in range(0, len(rows), BATCH):
        audio = clips(root, rows[start:start + BATCH])
        features = extractor(audio, sampling_rate=WHISPER_RATE, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(features.input_features, output_hidden_states=True).hidden_states[-2]
        for samples, h in zip(audio, hidden):
            n = min(h.shape[0], math.ceil(len(samples) / SAMPLES_PER_POSITION))
            states.append(h[:POSITIONS].numpy().copy())
            lengths.append(min(n, POSITIONS))
    return {"states": np.stack(states), "lengths": np.array(lengths)}


def embed_mels(root, rows, folder):
    """Per clip: the first 2 x POSITIONS frames of its log-mel input (of
    Whisper's 30 s input, so scaled as the encoder reads it) and how many
    of the POSITIONS positions they give hold audio."""
    extractor = load(folder)[1]
    mels, lengths = [], []
    for start in range(0, len(rows), BATCH):
        audio = clips(root, rows[start:start + BATCH])
        features = extractor(audio, sampling_rate=WHISPER_RATE, return_tensors="np").input_features
        for samples, mel in zip(audio, features):
            mels.append(mel[:, :2 * POSITIONS].copy())
            lengths.append(min(POSITIONS, math.ceil(len(samples) / SAMPLES_PER_POSITION)))
    return {"states": np.stack(mels), "lengths": np.array(lengths)}


def layer_over_audio(layer, x, mask, heads):
    """One Whisper encoder layer written out, its attention's keys limited to
    the positions that hold audio (`mask`)."""
    from torch import nn

    a = layer.self_attn
    b, n, dim = x.shape
    split = lambda t: t.view(b, n, heads, dim // heads).transpose(1, 2)  # noqa: E731
    h = layer.self_attn_layer_norm(x)
    q = split(a.q_proj(h) * (dim // heads) ** -0.5)
    k, v = split(a.k_proj(h)), split(a.v_proj(h))
    scores = (q @ k.transpose(-1, -2)).masked_fill(~mask[:, None, None, :], -1e9)
    x = x + a.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, dim))
    return x + layer.fc2(nn.functional.gelu(layer.fc1(layer.final_layer_norm(x))))


def classifier(folder, whole):
    """A linear head on the mean over the audio positions of the encoder's
    last layer and final norm (pretrained weights), as one torch module
    over (states, mask); `whole`: of the whole encoder, over (log-mel,
    mask)."""
    from torch import nn

    encoder = load(folder)[0].get_encoder()
    dim = encoder.config.d_model
    heads = encoder.config.encoder_attention_heads

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = copy.deepcopy(encoder) if whole else None
            self.layers = self.encoder.layers if whole else nn.ModuleList([copy.deepcopy(encoder.layers[-1])])
            self.norm = self.encoder.layer_norm if whole else copy.deepcopy(encoder.layer_norm)
            self.head = nn.Linear(dim, 10)

        def stem(self, mel, n):
            e = self.encoder
            x = nn.functional.gelu(e.conv2(nn.functional.gelu(e.conv1(mel)))).transpose(1, 2)
            return x[:, :n] + e.embed_positions.weight[:n]

        def forward(self, x, mask):
            if whole:
                x = self.stem(x, mask.shape[1])
            for layer in self.layers:
                x = layer_over_audio(layer, x, mask, heads)
            x = self.norm(x)
            m = mask.unsqueeze(-1).float()
            return self.head((x * m).sum(1) / m.sum(1))

    return Probe


def folds(make, rate, states, lengths, y, speakers, epochs=EPOCHS, whole=False):
    """Each held-out speaker's test accuracy at the best validation epoch,
    the encoder's part in the probe trained at `rate` (frozen at 0)."""
    import torch

    def batch(rows):
        n = int(lengths[rows].max())  # only as many positions as the longest clip holds
        mask = torch.arange(n)[None, :] < torch.tensor(lengths[rows])[:, None]
        # --whole reads log-mel frames, two per position.
        inputs = states[rows, :, :2 * n] if whole else states[rows, :n]
        return torch.tensor(inputs), mask

    def setup():
        model = make()
        encoder_params = [p for n, p in model.named_parameters() if not n.startswith("head")]
        for p in encoder_params:
            p.requires_grad_(rate > 0)
        groups = [{"params": model.head.parameters(), "lr": 2e-3}]
        if rate > 0:
            groups.append({"params": encoder_params, "lr": rate})
        return model, torch.optim.Adam(groups), lambda rows: model(*batch(rows))

    return speaker_folds(setup, y, speakers, epochs)


def main():
    import torch

    parser = probe_parser(__doc__)
    parser.add_argument("--whole", action="store_true", help="fine-tune the whole encoder")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows, speakers, y = labelled_pairs(args.data)
    embedded = embed_mels if args.whole else embed
    data = cached_arrays(args.cache, lambda: embedded(args.data, rows, args.whisper))
    make = classifier(args.whisper, args.whole)
    part = "whole encoder" if args.whole else "last layer"
    settings = [(0.0, WHOLE_EPOCHS), (WHOLE_RATE, WHOLE_EPOCHS)] if args.whole else [(r, EPOCHS) for r in (0.0, *RATES)]
    readings = []
    for rate, epochs in settings:
        name = (f"{part} frozen, over the audio positions only" if rate == 0
                else f"{part} and final norm fine-tuned at {rate:g}")
        print(name, file=sys.stderr)
        started = time.time()
        readings.append((name, folds(make, rate, data["states"], data["lengths"], y, speakers,
                                     epochs, args.whole)))
        print(f"  {time.time() - started:.0f} s", file=sys.stderr)
    print_table(part, readings)


if __name__ == "__main__":
    main()
