"""ffmpeg and ffprobe as the reference decoder, shared by the fixture scripts
(make_media_fixtures.py, make_video_frame_fixtures.py, make_damaged_fixtures.py).
"""
import json
import subprocess


def ffmpeg(*args):
    """Runs ffmpeg quietly, overwriting outputs; fails on any error."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def ffprobe_json(path, entries):
    """What ffprobe reports for the first video stream's `entries`, as JSON."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         entries, "-of", "json", str(path)],
        check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def probe_frames(path):
    """Presentation times of the video frames, as ffprobe reports them."""
    frames = ffprobe_json(path, "frame=best_effort_timestamp_time")["frames"]
    return [float(f["best_effort_timestamp_time"]) for f in frames]


def probe_size(path):
    """Width and height of the video stream, as ffprobe reports them."""
    stream = ffprobe_json(path, "stream=width,height")["streams"][0]
    return stream["width"], stream["height"]
