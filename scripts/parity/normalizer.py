"""Whisper English text normaliser and error-rate fixtures: OpenAI's
`whisper.normalizers.EnglishTextNormalizer` and `BasicTextNormalizer`
(openai-whisper, the reference for polymodal_text::normalize) on a sample of
tricky strings, and jiwer's word and character error rates on pairs of
normalised texts (the reference for polymodal_text::error_rate).

Run by hand (not in CI), from the repository root:
    ../pyref/bin/pip install openai-whisper jiwer
    ../pyref/bin/python scripts/parity/normalizer.py
Writes tests/fixtures/parity/normalizer.json, read by
crates/polymodal-text/tests/normalizer.rs.
"""
import importlib.metadata
import json
import pathlib

import jiwer
from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

SAMPLE = [
    "Hello, World!",
    "The quick brown fox jumps over the lazy dog.",
    "Mr. Smith and Dr. Jones met St. John's Prof. Brown.",
    "I won't, can't, shouldn't; they're here and it's done. Let's go, y'all!",
    "He'd been there; she's gone; we'd done it; it's got to be.",
    "I'm gonna wanna gotta go, ma'am.",
    "Hmm, um, uh, mhm, I mean [laughs] (inaudible) <unk> yes.",
    "twenty one",
    "one hundred and twenty three",
    "two thousand and five",
    "nineteen ninety nine",
    "one oh one",
    "zero point five",
    "three point one four one five nine",
    "double seven triple zero",
    "five and a half",
    "and a half dozen eggs",
    "the twenty first century and the 1960s",
    "the nineteenth of june, the fifth, twelfth and 21st",
    "twenty millionth visitor and a hundred thousandth",
    "$20 million and three dollars and fifty cents",
    "two dollars and seven cents",
    "five pounds, ten euros, minus four and plus seven",
    "fifty percent and ten per cent of 3.5%",
    "1,000,000 people and 3.14 pies at 10.5",
    "one, ones, first ones, fours and sixes, the forties",
    "She's 1 of the 1s.",
    "colour, favourite, organisation and theatre",
    "Crème brûlée, naïve café, Ångström, Œuvre, Straße, Łódź",
    "IP 192.168.0.1 and version two point oh",
    "a hundred, a thousand, one million two hundred thousand",
    "eleven hundred; twelve thousand three hundred forty five",
    "point five and negative two",
    "room 101, route sixty six, highway 61st",
    "It costs $0.50, £3, €4.99 and ¢5.",
    "",
    "   lots   of\twhite\nspace  ",
]

PAIRS = [
    ("the quick brown fox jumps over the lazy dog", "the quick brown fox jumped over a lazy dog"),
    ("hello world", "hello"),
    ("hello", "hello world again"),
    ("one two three four", "four three two one"),
    ("speech recognition is hard", "speech recognition is hard"),
    ("a b c d e f", "a x c e f g"),
]

english, basic = EnglishTextNormalizer(), BasicTextNormalizer()
basic_diacritics = BasicTextNormalizer(remove_diacritics=True)
out = {
    "versions": {
        "openai-whisper": importlib.metadata.version("openai-whisper"),
        "jiwer": importlib.metadata.version("jiwer"),
    },
    "english": [[s, english(s)] for s in SAMPLE],
    "basic": [[s, basic(s)] for s in SAMPLE],
    "basic_remove_diacritics": [[s, basic_diacritics(s)] for s in SAMPLE],
    "pairs": [
        {
            "reference": r,
            "hypothesis": h,
            "wer": jiwer.wer(r, h),
            "cer": jiwer.cer(r, h),
        }
        for r, h in PAIRS
    ],
    "corpus": {
        "wer": jiwer.wer([r for r, _ in PAIRS], [h for _, h in PAIRS]),
        "cer": jiwer.cer([r for r, _ in PAIRS], [h for _, h in PAIRS]),
    },
}
path = pathlib.Path("tests/fixtures/parity/normalizer.json")
path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
print(f"wrote {path}")
