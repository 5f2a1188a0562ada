//! Audio features against their reference implementations: Hugging Face's
//! `WhisperFeatureExtractor` and librosa, on the real LibriVox clips of the
//! shared folder. Fixtures: `scripts/parity/audio.py`.

use polymodal::audio::{
    LogScale, MelConfig, MelScale, MelSpectrogram, Mfcc, WhisperFeatures, Window, decode_file,
};
use polymodal_tests::{Fixture, max_abs_diff, shared_dir};

fn librivox(name: &str) -> Option<Vec<f32>> {
    let shared = shared_dir()?;
    let dir = shared.join("data/media/audio/librivox");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(&format!("-{name}.wav")))
        .unwrap_or_else(|| panic!("no clip {name} in {}", dir.display()));
    let clip = decode_file(&path).unwrap();
    assert_eq!((clip.sample_rate, clip.channels), (16_000, 1));
    Some(clip.samples)
}

fn clip_names(fixture: &Fixture) -> Vec<String> {
    fixture
        .names()
        .iter()
        .filter_map(|n| n.strip_prefix("whisper.")?.strip_suffix(".frames"))
        .map(String::from)
        .collect()
}

#[test]
fn wav_decoding_equals_soundfile() {
    let fixture = Fixture::load("audio.safetensors");
    for name in clip_names(&fixture) {
        let Some(samples) = librivox(&name) else {
            return;
        };
        let (head, _) = fixture.f32(&format!("input.{name}.head"));
        assert_eq!(
            samples.len() as i64,
            fixture.i64(&format!("input.{name}.len"))[0]
        );
        assert_eq!(&samples[..head.len()], &head[..], "{name}");
    }
}

#[test]
fn whisper_features_match_transformers() {
    let fixture = Fixture::load("audio.safetensors");
    let whisper = WhisperFeatures::new().unwrap();
    let names = clip_names(&fixture);
    assert_eq!(names.len(), 5);
    for name in names {
        let Some(samples) = librivox(&name) else {
            return;
        };
        let ours = whisper.compute(&samples).unwrap();
        let frames = fixture.i64(&format!("whisper.{name}.frames"));
        let (expected, shape) = fixture.f32(&format!("whisper.{name}.values"));
        assert_eq!(shape, [80, frames.len()]);
        assert_eq!(whisper.frames(), 3000);
        let picked: Vec<f32> = (0..80)
            .flat_map(|band| frames.iter().map(move |&f| (band, f as usize)))
            .map(|(band, f)| ours[band * 3000 + f])
            .collect();
        let diff = max_abs_diff(&picked, &expected);
        eprintln!("whisper {name}: max abs diff {diff:e}");
        assert!(diff <= 1e-4, "{name}: {diff}");
    }
}

fn librosa_clip(fixture: &Fixture) -> Option<Vec<f32>> {
    librivox(std::str::from_utf8(&fixture.bytes("librosa.clip")).unwrap())
}

#[test]
fn mel_spectrograms_in_db_match_librosa() {
    let fixture = Fixture::load("audio.safetensors");
    let Some(samples) = librosa_clip(&fixture) else {
        return;
    };
    let cases = [
        (
            "librosa.mel_db",
            MelConfig {
                f_min: 20.0,
                f_max: Some(7600.0),
                ..MelConfig::librosa(16_000, 512, 160, 64)
            },
        ),
        (
            "librosa.mel_hamming_db",
            MelConfig {
                window: Window::Hamming,
                ..MelConfig::librosa(16_000, 512, 160, 40)
            },
        ),
    ];
    for (key, config) in cases {
        let bands = config.n_mels;
        let (ours, frames) = MelSpectrogram::new(config)
            .unwrap()
            .compute(&samples)
            .unwrap();
        let (expected, shape) = fixture.f32(key);
        assert_eq!(shape, [bands, frames], "{key}");
        let diff = max_abs_diff(&ours, &expected);
        eprintln!("{key}: max abs diff {diff:e} dB");
        assert!(diff <= 1e-3, "{key}: {diff} dB");
    }
}

#[test]
fn htk_mel_power_without_norm_matches_librosa() {
    let fixture = Fixture::load("audio.safetensors");
    let Some(samples) = librosa_clip(&fixture) else {
        return;
    };
    let mel = MelSpectrogram::new(MelConfig {
        scale: MelScale::Htk,
        slaney_norm: false,
        log: LogScale::Power,
        ..MelConfig::librosa(16_000, 400, 160, 40)
    })
    .unwrap();
    let (ours, frames) = mel.compute(&samples).unwrap();
    let (expected, shape) = fixture.f32("librosa.mel_htk_power");
    assert_eq!(shape, [40, frames]);
    assert_eq!(
        ours.len(),
        expected.len(),
        "{} values computed, {} from librosa",
        ours.len(),
        expected.len()
    );
    // Power spans many decades: compare relative to each value's size.
    let worst = ours
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-6))
        .fold(0.0f32, f32::max);
    eprintln!("librosa HTK mel power: max relative diff {worst:e}");
    assert!(worst <= 1e-3, "{worst}");
}

#[test]
fn mfcc_matches_librosa() {
    let fixture = Fixture::load("audio.safetensors");
    let Some(samples) = librosa_clip(&fixture) else {
        return;
    };
    let mfcc = Mfcc::new(MelConfig::librosa(16_000, 512, 160, 64), 20).unwrap();
    let (ours, frames) = mfcc.compute(&samples).unwrap();
    let (expected, shape) = fixture.f32("librosa.mfcc");
    assert_eq!(shape, [20, frames]);
    let diff = max_abs_diff(&ours, &expected);
    eprintln!("librosa MFCC: max abs diff {diff:e}");
    assert!(diff <= 1e-3, "{diff}");
}

/// An AST folder's input through the training pipeline (the folder decides
/// the features, the dataset loader computes them) against
/// `ASTFeatureExtractor` (`scripts/parity/ast_features.py`): Kaldi filter
/// banks, cut or padded to the folder's 128 frames, normalised with the
/// folder's statistics. Then the files' pooled embeddings (what `polymodal
/// embed --model DIR --audio FILE` prints) against `ASTModel`'s.
#[test]
fn ast_features_and_embeddings_from_a_folder_match_transformers() {
    use burn::prelude::Device;
    use polymodal::Modality;
    use polymodal::train::{
        EncoderChoice, EncoderChoices, EncoderMode, FeatureConfig, FolderEmbedder, LabelNames,
        ManifestEntry, folder_features, load_dataset,
    };

    let fixture = Fixture::load("ast_features.safetensors");
    let Some(shared) = shared_dir() else {
        return;
    };
    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/ast-features");
    let encoders = EncoderChoices::from([(
        Modality::Audio,
        EncoderChoice::pretrained(&folder, EncoderMode::Frozen),
    )]);
    let mut features = FeatureConfig::default();
    folder_features(&encoders, &[Modality::Audio], &mut features, 128, false).unwrap();
    assert_eq!(features.audio_shape().unwrap(), [128, 128]);

    let names: Vec<String> = fixture
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".frames"))
        .map(String::from)
        .collect();
    assert_eq!(names.len(), 8);
    let entries: Vec<ManifestEntry> = names
        .iter()
        .map(|name| {
            let dir = if name.starts_with("sense_and_sensibility") {
                "data/media/audio/librivox"
            } else {
                "data/speech/audioeval/en"
            };
            ManifestEntry {
                id: name.clone(),
                label: LabelNames::Single("speech".into()),
                text: None,
                image: None,
                audio: Some(shared.join(dir).join(format!("{name}.wav"))),
                video: None,
            }
        })
        .collect();
    let data = load_dataset(&entries, &features, None).unwrap();
    for (name, example) in names.iter().zip(&data.examples) {
        let ours = example.features.audio.as_ref().unwrap();
        assert_eq!(ours.len(), 128 * 128, "{name}");
        let frames = fixture.i64(&format!("{name}.frames"));
        let (expected, shape) = fixture.f32(&format!("{name}.values"));
        assert_eq!(shape, [frames.len(), 128]);
        // Ours are band-major [bands, frames]; transformers' [frames, bands].
        let picked: Vec<f32> = frames
            .iter()
            .flat_map(|&f| (0..128).map(move |band| ours[band * 128 + f as usize]))
            .collect();
        let diff = max_abs_diff(&picked, &expected);
        eprintln!("ast {name}: max abs diff {diff:e}");
        assert!(diff <= 1e-4, "{name}: {diff}");
    }

    let device = Device::flex();
    let embedder = FolderEmbedder::load(&folder, None, &device).unwrap();
    assert_eq!(embedder.modality(), Modality::Audio);
    let files: Vec<_> = entries.iter().filter_map(|e| e.audio.clone()).collect();
    let pooled = embedder.embed(&files, 3, &device, &mut |_, _| {}).unwrap();
    for (name, ours) in names.iter().zip(&pooled) {
        let (expected, _) = fixture.f32(&format!("{name}.pooled"));
        let diff = max_abs_diff(ours, &expected);
        eprintln!("ast {name}: pooled max abs diff {diff:e}");
        assert!(diff <= 1e-4, "{name}: {diff}");
    }
}
