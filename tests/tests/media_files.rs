//! Real media files made by the ffmpeg CLI (`scripts/make_media_fixtures.py`)
//! decoded by polymodal and compared with what ffmpeg itself decodes from
//! them (`tests/fixtures/media/reference.json`).

use std::path::PathBuf;

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

/// Max |ours - ffmpeg| over ffmpeg's every-13th-frame samples, at the lag
/// (in frames, ours later) that aligns them best.
fn aligned_diff(ours: &[f32], reference: &[f32], channels: usize) -> (i64, f32) {
    let frames = reference.len() / channels;
    (-3000i64..=3000)
        .map(|lag| {
            let mut worst = 0.0f32;
            for i in 0..frames {
                let at = (i * 13) as i64 + lag;
                if at < 0 || (at as usize + 1) * channels > ours.len() {
                    continue;
                }
                for c in 0..channels {
                    let d = (ours[at as usize * channels + c] - reference[i * channels + c]).abs();
                    worst = worst.max(d);
                }
            }
            (lag, worst)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
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
        let means: Vec<[f64; 3]> = serde_json::from_value(want["rgb_means"].clone()).unwrap();
        assert_eq!(frames.len(), times.len(), "{name}: frame count");
        for (i, frame) in frames.iter().enumerate() {
            assert!(
                (frame.time_secs - times[i]).abs() < 1e-3,
                "{name} frame {i}: {} vs {}",
                frame.time_secs,
                times[i]
            );
            let pixels = (frame.image.width() * frame.image.height()) as f64;
            for (c, want) in means[i].iter().enumerate() {
                let mean = frame.image.pixels().map(|p| p.0[c] as f64).sum::<f64>() / pixels;
                // Colour conversion rounding differs slightly between swscale setups.
                assert!(
                    (mean - want).abs() < 1.5,
                    "{name} frame {i} channel {c}: {mean} vs {want}"
                );
            }
        }
    }
}

#[test]
fn sampling_strategies_pick_the_right_frames() {
    let path = media("seek-h264.mp4"); // 12 s at 10 fps, a keyframe every second
    let all = decode_all(&path).unwrap();
    assert_eq!(all.len(), 120);
    let uniform = sample_frames(&path, &Sampling::uniform(4)).unwrap();
    let times: Vec<f64> = uniform.iter().map(|f| f.time_secs).collect();
    assert_eq!(times.len(), 4);
    for (frame, index) in uniform.iter().zip([15, 45, 75, 105]) {
        assert!(
            (frame.time_secs - index as f64 / 10.0).abs() < 1e-6,
            "{times:?}"
        );
        assert_eq!(frame.image, all[index], "frame {index}");
    }
    let every = sample_frames(&path, &Sampling::whole(Strategy::EveryNth { step: 7 })).unwrap();
    assert_eq!(every.len(), 120usize.div_ceil(7));
    assert_eq!(every[3].image, all[21]);
    let fps = sample_frames(&path, &Sampling::whole(Strategy::Fps { fps: 0.5 })).unwrap();
    assert_eq!(fps.len(), 6);
    assert_eq!(fps[5].image, all[100]);
    let window = sample_frames(&path, &Sampling::whole(Strategy::All).within(5.0, 7.0)).unwrap();
    assert_eq!(window.len(), 20);
    assert_eq!(window[0].image, all[50]);
    assert_eq!(window[19].image, all[69]);
}

#[test]
fn seeking_lands_on_the_exact_frame_between_keyframes() {
    let path = media("seek-h264.mp4");
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
        assert_eq!(
            frame.image,
            all[(secs * 10.0f64).round() as usize],
            "{secs}"
        );
    }
    let info = reader.info();
    assert_eq!(
        (info.fps, info.frame_count, info.codec.as_str()),
        (10.0, Some(120), "h264")
    );
    assert!((info.duration_secs.unwrap() - 12.0).abs() < 0.05);
}
