"""AST input parity fixture: Hugging Face's ASTFeatureExtractor (Kaldi filter
banks, padding/cutting to max_length frames, normalisation) on real speech of
../shared: the five LibriVox clips and the three English audioeval clips.

Run by hand (not in CI), from the repository root:
    ../pyref/bin/python scripts/parity/ast_features.py [SHARED_DIR]
Writes tests/fixtures/parity/ast-features/ (a tiny AST with random weights:
config.json, model.safetensors, preprocessor_config.json) and
tests/fixtures/parity/ast_features.safetensors (the extractor's values at
some frames, and the model's pooled output, for each clip), read by
tests/tests/parity_audio.rs.

The settings are those of MIT/ast-finetuned-speech-commands-v2 (128 bands,
128 frames, its own mean and std), so the file's values, not
ASTFeatureExtractor's defaults, are what the test checks; 128 frames cut the
long clips and pad the shortest (hello_world, 1.14 s). ASTFeatureExtractor
uses torchaudio's kaldi.fbank when torchaudio is installed, else its numpy
port; the metadata says which one made the fixture. (The two agree within
5e-5 on these clips: checked with torchaudio 2.11.1's kaldi.py, whose wheel
has no build for the torch 2.15 used here.)
"""
import pathlib
import sys

import numpy as np
import soundfile
from safetensors.numpy import save_file
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTModel
from transformers.utils import is_speech_available

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
clips = sorted((shared / "data/media/audio/librivox").glob("*.wav"))
clips += sorted((shared / "data/speech/audioeval/en").glob("*.wav"))

folder = pathlib.Path("tests/fixtures/parity/ast-features")
folder.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
model = ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=37, num_mel_bins=128, max_length=128)).eval()
model.save_pretrained(folder)
extractor = ASTFeatureExtractor(num_mel_bins=128, max_length=128,
                                mean=-6.845978, std=5.5654526)
extractor.save_pretrained(folder)

out = {}
for clip in clips:
    audio, rate = soundfile.read(clip, dtype="float32")
    assert rate == 16000 and audio.ndim == 1
    values = extractor(audio, sampling_rate=rate, return_tensors="np").input_values[0]
    assert values.shape == (128, 128)
    # Every third frame, and the frames either side of the last real one
    # (hello_world's 112 frames: the rest is padding).
    real = min(128, 1 + (len(audio) - 400) // 160)
    frames = sorted(set(range(0, 128, 3)) | {f for f in (real - 2, real - 1, real, real + 1) if f < 128})
    frames = np.array(frames, dtype=np.int64)
    out[f"{clip.stem}.frames"] = frames
    out[f"{clip.stem}.values"] = np.ascontiguousarray(values[frames], dtype=np.float32)
    with torch.no_grad():
        pooled = model(input_values=torch.from_numpy(values).unsqueeze(0)).pooler_output[0]
    out[f"{clip.stem}.pooled"] = pooled.numpy().astype(np.float32)

target = pathlib.Path("tests/fixtures/parity/ast_features.safetensors")
save_file(out, target, metadata={
    "transformers": __import__("transformers").__version__,
    "torch": torch.__version__,
    "fbank": "torchaudio.compliance.kaldi" if is_speech_available() else "transformers numpy port",
    "clips": ",".join(c.name for c in clips),
})
print(f"wrote {target} ({target.stat().st_size} bytes) and {folder}")
