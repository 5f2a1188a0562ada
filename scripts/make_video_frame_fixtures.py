"""Reference frames for the video decode tests: ffmpeg's own rgb24 decode of
a few frames of each video fixture in tests/fixtures/media (made by
scripts/make_media_fixtures.py; run this again after remaking them).

Writes tests/fixtures/media/frames/<video>.png (the chosen frames stacked
top to bottom, lossless) and frames.json (which frames, the ffmpeg version),
read by tests/tests/media_files.rs. The videos themselves are only read:
re-encoding them with another ffmpeg would change every other reference.

Run by hand from the repository root: python3 scripts/make_video_frame_fixtures.py
Only the standard library and the ffmpeg CLI (apt-get install ffmpeg) are needed.
"""
import json
import pathlib
import struct
import subprocess
import zlib

from ffmedia import probe_size

media = pathlib.Path("tests/fixtures/media")
out = media / "frames"
out.mkdir(parents=True, exist_ok=True)

# Frames kept per video. For the codec tests, frames whose neighbours are
# different pictures (testsrc2 at these sizes repeats many frames), so that
# returning a neighbour instead fails: the first, one between keyframes, a
# late one. For seek-h264.mp4, every frame the sampling and seeking tests
# pick (uniform 4 -> 15 45 75 105, every 7th -> 21, 0.5 fps -> 100, the
# 5-7 s window -> 50 69, seeks to 7.3 2.0 11.9 0.0 s -> 73 20 119 0).
FRAMES = {
    "vp9.webm": [0, 9, 17],
    "mjpeg.avi": [3, 10, 11],
    "odd-h264.mp4": [3, 10, 19],
    # Before and after the change from 40 ms to 100 ms between frames (at 10).
    "vfr-h264.mp4": [4, 10, 15],
    "seek-h264.mp4": [0, 15, 20, 21, 45, 50, 69, 73, 75, 100, 105, 119],
}


def decode_rgb24(path):
    """Every frame as ffmpeg decodes it to rgb24 (its default conversion),
    in decoding order, one frame per output frame (no rate conversion)."""
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-threads", "1", "-i", str(path), "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filtered_rows(raw, width, height):
    """PNG scanlines, each with the filter (none, sub, up, average, Paeth)
    whose output has the smallest sum of magnitudes, as libpng chooses."""
    stride = width * 3
    previous = bytes(stride)
    lines = []
    for y in range(height):
        row = raw[y * stride:(y + 1) * stride]
        left = lambda i: row[i - 3] if i >= 3 else 0  # noqa: E731
        up_left = lambda i: previous[i - 3] if i >= 3 else 0  # noqa: E731
        candidates = [
            bytes(row),
            bytes((row[i] - left(i)) & 255 for i in range(stride)),
            bytes((row[i] - previous[i]) & 255 for i in range(stride)),
            bytes((row[i] - (left(i) + previous[i]) // 2) & 255 for i in range(stride)),
            bytes((row[i] - paeth(left(i), previous[i], up_left(i))) & 255 for i in range(stride)),
        ]
        kind, best = min(enumerate(candidates),
                         key=lambda c: sum(min(v, 256 - v) for v in c[1]))
        lines.append(bytes([kind]) + best)
        previous = row
    return b"".join(lines)


def write_png(path, raw, width, height):
    """An 8-bit RGB PNG of `raw` (rgb24, row-major)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(filtered_rows(raw, width, height), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))


version = subprocess.run(["ffmpeg", "-version"], check=True, capture_output=True,
                         text=True).stdout.splitlines()[0]
index = {"ffmpeg": version, "videos": {}}
for name, frames in FRAMES.items():
    width, height = probe_size(media / name)
    raw = decode_rgb24(media / name)
    size = width * height * 3
    assert len(raw) % size == 0, f"{name}: {len(raw)} bytes is not whole {width}x{height} frames"
    count = len(raw) // size
    assert max(frames) < count, f"{name}: only {count} frames"
    kept = b"".join(raw[i * size:(i + 1) * size] for i in frames)
    target = out / f"{name}.png"
    write_png(target, kept, width, height * len(frames))
    index["videos"][name] = {"width": width, "height": height, "frames": frames,
                             "decoded_frames": count}
    print(f"{target}: {len(frames)} of {count} frames, {target.stat().st_size} bytes "
          f"({len(kept)} raw)")
# One line per video keeps the file readable and its diffs small.
lines = [f' {json.dumps(name)}: {json.dumps(entry)}' for name, entry in index["videos"].items()]
(out / "frames.json").write_text(
    f'{{"ffmpeg": {json.dumps(version)}, "videos": {{\n' + ",\n".join(lines) + "\n}}\n")
