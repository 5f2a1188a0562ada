"""Multilingual Whisper fixtures: a tiny randomly initialised multilingual
`WhisperForConditionalGeneration` (the real vocabulary size and special
token ids of the multilingual checkpoints, 99 languages; 8-wide layers so
the file stays under 1 MB), and what transformers' `generate` does with it
on shared speech clips in three languages: the detected language, and the
token ids of transcription (language detected, or given), translation,
and transcription with timestamps.

No multilingual checkpoint is in the shared folder; the model's weights are
random, so its tokens mean nothing: what is checked is the decoding (the
prompt with language and task tokens, language detection, the rules),
token for token. Real multilingual checkpoints use the same generation
config fields (`lang_to_id`, `task_to_id`, `is_multilingual`).

Run by hand (not in CI), from the repository root, with torch installed:
    ../pyref/bin/python scripts/parity/whisper_multilingual.py [SHARED_DIR]
Writes tests/fixtures/whisper-random-multilingual/ (config.json,
generation_config.json, model.safetensors in f16, a one-token
tokenizer.json) and
tests/fixtures/parity/whisper_multilingual.json, read by
tests/tests/whisper_multilingual.rs.
"""
import json
import pathlib
import sys

import soundfile
import torch
import transformers
from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                          WhisperForConditionalGeneration)

# OpenAI's language codes in token order (whisper/tokenizer.py LANGUAGES,
# the 99 of the v1/v2 vocabulary: without Cantonese, added by v3).
LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no "
    "th ur hr bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw "
    "gl mr pa si km sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl "
    "mg as tt haw ln ha ba jw su"
).split()
assert len(LANGUAGES) == 99
EOT, SOT = 50257, 50258
TRANSLATE, TRANSCRIBE = 50358, 50359
NO_TIMESTAMPS = 50363
VOCAB = 51865

CLIPS = [
    "data/speech/audioeval/es/hola_mundo.wav",
    "data/speech/audioeval/fr/bonjour_monde.wav",
    "data/speech/audioeval/ja/" + "{}",
]

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
model_dir = pathlib.Path("tests/fixtures/whisper-random-multilingual")
out = pathlib.Path("tests/fixtures/parity/whisper_multilingual.json")
torch.set_grad_enabled(False)
torch.manual_seed(0)

japanese = sorted((shared / "data/speech/audioeval/ja").glob("*.wav"))[0].name
CLIPS[2] = CLIPS[2].format(japanese)

config = WhisperConfig(
    vocab_size=VOCAB, num_mel_bins=80, d_model=8, encoder_layers=1, decoder_layers=1,
    encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16,
    max_source_positions=1500, max_target_positions=448, decoder_start_token_id=SOT,
    eos_token_id=EOT, pad_token_id=EOT, bos_token_id=EOT,
)
model = WhisperForConditionalGeneration(config).eval()
# Larger weights than the default init, so that the scores differ more
# from token to token than f32 rounding does; and sharper cross-attention,
# so that what the decoder writes depends on the audio rather than on an
# average over all 1500 positions (the encoder's positions are left as they
# are, the convolutions strengthened, so the sound outweighs them).
for name, p in model.named_parameters():
    if "embed_positions" in name:
        continue
    p.mul_(4.0)
    if "encoder_attn.q_proj" in name or "encoder_attn.k_proj" in name or "conv" in name:
        p.mul_(6.0)
generation = GenerationConfig(
    decoder_start_token_id=SOT, eos_token_id=EOT, pad_token_id=EOT, bos_token_id=EOT,
    max_length=448, is_multilingual=True, no_timestamps_token_id=NO_TIMESTAMPS,
    suppress_tokens=[1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91,
                     92, 93, 359, 503, 522, 542, 873, 893, 902, 918, 922, 931, 1350, 1853, 1982,
                     2460, 2627, 3246, 3253, 3268, 3536, 3846, 3961, 4183, 4667, 6585, 6647, 7273,
                     9061, 9383, 10428, 10929, 11938, 12033, 12331, 12562, 13793, 14157, 14635,
                     15265, 15618, 16553, 16604, 18362, 18956, 20075, 21675, 22520, 26130, 26161,
                     26435, 28279, 29464, 31650, 32302, 32470, 36865, 42863, 47425, 49870, 50254,
                     50258, 50358, 50359, 50360, 50361, 50362],
    begin_suppress_tokens=[220, EOT],
    lang_to_id={f"<|{code}|>": 50259 + i for i, code in enumerate(LANGUAGES)},
    task_to_id={"translate": TRANSLATE, "transcribe": TRANSCRIBE},
    forced_decoder_ids=[[1, None], [2, TRANSCRIBE]],
)
model.generation_config = generation
model.half().save_pretrained(model_dir, safe_serialization=True)
generation.save_pretrained(model_dir)

# A tokenizer of one unknown token: enough to load the folder (special
# tokens are found through the generation config); the random model's text
# is meaningless anyway.
tokenizer = {
    "version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
    "post_processor": None, "decoder": None,
    "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"},
}
(model_dir / "tokenizer.json").write_text(json.dumps(tokenizer) + "\n")

# Both sides read the same f16 weights.
model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
extractor = WhisperFeatureExtractor()


def generated(ids):
    ids = ids[0].tolist()
    while ids and ids[-1] == EOT:
        ids = ids[:-1]
    return ids


clips = []
for name in CLIPS:
    samples, rate = soundfile.read(shared / name, dtype="float32")
    assert rate == 16000 and samples.ndim == 1, name
    features = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features
    detected = model.detect_language(features).item()
    code = LANGUAGES[detected - 50259]
    cases = {
        "detect_transcribe": {"task": "transcribe"},
        "french_transcribe": {"language": "fr", "task": "transcribe"},
        "detect_translate": {"task": "translate"},
        "spanish_timestamps": {"language": "es", "task": "transcribe", "return_timestamps": True},
    }
    tokens = {}
    for case, options in cases.items():
        ids = model.generate(features, do_sample=False, num_beams=1, **options)
        tokens[case] = generated(ids)
    clips.append({"file": name, "detected": code, "tokens": tokens})
    print(name, code, {k: v[:8] for k, v in tokens.items()})

out.write_text(json.dumps({
    "model": str(model_dir.relative_to("tests")),
    "transformers": transformers.__version__, "torch": torch.__version__,
    "clips": clips,
}, indent=1) + "\n")
print(f"wrote {out}")
