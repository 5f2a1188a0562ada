"""Text parity fixtures: Python `tokenizers` (the reference for the Rust
crate it wraps) on a varied sample, with the pretrained all-MiniLM-L6-v2
tokenizer.json of ../shared and with a small byte-level BPE tokenizer trained
here and committed (tests/fixtures/parity/bpe-tokenizer.json).

Run by hand (not in CI), from the repository root:
    ../pyref/bin/python scripts/parity/text.py [SHARED_DIR]
Writes tests/fixtures/parity/text.json, read by tests/tests/parity_text.rs.
"""
import json
import pathlib
import sys

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
out_dir = pathlib.Path("tests/fixtures/parity")

SAMPLE = [
    "he was not an ill disposed young man",
    "Crème brûlée, naïve café and Ångström units: déjà vu!",
    "東京は日本の首都です。北京和上海也很大。",
    "I love this 😀🎉 and 👩‍👩‍👧 families",
    "Visit https://example.com/path?q=1&lang=en or mail someone@example.org",
    "   Leading and trailing   spaces\tand\ttabs\n",
    "MiXeD CaSe and numbers 3.14159 and 1,000,000",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "",
    "a " * 200,
]
PAIRS = [(SAMPLE[0], SAMPLE[1]), (SAMPLE[2], SAMPLE[4])]


def encodings(tokenizer, inputs):
    """Texts or (first, second) pairs, encoded as one batch."""
    batch = tokenizer.encode_batch(inputs)
    return [
        {
            "ids": e.ids,
            "type_ids": e.type_ids,
            "attention_mask": e.attention_mask,
            "offsets": [list(o) for o in e.offsets],
            "special_tokens_mask": e.special_tokens_mask,
        }
        for e in batch
    ]


fixture = {"tokenizers": tokenizers.__version__, "sample": SAMPLE, "pairs": PAIRS, "cases": {}}

minilm = Tokenizer.from_file(str(shared / "models/all-MiniLM-L6-v2/tokenizer.json"))
# As saved: padding to 128 and truncation at 128 are switched on in the file.
fixture["cases"]["minilm_as_saved"] = encodings(minilm, SAMPLE)
minilm.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
minilm.enable_truncation(max_length=32)
fixture["cases"]["minilm_longest_32"] = encodings(minilm, SAMPLE)
fixture["cases"]["minilm_pairs_longest_32"] = encodings(minilm, PAIRS)
minilm.no_padding()
minilm.enable_truncation(max_length=16, direction="left")
fixture["cases"]["minilm_unpadded_left16"] = encodings(minilm, SAMPLE)

# A small byte-level BPE vocabulary (GPT-2 style), trained on the sample and
# the LibriVox transcripts, saved for the Rust side to load.
corpus = SAMPLE + (shared / "data/media/audio/librivox/transcription").read_text().splitlines()
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator(corpus, trainers.BpeTrainer(
    vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
bpe.save(str(out_dir / "bpe-tokenizer.json"))
fixture["cases"]["bpe"] = encodings(bpe, SAMPLE)

(out_dir / "text.json").write_text(json.dumps(fixture, ensure_ascii=False))
print(f"wrote {out_dir / 'text.json'} ({(out_dir / 'text.json').stat().st_size} bytes)")
