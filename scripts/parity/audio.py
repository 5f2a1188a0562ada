"""Audio parity fixtures: Hugging Face's WhisperFeatureExtractor and librosa's
mel spectrogram and MFCC on the real LibriVox clips of ../shared.

Run by hand (not in CI), from the repository root:
    ../pyref/bin/python scripts/parity/audio.py [SHARED_DIR]
Writes tests/fixtures/parity/audio.safetensors, read by tests/tests/parity_audio.rs.

To stay small the fixture keeps every 29th frame of each Whisper feature
matrix (the indices are stored too) and the full librosa outputs of the
shortest clip only.
"""
import pathlib
import sys

import librosa
import numpy as np
import soundfile
from safetensors.numpy import save_file
from transformers import WhisperFeatureExtractor

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
clips = sorted((shared / "data/media/audio/librivox").glob("*.wav"))
out = {}

whisper = WhisperFeatureExtractor()  # 80 mels, n_fft 400, hop 160, 30 s
for clip in clips:
    name = clip.stem.rsplit("-", 1)[1]
    audio, rate = soundfile.read(clip, dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    features = whisper(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    frames = np.arange(0, features.shape[1], 29, dtype=np.int64)
    out[f"whisper.{name}.frames"] = frames
    out[f"whisper.{name}.values"] = np.ascontiguousarray(features[:, frames], dtype=np.float32)
    # The decoded input itself, so the test also checks the WAV decoder.
    out[f"input.{name}.head"] = audio[:1024].copy()
    out[f"input.{name}.len"] = np.array([len(audio)], dtype=np.int64)

shortest = min(clips, key=lambda c: soundfile.info(c).frames)
audio, rate = soundfile.read(shortest, dtype="float32")
out["librosa.clip"] = np.frombuffer(shortest.stem.rsplit("-", 1)[1].encode(), dtype=np.uint8).copy()
mel = librosa.feature.melspectrogram(
    y=audio, sr=rate, n_fft=512, hop_length=160, n_mels=64, fmin=20.0, fmax=7600.0
)
out["librosa.mel_db"] = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).astype(np.float32)
htk = librosa.feature.melspectrogram(
    y=audio, sr=rate, n_fft=400, hop_length=160, n_mels=40, htk=True, norm=None, power=2.0
)
out["librosa.mel_htk_power"] = htk.astype(np.float32)
hamming = librosa.feature.melspectrogram(
    y=audio, sr=rate, n_fft=512, hop_length=160, n_mels=40, window="hamming"
)
out["librosa.mel_hamming_db"] = librosa.power_to_db(hamming, top_db=80.0).astype(np.float32)
out["librosa.mfcc"] = librosa.feature.mfcc(
    y=audio, sr=rate, n_mfcc=20, n_fft=512, hop_length=160, n_mels=64
).astype(np.float32)

target = pathlib.Path("tests/fixtures/parity/audio.safetensors")
target.parent.mkdir(parents=True, exist_ok=True)
save_file(out, target, metadata={
    "librosa": librosa.__version__,
    "transformers": __import__("transformers").__version__,
})
print(f"wrote {target} ({target.stat().st_size} bytes)")
