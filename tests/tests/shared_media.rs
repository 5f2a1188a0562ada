//! Real media from the shared folder decode through each modality crate.
//! Skips with a message when the shared folder is absent.

use polymodal::audio::{MelConfig, MelSpectrogram, decode_file};
use polymodal::image::load_rgb;
use polymodal::video::{probe, sample_uniform};
use polymodal_tests::shared_dir;

#[test]
fn librivox_speech_decodes_to_16khz_mono() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("data/media/audio/librivox");
    let mut wavs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    wavs.sort();
    assert!(!wavs.is_empty(), "no wav in {}", dir.display());
    let clip = decode_file(&wavs[0]).unwrap();
    assert_eq!((clip.sample_rate, clip.channels), (16_000, 1));
    assert!(clip.duration_secs() > 0.5);
    let peak = clip.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.01 && peak <= 1.0, "peak {peak}");
    let mel = MelSpectrogram::new(MelConfig::librosa(16_000, 400, 160, 80)).unwrap();
    let (values, frames) = mel.compute(&clip.samples).unwrap();
    assert_eq!(frames, clip.frames() / 160 + 1);
    assert!(values.iter().all(|v| v.is_finite()));
}

#[test]
fn photos_decode() {
    let Some(shared) = shared_dir() else { return };
    for (name, width, height) in [
        ("astronaut.png", 512, 512),
        ("chelsea.png", 451, 300),
        ("coffee.png", 600, 400),
    ] {
        let image = load_rgb(shared.join("data/media/images").join(name)).unwrap();
        assert_eq!(image.dimensions(), (width, height), "{name}");
    }
    let jpeg = load_rgb(shared.join("data/media/images/rocket.jpg")).unwrap();
    assert!(jpeg.width() > 0 && jpeg.height() > 0);
}

#[test]
fn h264_video_samples_frames() {
    let Some(shared) = shared_dir() else { return };
    let path = shared.join("data/media/video/bikes.mp4");
    let info = probe(&path).unwrap();
    assert_eq!((info.width, info.height), (640, 272));
    let frames = sample_uniform(&path, 4).unwrap();
    assert_eq!(frames.len(), 4);
    assert!(frames.iter().all(|f| f.dimensions() == (640, 272)));
    // Different moments of real footage differ.
    assert_ne!(frames[0].as_raw(), frames[3].as_raw());
}

#[test]
fn six_channel_aac_of_a_video_decodes_to_16khz_mono() {
    let Some(shared) = shared_dir() else { return };
    let path = shared.join("data/media/video/bigbuckbunny.mp4");
    // symphonia 0.6 decodes mono/stereo AAC only: a clear error, no panic.
    let error = polymodal::audio::decode_file(&path)
        .unwrap_err()
        .to_string();
    assert!(error.contains("unsupported"), "{error}");
    // FFmpeg reads the 5.1 track; polymodal mixes and resamples it.
    let native = polymodal::video::load_audio_track(&path, &Default::default()).unwrap();
    assert_eq!((native.sample_rate, native.channels), (48_000, 6));
    assert!(
        (native.duration_secs() - 5.312).abs() < 0.03,
        "{}",
        native.duration_secs()
    );
    let clip =
        polymodal::video::load_audio_track(&path, &polymodal::audio::LoadOptions::mono_at(16_000))
            .unwrap();
    assert_eq!((clip.sample_rate, clip.channels), (16_000, 1));
    assert_eq!(
        clip.frames(),
        (native.frames() as u64 * 16_000).div_ceil(48_000) as usize
    );
    let rms = (clip.samples.iter().map(|s| s * s).sum::<f32>() / clip.frames() as f32).sqrt();
    assert!(
        rms > 1e-3 && clip.samples.iter().all(|s| s.is_finite()),
        "rms {rms}"
    );
    // A window read by seeking equals the same part of the whole track.
    let window = polymodal::video::load_audio_track(
        &path,
        &polymodal::audio::LoadOptions {
            offset_secs: 2.0,
            duration_secs: Some(1.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(window.frames(), 48_000);
    let start = 2 * 48_000 * 6;
    // The window must lie inside the whole track, or the zip below would
    // compare only what both hold.
    assert!(
        native.samples.len() >= start + window.samples.len(),
        "window of {} samples from {start}, whole track {}",
        window.samples.len(),
        native.samples.len()
    );
    let diff = window
        .samples
        .iter()
        .zip(&native.samples[start..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // AAC frames decoded after a seek lack their predecessor's overlap only
    // in the discarded lead-in; what is kept matches.
    assert!(diff < 1e-4, "window differs by {diff}");
}

#[test]
fn real_video_metadata_and_seeking() {
    let Some(shared) = shared_dir() else { return };
    let path = shared.join("data/media/video/bigbuckbunny.mp4");
    let info = probe(&path).unwrap();
    assert_eq!(
        (info.width, info.height, info.codec.as_str()),
        (1280, 720, "h264")
    );
    assert_eq!(info.frame_count, Some(132));
    assert!((info.fps - 25.0).abs() < 1e-6);
    let all = polymodal::video::decode_all(&path).unwrap();
    assert_eq!(all.len(), 132);
    let picked =
        polymodal::video::sample_frames(&path, &polymodal::video::Sampling::uniform(3)).unwrap();
    for frame in &picked {
        let index = (frame.time_secs * 25.0).round() as usize;
        assert_eq!(frame.image, all[index], "frame at {} s", frame.time_secs);
    }
}
