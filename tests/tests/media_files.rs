//! Real media files made by the ffmpeg CLI (`scripts/make_media_fixtures.py`)
//! decoded by polymodal and compared with what ffmpeg itself decodes from
//! them: samples and frame times (`tests/fixtures/media/reference.json`),
//! and the pixels of chosen frames (`tests/fixtures/media/frames/`, from
//! `scripts/make_video_frame_fixtures.py`).

use std::path::PathBuf;

use image::RgbImage;
use polymodal::audio::{AudioReader, LoadOptions, decode_file, load};
use polymodal::video::{Sampling, Strategy, VideoReader, decode_all, probe, sample_frames};
use serde_json::Value;

fn media(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/media")
        .join(name)
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(media("reference.json")).unwrap()).unwrap()
}

/// Frames of the tone every audio fixture encodes (0.2 s at 22 050 Hz).
/// ffmpeg keeps some codecs' padding after it (Vorbis to 4608 frames, AAC
/// to 5120), symphonia trims it: only these frames must be in both.
const TONE_FRAMES: usize = 4410;

/// Max |ours - ffmpeg| over ffmpeg's every-13th-frame samples, at the lag
/// (in frames, ours later; a decode missing its start finds no good lag)
/// that aligns them best. Only lags at which every reference sample of the
/// tone (the first [`TONE_FRAMES`]) has a counterpart in `ours` count, so a
/// decode cut short fails instead of passing on the part it kept; reference
/// samples of the padding after it are compared where `ours` has them.
fn aligned_diff(ours: &[f32], reference: &[f32], channels: usize) -> (i64, f32) {
    assert_eq!(reference.len() % channels, 0, "whole reference frames");
    let frames = reference.len() / channels;
    let needed = TONE_FRAMES.div_ceil(13);
    assert!(
        frames >= needed,
        "the reference has {frames} frames, the tone needs {needed}"
    );
    let last = (needed - 1) as i64 * 13;
    let available = (ours.len() / channels) as i64;
    (0i64..=3000)
        .filter(|lag| last + lag < available)
        .map(|lag| {
            let mut worst = 0.0f32;
            for i in 0..frames {
                let at = (i * 13) as i64 + lag;
                if at >= available {
                    break;
                }
                for c in 0..channels {
                    let d = (ours[at as usize * channels + c] - reference[i * channels + c]).abs();
                    worst = worst.max(d);
                }
            }
            (lag, worst)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_else(|| {
            panic!(
                "{available} frames decoded: too few for the tone's {TONE_FRAMES} (ffmpeg's sample of frame {last} has no counterpart)"
            )
        })
}

#[test]
fn audio_codecs_decode_like_ffmpeg() {
    let reference = reference();
    // name, tolerance, the lag expected against ffmpeg
    let cases = [
        // PCM is exact up to ffmpeg's f32 conversion.
        ("tone-s24.wav", 1e-6, 0),
        ("tone-f32.wav", 0.0, 0),
        ("tone-u8.wav", 1e-6, 0),
        // Lossy decoders: symphonia and ffmpeg agree to float rounding.
        ("tone.mp3", 1e-5, 0),
        ("tone.ogg", 1e-5, 0),
        // symphonia ignores the MP4 edit list: AAC's 1024 priming samples stay.
        ("tone.m4a", 1e-5, 1024),
    ];
    for (name, tolerance, expected_lag) in cases {
        let want = &reference["audio"][name];
        let clip = decode_file(media(name)).unwrap();
        assert_eq!(clip.channels, 2, "{name}");
        assert_eq!(clip.sample_rate, 22_050, "{name}");
        let samples: Vec<f32> = serde_json::from_value(want["every_13th_frame"].clone()).unwrap();
        let (lag, diff) = aligned_diff(&clip.samples, &samples, 2);
        eprintln!(
            "{name}: {} frames (ffmpeg {}), lag {lag}, max diff {diff:e}",
            clip.frames(),
            want["frames"]
        );
        assert_eq!(lag, expected_lag, "{name}");
        // ffmpeg's values were rounded to 6 decimals in the fixture.
        assert!(diff <= tolerance + 1e-6, "{name}: {diff}");
    }
}

#[test]
fn a_window_is_read_by_seeking_and_equals_the_slice() {
    let path = media("tone-s24.wav");
    let whole = decode_file(&path).unwrap();
    let options = LoadOptions {
        offset_secs: 0.05,
        duration_secs: Some(0.1),
        ..LoadOptions::default()
    };
    let part = load(&path, &options).unwrap();
    // librosa's convention: whole frames, truncated.
    let start = (0.05 * 22_050.0f64) as usize * 2;
    assert_eq!(part.samples.len(), 2205 * 2);
    // The window must lie inside the whole file, or the zip below would
    // compare only what both hold.
    assert!(
        whole.samples.len() >= start + part.samples.len(),
        "window of {} samples from {start}, whole file {}",
        part.samples.len(),
        whole.samples.len()
    );
    let first_difference = part
        .samples
        .iter()
        .zip(&whole.samples[start..])
        .position(|(a, b)| a != b);
    assert_eq!(first_difference, None);
    let info = AudioReader::open(&path).unwrap().info().clone();
    assert!((info.duration_secs.unwrap() - 0.2).abs() < 1e-3);
}

#[test]
fn mono_16k_loading_resamples_and_mixes() {
    let clip = load(media("tone.ogg"), &LoadOptions::mono_at(16_000)).unwrap();
    assert_eq!((clip.sample_rate, clip.channels), (16_000, 1));
    let source = decode_file(media("tone.ogg")).unwrap();
    let expected = (source.frames() as u64 * 16_000).div_ceil(22_050) as usize;
    assert_eq!(clip.frames(), expected);
}

/// ffmpeg's own rgb24 decode of a few frames of a video fixture (the
/// default `ffmpeg -i VIDEO -pix_fmt rgb24` conversion), from
/// `tests/fixtures/media/frames/` (`scripts/make_video_frame_fixtures.py`).
struct ReferenceFrames {
    /// (frame index in decoding order, ffmpeg's picture).
    frames: Vec<(usize, RgbImage)>,
    /// How many frames ffmpeg decoded from the file.
    decoded_frames: usize,
}

impl ReferenceFrames {
    fn load(name: &str) -> Self {
        let index: Value =
            serde_json::from_str(&std::fs::read_to_string(media("frames/frames.json")).unwrap())
                .unwrap();
        let entry = &index["videos"][name];
        let number = |key: &str| {
            entry[key]
                .as_u64()
                .unwrap_or_else(|| panic!("frames.json: {name}: no {key}")) as u32
        };
        let (width, height) = (number("width"), number("height"));
        let indices: Vec<usize> = serde_json::from_value(entry["frames"].clone()).unwrap();
        // The chosen frames stacked top to bottom in one lossless PNG.
        let strip = image::open(media(&format!("frames/{name}.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(
            strip.dimensions(),
            (width, height * indices.len() as u32),
            "frames/{name}.png"
        );
        let frames = indices
            .iter()
            .enumerate()
            .map(|(k, &index)| {
                let frame = image::imageops::crop_imm(&strip, 0, k as u32 * height, width, height);
                (index, frame.to_image())
            })
            .collect();
        Self {
            frames,
            decoded_frames: number("decoded_frames") as usize,
        }
    }

    /// ffmpeg's picture of frame `index`.
    fn frame(&self, index: usize) -> &RgbImage {
        self.frames
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, frame)| frame)
            .unwrap_or_else(|| panic!("no reference for frame {index}: see frames.json"))
    }
}

/// Largest and mean absolute difference over every value (pixel and
/// channel) of two pictures of the same size.
fn pixel_diff(ours: &RgbImage, reference: &RgbImage) -> (u8, f64) {
    assert_eq!(
        ours.dimensions(),
        reference.dimensions(),
        "frame sizes: ours vs ffmpeg's"
    );
    let (ours, reference) = (ours.as_raw(), reference.as_raw());
    let diffs = ours.iter().zip(reference).map(|(a, b)| a.abs_diff(*b));
    let (max, sum) = diffs.fold((0u8, 0u64), |(max, sum), d| (max.max(d), sum + d as u64));
    (max, sum as f64 / ours.len() as f64)
}

// polymodal's frames against ffmpeg's rgb24 decode, measured on all 24
// reference frames (FFmpeg 5.1, Debian 12): max 0, mean 0, equal (polymodal
// asks swscale for bilinear, the CLI for bicubic, but neither scales: both
// take swscale's unscaled YUV -> RGB path). The limits leave room for the
// rounding of another swscale build (its SIMD and C paths round
// differently by a step or two) and no more: the 20 neighbouring frames checked below differ
// from their reference by 44 to 255 at their largest (0.16 to 6.1 on
// average), a vertically flipped frame by 221 to 255 (38 to 53 on average).
/// Largest allowed |ours − ffmpeg| of one 8-bit value.
const MAX_DIFF: u8 = 2;
/// Largest allowed mean |ours − ffmpeg| over a frame's 8-bit values.
const MEAN_DIFF: f64 = 0.05;

/// Fails unless `ours` is ffmpeg's picture within the limits.
fn assert_same_picture(what: &str, ours: &RgbImage, reference: &RgbImage) {
    let (max, mean) = pixel_diff(ours, reference);
    eprintln!("{what}: max |diff| {max}, mean {mean:.4} (of 255)");
    assert!(
        max <= MAX_DIFF && mean <= MEAN_DIFF,
        "{what}: differs from ffmpeg's rgb24 decode by up to {max} (limit {MAX_DIFF}), {mean:.4} on average (limit {MEAN_DIFF})"
    );
}

/// Fails unless the comparison above rejects `wrong` (a flipped or another
/// frame) by far: proof that the check can catch the bug it is named for.
fn assert_rejected(what: &str, wrong: &RgbImage, reference: &RgbImage) {
    let (max, mean) = pixel_diff(wrong, reference);
    assert!(
        max > 8 * MAX_DIFF || mean > 8.0 * MEAN_DIFF,
        "{what} would pass as the right frame: max {max}, mean {mean:.4}"
    );
}

/// `image` upside down.
fn flipped(image: &RgbImage) -> RgbImage {
    image::imageops::flip_vertical(image)
}

#[test]
fn video_files_decode_like_ffmpeg() {
    let reference = reference();
    for name in ["vp9.webm", "mjpeg.avi", "odd-h264.mp4", "vfr-h264.mp4"] {
        let want = &reference["video"][name];
        let info = probe(media(name)).unwrap();
        assert_eq!(
            (info.width as u64, info.height as u64),
            (
                want["width"].as_u64().unwrap(),
                want["height"].as_u64().unwrap()
            ),
            "{name}"
        );
        let frames = sample_frames(media(name), &Sampling::whole(Strategy::All)).unwrap();
        let times: Vec<f64> = serde_json::from_value(want["times"].clone()).unwrap();
        let pictures = ReferenceFrames::load(name);
        assert_eq!(frames.len(), times.len(), "{name}: frame count vs ffprobe");
        assert_eq!(
            frames.len(),
            pictures.decoded_frames,
            "{name}: frame count vs ffmpeg's decode"
        );
        for (i, frame) in frames.iter().enumerate() {
            assert!(
                (frame.time_secs - times[i]).abs() < 1e-3,
                "{name} frame {i}: {} vs {}",
                frame.time_secs,
                times[i]
            );
        }
        for (index, expected) in &pictures.frames {
            let what = format!("{name} frame {index}");
            assert_same_picture(&what, &frames[*index].image, expected);
            assert_rejected(
                &format!("{what} upside down"),
                &flipped(&frames[*index].image),
                expected,
            );
            // The reference frames were chosen with different pictures
            // beside them (scripts/make_video_frame_fixtures.py).
            let neighbours = [index.checked_sub(1), Some(index + 1)];
            let mut compared = 0;
            for neighbour in neighbours.into_iter().flatten() {
                let Some(other) = frames.get(neighbour) else {
                    continue;
                };
                if other.image != frames[*index].image {
                    assert_rejected(
                        &format!("{name} frame {neighbour} for {index}"),
                        &other.image,
                        expected,
                    );
                    compared += 1;
                }
            }
            assert!(compared > 0, "{what}: no different neighbour to reject");
        }
    }
}

/// Fails unless `ours` is ffmpeg's frame `index` of seek-h264.mp4, and the
/// same frame from decoding the whole file (`all`).
fn assert_frame(
    what: &str,
    ours: &RgbImage,
    index: usize,
    all: &[RgbImage],
    ffmpeg: &ReferenceFrames,
) {
    let expected = ffmpeg.frame(index);
    assert_same_picture(&format!("{what}: frame {index}"), ours, expected);
    assert_rejected(
        &format!("{what}: frame {index} upside down"),
        &flipped(ours),
        expected,
    );
    assert_eq!(
        ours, &all[index],
        "{what}: frame {index} vs decoding everything"
    );
}

#[test]
fn sampling_strategies_pick_the_right_frames() {
    let path = media("seek-h264.mp4"); // 12 s at 10 fps, a keyframe every second
    let ffmpeg = ReferenceFrames::load("seek-h264.mp4");
    let all = decode_all(&path).unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(all.len(), ffmpeg.decoded_frames);
    for (index, _) in &ffmpeg.frames {
        assert_frame("decode_all", &all[*index], *index, &all, &ffmpeg);
    }
    let uniform = sample_frames(&path, &Sampling::uniform(4)).unwrap();
    let times: Vec<f64> = uniform.iter().map(|f| f.time_secs).collect();
    assert_eq!(times.len(), 4);
    for (frame, index) in uniform.iter().zip([15, 45, 75, 105]) {
        assert!(
            (frame.time_secs - index as f64 / 10.0).abs() < 1e-6,
            "{times:?}"
        );
        assert_frame("uniform 4", &frame.image, index, &all, &ffmpeg);
    }
    let every = sample_frames(&path, &Sampling::whole(Strategy::EveryNth { step: 7 })).unwrap();
    assert_eq!(every.len(), 120usize.div_ceil(7));
    assert_frame("every 7th, 4th", &every[3].image, 21, &all, &ffmpeg);
    let fps = sample_frames(&path, &Sampling::whole(Strategy::Fps { fps: 0.5 })).unwrap();
    assert_eq!(fps.len(), 6);
    assert_frame("0.5 fps, 6th", &fps[5].image, 100, &all, &ffmpeg);
    let window = sample_frames(&path, &Sampling::whole(Strategy::All).within(5.0, 7.0)).unwrap();
    assert_eq!(window.len(), 20);
    assert_frame("5-7 s, first", &window[0].image, 50, &all, &ffmpeg);
    assert_frame("5-7 s, last", &window[19].image, 69, &all, &ffmpeg);
}

#[test]
fn seeking_lands_on_the_exact_frame_between_keyframes() {
    let path = media("seek-h264.mp4");
    let ffmpeg = ReferenceFrames::load("seek-h264.mp4");
    let all = decode_all(&path).unwrap();
    let mut reader = VideoReader::open(&path).unwrap();
    for secs in [7.3, 2.0, 11.9, 0.0] {
        reader.seek(secs).unwrap();
        let frame = reader.next_frame().unwrap().unwrap();
        assert!(
            (frame.time_secs - secs).abs() < 1e-6,
            "{secs}: {}",
            frame.time_secs
        );
        let index = (secs * 10.0f64).round() as usize;
        assert_frame(
            &format!("seek to {secs} s"),
            &frame.image,
            index,
            &all,
            &ffmpeg,
        );
    }
    let info = reader.info();
    assert_eq!(
        (info.fps, info.frame_count, info.codec.as_str()),
        (10.0, Some(120), "h264")
    );
    assert!((info.duration_secs.unwrap() - 12.0).abs() < 0.05);
}
