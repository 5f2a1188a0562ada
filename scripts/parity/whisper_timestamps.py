"""Whisper timestamp and long-form fixtures: transformers' sequential
transcription (`generate(..., return_timestamps=True)`) with the shared
whisper-tiny.en checkpoint, on the shared English speech clips and on one
long input made of them.

Run by hand (not in CI), from the repository root, with torch installed:
    ../pyref/bin/pip install -r scripts/parity/requirements-torch.txt
    ../pyref/bin/python scripts/parity/whisper_timestamps.py [SHARED_DIR]
Writes tests/fixtures/parity/whisper_timestamps.json, read by
tests/tests/whisper_timestamps.rs.

Short clips: each clip alone (padded to 30 s, as the feature extractor
does by default), greedy and with 5 beams. Long inputs, each a list of
parts (a file, or seconds of digital silence) with the features of the
whole input (`truncation=False`, `padding="longest"`): "speech", the clips
of LONG joined by GAP_SECS of silence, then SILENCE_SECS of silence, then
the same clips again (about 111 s: several 30-second windows), greedy,
with 5 beams, and greedy with OpenAI's thresholds for silent windows
(no-speech probability 0.6, mean log-probability -1.0) at temperature 0
(so without the random fallback), and greedy and with 5 beams with each
window prompted with the text before it (`condition_on_prev_tokens`);
"silence_first", 31 s of silence before
one clip, greedy with and without the thresholds. Every case stores each
segment's tokens (timestamp tokens included) and its start and end in
seconds.
"""
import json
import pathlib
import sys

import numpy as np
import soundfile
import torch
import transformers
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

CLIPS = [
    "data/speech/audioeval/en/hello_world.wav",
    "data/speech/audioeval/en/counting.wav",
    "data/speech/audioeval/en/quick_brown_fox.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
]
LONG = [
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0920.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
    "data/speech/audioeval/en/hello_world.wav",
    "data/speech/audioeval/en/counting.wav",
    "data/speech/audioeval/en/quick_brown_fox.wav",
]
GAP_SECS = 1.0
SILENCE_SECS = 32.0
RATE = 16000

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
model_dir = shared / "models/whisper-tiny.en"
out = pathlib.Path("tests/fixtures/parity/whisper_timestamps.json")
torch.set_grad_enabled(False)


def read(name):
    samples, rate = soundfile.read(shared / name, dtype="float32")
    assert rate == RATE and samples.ndim == 1, name
    return samples


HALF = [part for name in LONG for part in ({"file": name}, {"silence": GAP_SECS})]
LONG_INPUTS = {
    "speech": HALF + [{"silence": SILENCE_SECS}] + HALF,
    "silence_first": [{"silence": 31.0}, {"file": "data/speech/audioeval/en/quick_brown_fox.wav"}],
}
GREEDY = {"num_beams": 1}
THRESHOLDS = {"num_beams": 1, "no_speech_threshold": 0.6, "logprob_threshold": -1.0, "temperature": 0.0}
CASES = {
    "speech": {"greedy": GREEDY, "greedy_thresholds": THRESHOLDS, "beam": {"num_beams": 5},
               "greedy_condition": {"num_beams": 1, "condition_on_prev_tokens": True},
               "beam_condition": {"num_beams": 5, "condition_on_prev_tokens": True}},
    "silence_first": {"greedy": GREEDY, "greedy_thresholds": THRESHOLDS},
}


def joined(parts):
    """The parts one after another: files, and seconds of digital silence."""
    return np.concatenate([
        read(part["file"]) if "file" in part else np.zeros(int(part["silence"] * RATE), dtype=np.float32)
        for part in parts
    ])


extractor = WhisperFeatureExtractor()
model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)


def transcribe(features, **options):
    """The segments of sequential decoding: tokens, start and end."""
    result = model.generate(features, return_timestamps=True, return_segments=True,
                            do_sample=False, **options)
    segments = []
    for segment in result["segments"][0]:
        tokens = segment["tokens"].tolist()
        text = tokenizer.decode([t for t in tokens if t < model.generation_config.no_timestamps_token_id],
                                skip_special_tokens=True)
        segments.append({"start": round(float(segment["start"]), 6),
                         "end": round(float(segment["end"]), 6),
                         "tokens": tokens, "text": text})
    return segments


def show(name, segments):
    for s in segments:
        print(f"{name}: [{s['start']:.2f} → {s['end']:.2f}] {s['text']!r}")


short = []
for name in CLIPS:
    features = extractor(read(name), sampling_rate=RATE, return_tensors="pt").input_features
    greedy = transcribe(features, num_beams=1)
    beam = transcribe(features, num_beams=5)
    show(name, greedy)
    show(name + " (beam 5)", beam)
    short.append({"file": name, "greedy": greedy, "beam": beam})

long = {}
for input_name, parts in LONG_INPUTS.items():
    samples = joined(parts)
    inputs = extractor(samples, sampling_rate=RATE, return_tensors="pt", truncation=False,
                       padding="longest", return_attention_mask=True)
    features = inputs.input_features
    print(f"{input_name}: {len(samples) / RATE:.2f} s, {features.shape[-1]} frames")
    cases = {}
    for case, options in CASES[input_name].items():
        cases[case] = transcribe(features, attention_mask=inputs.attention_mask, **options)
        show(f"{input_name} {case}", cases[case])
    long[input_name] = {"parts": parts, "samples": len(samples), "frames": int(features.shape[-1]),
                        "cases": cases}

out.write_text(
    json.dumps(
        {
            "model": "models/whisper-tiny.en",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "short": short,
            "long": long,
        },
        indent=1,
    )
    + "\n"
)
print(f"wrote {out}")
