"""Writes the manifests of the FSDD speaker-identification experiment of
docs/encoders.md ("Measured on real data") next to this file, from the
shared data folder (first argument, default ../shared relative to the
repository root): six speakers; training clips are recordings 2-4 of every
digit (180), test clips FSDD's test recordings 0-1 (120). With --official,
FSDD's own split: recordings 5-49 train (2700), 0-4 test (300), for
whisper-official.toml.

    python3 scripts/experiments/speakers/make_manifests.py [--official] [SHARED]
    target/debug/polymodal train --config scripts/experiments/speakers/whisper.toml
    target/debug/polymodal train --config scripts/experiments/speakers/scratch.toml

The manifests and run folders are written under out/ (ignored by git).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def main():
    args = [a for a in sys.argv[1:] if a != "--official"]
    shared = args[0] if args else os.path.join(ROOT, "..", "shared")
    fsdd = os.path.join(os.path.abspath(shared), "data", "avmnist", "fsdd")
    out = os.path.join(HERE, "out")
    os.makedirs(out, exist_ok=True)
    if "--official" in sys.argv:
        # FSDD's own split: recordings 0-4 are the test set.
        splits = {"official-train": range(5, 50), "official-test": range(0, 5)}
    else:
        splits = {"train": range(2, 5), "test": range(0, 2)}
    for split, recordings in splits.items():
        with open(os.path.join(out, f"{split}.jsonl"), "w") as f:
            for speaker in SPEAKERS:
                for digit in range(10):
                    for index in recordings:
                        path = os.path.join(fsdd, f"{digit}_{speaker}_{index}.wav")
                        if not os.path.exists(path):
                            sys.exit(f"missing {path}")
                        row = {"id": f"{digit}_{speaker}_{index}", "audio": path, "label": speaker}
                        f.write(json.dumps(row) + "\n")
    print("wrote " + ", ".join(f"{out}/{split}.jsonl" for split in splits))


if __name__ == "__main__":
    main()
