"""The PyTorch side of `cargo xtask bench kernels --python ...` (and of
`cargo xtask gpu`): the work of each polymodal kernel written the way a
PyTorch user writes it, on the GPU when torch sees one (CUDA), else on the
CPU, timed in-process (best of N passes after a warm-up pass, each waiting
for the device).

Reads a JSON spec on stdin, prints a JSON object of seconds per pass and
the tools' versions (`versions`, see provenance.py). A missing package is
reported as {"skipped": "..."} and the run goes on.
"""
import json
import sys

sys.dont_write_bytecode = True
from provenance import versions  # noqa: E402
from timing import best_of  # noqa: E402

PACKAGES = (("torch", "torch"), ("librosa", "librosa"))


def log_mel(torch, device, spec):
    import librosa

    # Whisper's front end: n_fft 400, hop 160, 80 Slaney mels, log10 with the
    # max - 8 floor, (x + 4) / 4; 8 signals of 10 s at 16 kHz on the device.
    signal = torch.rand(8, 160_000, device=device) - 0.5
    window = torch.hann_window(400, device=device)
    filters = torch.tensor(librosa.filters.mel(sr=16_000, n_fft=400, n_mels=80), device=device)

    def work():
        stft = torch.stft(signal, 400, 160, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = stft.abs() ** 2
        mel = filters @ power
        log = torch.clamp(mel, min=1e-10).log10()
        floor = log.amax(dim=(1, 2), keepdim=True) - 8.0
        return (torch.maximum(log, floor) + 4.0) / 4.0

    return work


def frames(torch, device, spec):
    import torch.nn.functional as F

    # 16 frames of 640x360 u8 RGB on the device to CLIP input: shorter side
    # 224 (bicubic, antialiased), centre crop 224, normalised CHW.
    pixels = torch.randint(0, 256, (16, 360, 640, 3), dtype=torch.uint8, device=device)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)

    def work():
        x = pixels.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(224, 398), mode="bicubic", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255)
        left = (398 - 224) // 2
        x = x[:, :, :, left:left + 224]
        return (x / 255.0 - mean) / std

    return work


def gated(torch, device, spec, backward):
    # The gated unit's combination, batch 256, 3 modalities, 512 hidden.
    scores = torch.randn(256, 3, 512, device=device, requires_grad=backward)
    candidates = torch.randn(256, 3, 512, device=device, requires_grad=backward)
    present = torch.ones(256, 3, 1, device=device)

    def work():
        masked = scores + (1.0 - present) * -1e4
        h = (torch.softmax(masked, dim=1) * present * torch.tanh(candidates)).sum(dim=1)
        if backward:
            h.sum().backward()
        return h

    return work


def main():
    spec = json.load(sys.stdin)
    names = ["log_mel", "frames", "gated_forward", "gated_backward"]
    try:
        import torch
    except ImportError as e:
        out = {k: {"skipped": str(e)} for k in names}
        out["versions"] = versions(*PACKAGES)
        json.dump(out, sys.stdout)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(spec["threads"])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    where = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    jobs = {
        "log_mel": lambda: log_mel(torch, device, spec),
        "frames": lambda: frames(torch, device, spec),
        "gated_forward": lambda: gated(torch, device, spec, False),
        "gated_backward": lambda: gated(torch, device, spec, True),
    }
    out = {}
    for name, job in jobs.items():
        try:
            work = job()
            grad = torch.enable_grad() if name == "gated_backward" else torch.no_grad()
            with grad:
                seconds = best_of(spec["reps"], work, sync)
            out[name] = {"seconds": seconds, "tool": f"torch {torch.__version__} on {where}"}
        except ImportError as e:
            out[name] = {"skipped": str(e)}
    out["versions"] = versions(*PACKAGES)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
