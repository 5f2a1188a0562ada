"""Whisper decoding fixtures: transformers' greedy transcription of the
shared speech clips with the shared whisper-tiny.en checkpoint, and the
decoder's logits at the first steps.

Run by hand (not in CI), from the repository root, with torch installed:
    ../pyref/bin/pip install -r scripts/parity/requirements-torch.txt
    ../pyref/bin/python scripts/parity/whisper_decode.py [SHARED_DIR]
Writes tests/fixtures/parity/whisper_decode.json, read by
tests/tests/whisper_decode.rs. For every clip: the generated token ids
(without the prompt and <|endoftext|>) of greedy decoding and of beam
search with 5 beams (`beam_tokens`), the greedy text, and for the first STEPS
generated positions the TOP highest logits (ids and values, before any
token is suppressed) given the reference tokens before them; the
no-speech probability (the softmax of the logits at <|startoftranscript|>,
at <|nocaptions|>) and the average log-probability of the generated tokens
and <|endoftext|> under the suppression rules, as OpenAI's Whisper computes
both to skip silent windows. Besides the speech: three seconds of silence,
and Big Buck Bunny's soundtrack (music, no speech; six channels decoded by
the ffmpeg command line, averaged, and resampled by ffmpeg, so its tokens
and scores are compared loosely).
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import torch
import transformers
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

STEPS = 4
TOP = 10

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
model_dir = shared / "models/whisper-tiny.en"
out = pathlib.Path("tests/fixtures/parity/whisper_decode.json")
torch.set_grad_enabled(False)

NO_SPEECH = 50361  # <|nocaptions|>

CLIPS = [
    "data/speech/audioeval/en/hello_world.wav",
    "data/speech/audioeval/en/counting.wav",
    "data/speech/audioeval/en/quick_brown_fox.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
    "data/media/audio/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "silence",
    "data/media/video/bigbuckbunny.mp4",
]


def read_wav(path):
    """Mono 16-bit PCM or 32-bit float WAV → float32 samples and rate."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", path
    at, fmt, samples = 12, None, None
    while at + 8 <= len(data):
        tag, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        body = data[at + 8 : at + 8 + size]
        if tag == b"fmt ":
            fmt = (
                int.from_bytes(body[0:2], "little"),
                int.from_bytes(body[2:4], "little"),
                int.from_bytes(body[4:8], "little"),
                int.from_bytes(body[14:16], "little"),
            )
        elif tag == b"data":
            samples = body
        at += 8 + size + (size & 1)
    code, channels, rate, bits = fmt
    assert channels == 1, path
    if code == 1 and bits == 16:
        x = np.frombuffer(samples, dtype="<i2").astype(np.float32) / 32768.0
    elif code == 3 and bits == 32:
        x = np.frombuffer(samples, dtype="<f4").astype(np.float32)
    else:
        raise ValueError(f"{path}: format {code}, {bits} bits")
    return x, rate


def samples_of(name):
    """The clip as 16 kHz mono float32, and whether it is bit-exact input."""
    if name == "silence":
        return np.zeros(3 * 16000, dtype=np.float32), True
    if name.endswith(".mp4"):
        # polymodal averages the channels (librosa's mono) and then
        # resamples; ffmpeg's own downmix weighs them, so decode all six,
        # average, then let ffmpeg resample the mono signal.
        def ffmpeg(args, data=None):
            return subprocess.run(["ffmpeg", "-v", "error", *args], input=data,
                                  check=True, capture_output=True).stdout
        pcm = ffmpeg(["-i", str(shared / name), "-f", "f32le", "-"])
        channels = 6
        mono = np.frombuffer(pcm, dtype="<f4").reshape(-1, channels).mean(axis=1)
        pcm = ffmpeg(["-f", "f32le", "-ar", "48000", "-ac", "1", "-i", "-", "-ar", "16000",
                      "-f", "f32le", "-"], mono.astype("<f4").tobytes())
        return np.frombuffer(pcm, dtype="<f4").copy(), False
    x, rate = read_wav(shared / name)
    assert rate == 16000, (name, rate)
    return x, True


extractor = WhisperFeatureExtractor()
model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)

clips = []
for name in CLIPS:
    samples, exact = samples_of(name)
    features = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features
    sequence = model.generate(features, do_sample=False, num_beams=1)[0].tolist()
    beam = model.generate(features, do_sample=False, num_beams=5)[0].tolist()
    prompt = [model.generation_config.decoder_start_token_id,
              model.generation_config.no_timestamps_token_id]
    # transformers 5 returns the generated tokens only; older versions
    # begin with the prompt.
    body = sequence[len(prompt):] if sequence[: len(prompt)] == prompt else sequence
    if body and body[-1] == model.generation_config.eos_token_id:
        body = body[:-1]
    beam = beam[len(prompt):] if beam[: len(prompt)] == prompt else beam
    while beam and beam[-1] == model.generation_config.eos_token_id:
        beam = beam[:-1]
    decoder_input = torch.tensor([prompt + body])
    logits = model(features, decoder_input_ids=decoder_input).logits[0]
    config = model.generation_config
    no_speech = torch.softmax(logits[0], -1)[NO_SPEECH].item()
    total = 0.0
    for step, token in enumerate(body + [config.eos_token_id]):
        row = logits[len(prompt) - 1 + step].clone()
        row[config.suppress_tokens] = -float("inf")
        if step == 0:
            row[config.begin_suppress_tokens] = -float("inf")
        total += torch.log_softmax(row, -1)[token].item()
    avg_logprob = total / (len(body) + 1)
    steps = []
    for step in range(min(STEPS, len(body))):
        row = logits[len(prompt) - 1 + step]
        values, ids = torch.topk(row, TOP)
        steps.append({"ids": ids.tolist(), "logits": [round(v, 6) for v in values.tolist()]})
    text = tokenizer.decode(body, skip_special_tokens=True)
    clips.append({
        "file": name, "exact": exact, "tokens": body, "text": text, "steps": steps,
        "beam_tokens": beam, "beam_text": tokenizer.decode(beam, skip_special_tokens=True),
        "no_speech_prob": round(no_speech, 6), "avg_logprob": round(avg_logprob, 6),
    })
    print(f"{name}: {text!r} no_speech {no_speech:.3f} avg_logprob {avg_logprob:.3f}"
          f" beam: {tokenizer.decode(beam, skip_special_tokens=True)!r}")

out.write_text(
    json.dumps(
        {
            "model": "models/whisper-tiny.en",
            "prompt": prompt,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "clips": clips,
        },
        indent=1,
    )
    + "\n"
)
print(f"wrote {out}")
