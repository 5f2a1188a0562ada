//! Decoding real WAV and FLAC files made by ffmpeg (scripts/make_audio_fixtures.sh).

use std::path::PathBuf;

use polymodal_audio::{decode_bytes, decode_file, write_wav_pcm16};
use polymodal_core::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn flac_decodes_to_the_same_samples_as_its_wav() {
    for (name, rate, channels) in [("tone-mono-8k", 8000, 1), ("chirp-stereo-16k", 16000, 2)] {
        let wav = decode_file(fixture(&format!("{name}.wav"))).unwrap();
        let flac = decode_file(fixture(&format!("{name}.flac"))).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (rate, channels), "{name}");
        assert_eq!(
            (flac.sample_rate, flac.channels),
            (rate, channels),
            "{name}"
        );
        assert_eq!(
            wav.samples, flac.samples,
            "{name}: lossless FLAC must equal its WAV"
        );
        assert!((wav.duration_secs() - if channels == 1 { 0.25 } else { 0.2 }).abs() < 1e-3);
    }
}

#[test]
fn stereo_downmix_averages_channels() {
    let clip = decode_file(fixture("chirp-stereo-16k.wav")).unwrap();
    let mono = clip.to_mono();
    assert_eq!(mono.len(), clip.frames());
    assert!((mono[10] - (clip.samples[20] + clip.samples[21]) / 2.0).abs() < 1e-7);
}

#[test]
fn written_wav_round_trips() {
    let samples: Vec<f32> = (0..800).map(|i| (i as f32 * 0.05).sin() * 0.8).collect();
    let path = std::env::temp_dir().join(format!("polymodal-roundtrip-{}.wav", std::process::id()));
    write_wav_pcm16(&path, &samples, 8000, 1).unwrap();
    let clip = decode_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(clip.sample_rate, 8000);
    assert_eq!(clip.samples.len(), samples.len());
    let worst = clip
        .samples
        .iter()
        .zip(&samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst <= 0.5 / 32768.0 + 1e-7, "quantisation error {worst}");
}

#[test]
fn damaged_files_are_errors_not_panics() {
    for name in ["tone-mono-8k.wav", "tone-mono-8k.flac"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let extension = name.rsplit('.').next();
        assert!(
            decode_bytes(Vec::new(), extension).is_err(),
            "{name}: empty"
        );
        assert!(
            decode_bytes(b"RIFF....WAVEjunk".to_vec(), extension).is_err(),
            "{name}: junk"
        );
        for cut in [4, 12, 30, 44] {
            assert!(
                decode_bytes(bytes[..cut].to_vec(), extension).is_err(),
                "{name}: cut at {cut}"
            );
        }
        // Cuts and bit flips anywhere: an error or fewer/changed samples, never a panic.
        for cut in (0..bytes.len()).step_by(97) {
            let _ = decode_bytes(bytes[..cut].to_vec(), extension);
        }
        for at in (0..bytes.len()).step_by(53) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x5a;
            let _ = decode_bytes(flipped, extension);
        }
    }
    assert!(matches!(
        decode_file("/nonexistent/a.wav"),
        Err(Error::Io { .. })
    ));
}
