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
