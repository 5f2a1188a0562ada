//! Missing, empty and corrupt media give errors that name the file, never panics.

use std::path::Path;

use polymodal::demo::demo_features;
use polymodal::demo::synthetic::{self, DatasetSize};
use polymodal::train::{load_dataset, read_manifest};
use polymodal_tests::scratch_dir;

/// A test split with one sample of each class under `dir/data`.
fn one_sample_per_class(dir: &Path) -> synthetic::GeneratedDataset {
    let size = DatasetSize {
        train: 0,
        valid: 0,
        test: 1,
    };
    synthetic::generate(&dir.join("data"), size, 5).unwrap()
}

/// Rewrites the first sample's `modality` file with `bytes` (or deletes it) and
/// checks that loading the manifest fails naming that file.
fn expect_error_naming_file(dir: &Path, modality: &str, extension: &str, bytes: Option<Vec<u8>>) {
    let manifest = dir.join("data/test.jsonl");
    let file = dir.join(format!("data/{modality}/test-0000.{extension}"));
    let original = std::fs::read(&file).unwrap();
    match &bytes {
        Some(b) => std::fs::write(&file, b).unwrap(),
        None => std::fs::remove_file(&file).unwrap(),
    }
    let result = load_dataset(&read_manifest(&manifest).unwrap(), &demo_features(), None);
    std::fs::write(&file, original).unwrap();
    let message = result
        .expect_err("corrupt media must be an error")
        .to_string();
    assert!(
        message.contains(&file.display().to_string()),
        "{modality}: `{message}` does not name the file"
    );
}

#[test]
fn every_decoder_reports_bad_files() {
    let dir = scratch_dir("bad-media");
    one_sample_per_class(&dir);
    for (modality, extension) in [
        ("image", "png"),
        ("audio", "wav"),
        ("video", "mp4"),
        ("text", "txt"),
    ] {
        let original =
            std::fs::read(dir.join(format!("data/{modality}/test-0000.{extension}"))).unwrap();
        expect_error_naming_file(&dir, modality, extension, None);
        if modality == "text" {
            expect_error_naming_file(&dir, modality, extension, Some(vec![0xff, 0xfe, 0x80]));
            continue;
        }
        expect_error_naming_file(&dir, modality, extension, Some(Vec::new()));
        expect_error_naming_file(
            &dir,
            modality,
            extension,
            Some(b"this is not media at all".repeat(20)),
        );
        // Truncated to a few header bytes.
        expect_error_naming_file(
            &dir,
            modality,
            extension,
            Some(original[..original.len().min(24)].to_vec()),
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn clean_files_load() {
    let dir = scratch_dir("good-media");
    let data = one_sample_per_class(&dir);
    let set = load_dataset(&read_manifest(&data.test).unwrap(), &demo_features(), None).unwrap();
    assert_eq!(set.examples.len(), 6);
    assert!(
        set.examples
            .iter()
            .all(|e| e.features.video.as_ref().unwrap().len() == 4 * 3 * 32 * 32)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Windows of audio given by a user: an infinite or NaN duration or offset
/// is an error naming the setting; a huge finite duration means "to the
/// end"; a huge finite offset finds no samples. Nothing overflows.
#[test]
fn absurd_audio_windows_are_errors_or_whole_files() {
    use polymodal::audio::{LoadOptions, load};
    let wav = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/media/tone-s24.wav");
    let whole = load(&wav, &LoadOptions::default()).unwrap();
    let window = |offset_secs: f64, duration_secs: Option<f64>| LoadOptions {
        offset_secs,
        duration_secs,
        ..LoadOptions::mono_at(16_000)
    };
    for (options, named) in [
        (window(0.0, Some(f64::INFINITY)), "duration_secs"),
        (window(0.0, Some(f64::NAN)), "duration_secs"),
        (window(0.0, Some(0.0)), "duration_secs"),
        (window(f64::INFINITY, None), "offset_secs"),
        (window(-1.0, None), "offset_secs"),
        (
            LoadOptions {
                sample_rate: Some(0),
                ..LoadOptions::default()
            },
            "sample_rate",
        ),
    ] {
        let error = load(&wav, &options).unwrap_err().to_string();
        assert!(error.contains(named), "{options:?}: {error}");
    }
    for duration in [1e300, f64::MAX] {
        let clip = load(
            &wav,
            &LoadOptions {
                duration_secs: Some(duration),
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(clip.frames(), whole.frames(), "duration {duration}");
    }
    for offset in [1e300, 1e12] {
        let result = std::panic::catch_unwind(|| load(&wav, &window(offset, Some(1.0))));
        assert!(matches!(result, Ok(Err(_))), "offset {offset}: {result:?}");
    }
}
