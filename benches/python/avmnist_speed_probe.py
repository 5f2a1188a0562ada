"""Does speed perturbation of the training voices carry a frozen Whisper
encoder to a voice it never heard? A probe beside
`avmnist_loso_probe.py`, on the same leave-one-speaker-out folds (train on
five FSDD speakers, test on the sixth): every clip is also played at
`factor` x speed (resampled as if recorded at 16 kHz x factor: Kaldi's
speed perturbation, Ko et al., Interspeech 2015, which shifts pitch,
formants and tempo together), embedded by the same encoder (the last
hidden state's mean over the positions that hold audio, as
`avmnist_logreg_reference.py` does), and logistic regression (C = 1, to
convergence) trains on the original clips of the five voices together
with their perturbed copies; it is tested on the sixth voice's original
clips.

Usage (the venv of scripts/parity/requirements*.txt plus scikit-learn):

    python benches/python/avmnist_speed_probe.py ../shared/data/avmnist \
        ../shared/models/whisper-tiny.en --cache target/polymodal-cache [--speeds 0.9,1.1]

Prints a Markdown table: mean +- sample standard deviation over the six
folds, then each held-out speaker's accuracy. Each speed embeds the 3,000
clips again (about 11 minutes on two cores); `--cache` keeps the vectors
(the original clips' are the reference script's cache).
"""
import sys

import numpy as np

sys.dont_write_bytecode = True
from avmnist_logreg_reference import SPEAKERS, WHISPER_RATE, cached_embed  # noqa: E402
from avmnist_loso_probe import labelled_pairs, print_table, probe_parser  # noqa: E402


def played_at(samples, factor):
    """`samples` (at Whisper's rate) played at `factor` x speed."""
    import librosa

    return librosa.resample(samples, orig_sr=WHISPER_RATE * factor, target_sr=WHISPER_RATE).astype(np.float32)


def folds(x, copies, y, speakers):
    """Accuracy per held-out speaker, training on `x` and its `copies`."""
    from sklearn.linear_model import LogisticRegression

    accuracies = []
    for s in SPEAKERS:
        train = speakers != s
        inputs = np.concatenate([x[train]] + [c[train] for c in copies])
        targets = np.concatenate([y[train]] * (1 + len(copies)))
        model = LogisticRegression(C=1.0, max_iter=5000).fit(inputs, targets)
        accuracies.append(model.score(x[~train], y[~train]))
    return accuracies


def main():
    parser = probe_parser(__doc__)
    parser.add_argument("--speeds", default="0.9,1.1")
    args = parser.parse_args()
    rows, speakers, y = labelled_pairs(args.data)
    x = cached_embed(args.data, rows, args.whisper, args.cache)
    speeds = [float(f) for f in args.speeds.split(",")]
    copies = {f: cached_embed(args.data, rows, args.whisper, args.cache,
                              transform=lambda samples, f=f: played_at(samples, f), name=f"speed-probe-{f}")
              for f in speeds}
    readings = [("original clips", folds(x, [], y, speakers))]
    readings += [(f"original + played at {f}x", folds(x, [copies[f]], y, speakers)) for f in speeds]
    if len(speeds) > 1:
        readings.append(("original + every speed", folds(x, list(copies.values()), y, speakers)))
    print_table("training clips", readings)


if __name__ == "__main__":
    main()
