#!/usr/bin/env bash
# Makes the small audio fixtures of crates/polymodal-audio/tests/fixtures with
# the ffmpeg CLI (apt-get install ffmpeg). The FLAC files are lossless
# encodings of the WAV files, so both must decode to the same samples.
set -euo pipefail
out="$(dirname "$0")/../crates/polymodal-audio/tests/fixtures"
mkdir -p "$out"
ffmpeg -v error -y -f lavfi -i "sine=frequency=440:sample_rate=8000:duration=0.25" -ac 1 -c:a pcm_s16le "$out/tone-mono-8k.wav"
ffmpeg -v error -y -i "$out/tone-mono-8k.wav" -c:a flac "$out/tone-mono-8k.flac"
ffmpeg -v error -y -f lavfi -i "aevalsrc=0.5*sin(2*PI*300*t)|0.25*sin(2*PI*900*t):s=16000:d=0.2" -c:a pcm_s16le "$out/chirp-stereo-16k.wav"
ffmpeg -v error -y -i "$out/chirp-stereo-16k.wav" -c:a flac "$out/chirp-stereo-16k.flac"
