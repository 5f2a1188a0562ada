"""Makes the small media fixtures of tests/fixtures/media with the ffmpeg CLI
(apt-get install ffmpeg) and records what ffmpeg/ffprobe themselves read
from them in tests/fixtures/media/reference.json (the reference decoder).

Run by hand from the repository root: python3 scripts/make_media_fixtures.py
Only the standard library is needed. Remaking the videos changes their
pixels: run scripts/make_video_frame_fixtures.py afterwards for the
reference frames the video tests compare with.
"""
import json
import pathlib
import struct
import subprocess

from ffmedia import ffmpeg, probe_frames, probe_size

out = pathlib.Path("tests/fixtures/media")
out.mkdir(parents=True, exist_ok=True)


def decode_f32(path):
    """Interleaved f32 samples as ffmpeg decodes them."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


reference = {"video": {}, "audio": {}}
src = "testsrc2=size={}:rate={}:duration={}"
videos = {
    "vp9.webm": (64, 48, ["-f", "lavfi", "-i", src.format("64x48", 10, 2), "-c:v", "libvpx-vp9", "-b:v", "100k"]),
    "mjpeg.avi": (35, 21, ["-f", "lavfi", "-i", src.format("35x21", 12, 1), "-c:v", "mjpeg", "-pix_fmt", "yuvj444p", "-q:v", "5"]),
    "odd-h264.mp4": (63, 37, ["-f", "lavfi", "-i", src.format("63x37", 25, 1), "-c:v", "libx264", "-pix_fmt", "yuv444p", "-g", "10"]),
    # Variable frame rate: 10 frames 40 ms apart, then 10 frames 100 ms apart.
    "vfr-h264.mp4": (48, 32, ["-f", "lavfi", "-i", src.format("48x32", 25, 0.8), "-vf",
                              "settb=1/1000,setpts='if(lt(N,10),N*40,400+(N-10)*100)'",
                              "-fps_mode", "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5"]),
    # A longer clip with keyframes every second, for seeking.
    "seek-h264.mp4": (32, 24, ["-f", "lavfi", "-i", src.format("32x24", 10, 12), "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p"]),
}
for name, (_, _, args) in videos.items():
    ffmpeg(*args, str(out / name))
    # The encoder may round the requested size (MJPEG to even): ask ffprobe.
    width, height = probe_size(out / name)
    reference["video"][name] = {
        "width": width, "height": height,
        "times": probe_frames(out / name),
    }

# Two chirps (never periodic, so the alignment below is unambiguous).
tone = "aevalsrc=0.4*sin(2*PI*(200+3000*t)*t)|0.3*sin(2*PI*(900-1500*t)*t):s=22050:d=0.2"
audios = {
    "tone.mp3": ["-f", "lavfi", "-i", tone, "-c:a", "libmp3lame", "-b:a", "128k"],
    "tone.ogg": ["-f", "lavfi", "-i", tone, "-c:a", "libvorbis", "-q:a", "6"],
    "tone.m4a": ["-f", "lavfi", "-i", tone, "-c:a", "aac", "-b:a", "128k"],
    "tone-s24.wav": ["-f", "lavfi", "-i", tone, "-c:a", "pcm_s24le"],
    "tone-f32.wav": ["-f", "lavfi", "-i", tone, "-c:a", "pcm_f32le"],
    "tone-u8.wav": ["-f", "lavfi", "-i", tone, "-c:a", "pcm_u8"],
}
# A codec symphonia does not have (Opus): decoding it must be a clear error.
ffmpeg("-f", "lavfi", "-i", tone, "-c:a", "libopus", "-b:a", "32k", str(out / "tone.opus"))
for name, args in audios.items():
    ffmpeg(*args, str(out / name))
    samples = decode_f32(out / name)
    reference["audio"][name] = {
        "channels": 2, "sample_rate": 22050, "frames": len(samples) // 2,
        # Every 13th frame of ffmpeg's own decode keeps the file small.
        "every_13th_frame": [round(s, 6) for i in range(0, len(samples) // 2, 13) for s in samples[2 * i:2 * i + 2]],
    }

(out / "reference.json").write_text(json.dumps(reference))
for path in sorted(out.iterdir()):
    print(f"{path.name}: {path.stat().st_size} bytes")
