"""Makes the intact originals of the damaged real-world video corpus in
tests/fixtures/damaged/ with the ffmpeg CLI (apt-get install ffmpeg). The
damage itself (cuts, broken frames, headers that lie about the duration) is
applied by the tests, so every variant stays visible in the test code.

- faststart-h264.mp4: H.264 with its index (moov) before the data, as web
  video is published: a copy cut short still opens, and its index promises
  frames the file no longer holds (seeks land past the last decodable one).
- mjpeg.avi: MJPEG in AVI, every frame a JPEG of its own, so single frames
  can be broken without breaking the rest.

Run by hand from the repository root: python3 scripts/make_damaged_fixtures.py
Only the standard library is needed.
"""
import pathlib

from ffmedia import ffmpeg

out = pathlib.Path("tests/fixtures/damaged")
out.mkdir(parents=True, exist_ok=True)
src = "testsrc2=size=64x48:rate=10:duration=6"


ffmpeg("-f", "lavfi", "-i", src, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10",
       "-movflags", "+faststart", str(out / "faststart-h264.mp4"))
ffmpeg("-f", "lavfi", "-i", src, "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "8",
       str(out / "mjpeg.avi"))
for path in sorted(out.iterdir()):
    print(f"{path.name}: {path.stat().st_size} bytes")
