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

Two more readings of the same vectors:

- test-time warping, as vocal tract length normalisation picks its warp
  factor: the sixth voice is read at each speed, and the one speed for
  all its clips is the one the classifier is most confident at (the mean
  log of its top probability; no labels), with the classifier of the
  original clips and with that of every speed; the best speed chosen
  with the labels bounds what such picking can give;
- the clips with their DC offset removed (each clip's mean subtracted:
  nicolas's recordings, alone of the six, hold a constant offset of about
  -0.16 times their RMS, which Whisper's log-mel keeps).

Usage (the venv of scripts/parity/requirements*.txt plus scikit-learn):

    python benches/python/avmnist_speed_probe.py ../shared/data/avmnist \
        ../shared/models/whisper-tiny.en --cache target/polymodal-cache [--speeds 0.9,1.1]

Prints a Markdown table: mean +- sample standard deviation over the six
folds, then each held-out speaker's accuracy. Each speed embeds the 3,000
clips again (about 11 minutes on two cores); `--cache` keeps the vectors
(the original clips' are the reference script's cache), and so does
`--remove-dc`, which adds the last reading.
"""
import sys

import numpy as np

sys.dont_write_bytecode = True
from avmnist_logreg_reference import SPEAKERS, WHISPER_RATE, cached_embed, clip  # noqa: E402
from avmnist_loso_probe import labelled_pairs, print_table, probe_parser  # noqa: E402


def played_at(samples, factor):
    """`samples` (at Whisper's rate) played at `factor` x speed."""
    import librosa

    return librosa.resample(samples, orig_sr=WHISPER_RATE * factor, target_sr=WHISPER_RATE).astype(np.float32)


def fitted(x, copies, y, train):
    """Logistic regression on the `train` rows of `x` and of its `copies`."""
    from sklearn.linear_model import LogisticRegression

    inputs = np.concatenate([x[train]] + [c[train] for c in copies])
    targets = np.concatenate([y[train]] * (1 + len(copies)))
    return LogisticRegression(C=1.0, max_iter=5000).fit(inputs, targets)


def folds(x, copies, y, speakers):
    """Accuracy per held-out speaker, training on `x` and its `copies`."""
    return [fitted(x, copies, y, speakers != s).score(x[speakers == s], y[speakers == s])
            for s in SPEAKERS]


def warped(x, copies, trained_on, y, speakers):
    """Accuracy per held-out speaker as recorded, read at the speed (of `x`
    and its `copies`) the classifier is most confident at, and at the best
    speed chosen with the labels; trained on `x` and `trained_on`."""
    as_recorded, picked, best = [], [], []
    for s in SPEAKERS:
        model, test = fitted(x, trained_on, y, speakers != s), speakers == s
        probabilities = [model.predict_proba(v[test]) for v in [x, *copies]]
        confidence = [np.log(p.max(axis=1)).mean() for p in probabilities]
        right = [float((p.argmax(axis=1) == y[test]).mean()) for p in probabilities]
        as_recorded.append(right[0])
        picked.append(right[int(np.argmax(confidence))])
        best.append(max(right))
    return as_recorded, picked, best


def centred(samples):
    """`samples` without their DC offset (their mean)."""
    return (samples - samples.mean()).astype(np.float32)


def print_offsets(root, rows, speakers):
    """Each speaker's mean DC offset, as a fraction of each clip's RMS."""
    clips = [clip(root, row) for row in rows]
    offsets = np.array([c.mean() / np.sqrt((c ** 2).mean()) for c in clips])
    for s in SPEAKERS:
        print(f"{s}: DC offset {offsets[speakers == s].mean():+.3f} x RMS", file=sys.stderr)


def main():
    parser = probe_parser(__doc__)
    parser.add_argument("--speeds", default="0.9,1.1")
    parser.add_argument("--remove-dc", action="store_true")
    args = parser.parse_args()
    rows, speakers, y = labelled_pairs(args.data)
    x = cached_embed(args.data, rows, args.whisper, args.cache)
    speeds = [float(f) for f in args.speeds.split(",")]
    copies = {f: cached_embed(args.data, rows, args.whisper, args.cache,
                              transform=lambda samples, f=f: played_at(samples, f), name=f"speed-probe-{f}")
              for f in speeds}
    every = list(copies.values())
    # One classifier per fold for each training set, read at every speed.
    original, original_picked, _ = warped(x, every, [], y, speakers)
    augmented, augmented_picked, augmented_best = warped(x, every, every, y, speakers)
    readings = [("original clips", original)]
    readings += [(f"original + played at {f}x", folds(x, [copies[f]], y, speakers)) for f in speeds]
    if len(speeds) > 1:
        readings.append(("original + every speed", augmented))
    readings.append(("original; test speed picked per speaker", original_picked))
    readings.append(("every speed; test speed picked per speaker", augmented_picked))
    readings.append(("every speed; best test speed (labels)", augmented_best))
    if args.remove_dc:
        print_offsets(args.data, rows, speakers)
        without_dc = cached_embed(args.data, rows, args.whisper, args.cache, transform=centred, name="dc-removed")
        readings.append(("DC offset removed", folds(without_dc, [], y, speakers)))
    print_table("training clips", readings)


if __name__ == "__main__":
    main()
