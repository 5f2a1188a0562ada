//! Multilingual Whisper against transformers: language detection, the
//! prompt with language and task tokens, transcription and translation,
//! with and without timestamps, token for token. No multilingual
//! checkpoint is in the shared folder, so the model is a tiny random one
//! with the real vocabulary and special tokens, made by
//! `scripts/parity/whisper_multilingual.py` (in
//! `tests/fixtures/whisper-random-multilingual/`); its tokens mean nothing,
//! the decoding is what is checked.

use std::path::Path;

use burn::prelude::*;
use polymodal::audio::{DecodeOptions, LoadOptions, Task, Whisper, load};
use polymodal_tests::{shared_dir, token_ids as ids};
use serde_json::Value;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

/// The options of a fixture case.
fn options(case: &str) -> DecodeOptions {
    let (language, task) = match case {
        "detect_transcribe" => (None, Task::Transcribe),
        "french_transcribe" => (Some("fr"), Task::Transcribe),
        "detect_translate" => (None, Task::Translate),
        "spanish_timestamps" => (Some("<|es|>"), Task::Transcribe),
        other => panic!("unknown case {other}"),
    };
    DecodeOptions {
        language: language.map(String::from),
        task,
        ..DecodeOptions::plain()
    }
}

#[test]
fn multilingual_decoding_gives_the_tokens_of_transformers() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let text =
        std::fs::read_to_string(fixtures().join("parity/whisper_multilingual.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let dir = fixtures().join(
        fixture["model"]
            .as_str()
            .unwrap()
            .trim_start_matches("fixtures/"),
    );
    let (mut model, report) = Whisper::load(&dir, &Device::flex()).unwrap();
    assert!(report.unexpected.is_empty(), "{report:?}");
    for clip in fixture["clips"].as_array().unwrap() {
        let file = clip["file"].as_str().unwrap();
        let samples = load(shared.join(file), &LoadOptions::mono_at(16_000))
            .unwrap()
            .samples;
        let heard = model
            .detect_language(model.features(&samples).unwrap())
            .unwrap();
        assert_eq!(heard[0][0].0, clip["detected"].as_str().unwrap(), "{file}");
        let total: f32 = heard[0].iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-4 && heard[0].len() == 99, "{file}");
        for (case, expected) in clip["tokens"].as_object().unwrap() {
            model = model.with_options(options(case)).unwrap();
            let tokens: Vec<u32> = if case.ends_with("timestamps") {
                let segments = model.transcribe_long(&samples).unwrap();
                segments.iter().flat_map(|s| s.tokens.clone()).collect()
            } else {
                model.transcribe(&samples).unwrap().decoded.tokens
            };
            assert_eq!(tokens, ids(expected), "{file} {case}");
        }
    }
}

/// What a multilingual checkpoint or an English-only one cannot do is a
/// clear error.
#[test]
fn languages_and_tasks_are_checked() {
    let dir = fixtures().join("whisper-random-multilingual");
    let device = Device::flex();
    let (model, _) = Whisper::load(&dir, &device).unwrap();
    let klingon = DecodeOptions {
        language: Some("tlh".into()),
        ..DecodeOptions::plain()
    };
    let model = model.with_options(klingon).unwrap();
    let error = model.transcribe(&[0.1; 16_000]).unwrap_err().to_string();
    assert!(
        error.contains("language tlh") && error.contains("fr"),
        "{error}"
    );
    let Some(shared) = shared_dir() else {
        return;
    };
    let (english, _) = Whisper::load(shared.join("models/whisper-tiny.en"), &device).unwrap();
    let translate = DecodeOptions {
        task: Task::Translate,
        ..DecodeOptions::plain()
    };
    let english = english.with_options(translate).unwrap();
    let error = english.transcribe(&[0.1; 16_000]).unwrap_err().to_string();
    assert!(error.contains("English-only"), "{error}");
    let german = DecodeOptions {
        language: Some("de".into()),
        ..DecodeOptions::plain()
    };
    let english = english.with_options(german).unwrap();
    let error = english.transcribe(&[0.1; 16_000]).unwrap_err().to_string();
    assert!(error.contains("English-only"), "{error}");
}

/// A generation config that names a token past the vocabulary, or a
/// multilingual one without its language tokens, is refused at load.
#[test]
fn bad_generation_configs_are_refused() {
    let source = fixtures().join("whisper-random-multilingual");
    let dir = polymodal_tests::scratch_dir("whisper-bad-generation");
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(source.join(name), dir.join(name)).unwrap();
    }
    let text = std::fs::read_to_string(source.join("generation_config.json")).unwrap();
    let good: Value = serde_json::from_str(&text).unwrap();
    let write = |config: &Value| {
        std::fs::write(dir.join("generation_config.json"), config.to_string()).unwrap();
        Whisper::load(&dir, &Device::flex())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let mut past = good.clone();
    past["lang_to_id"]["<|xx|>"] = 999_999.into();
    let error = write(&past);
    assert!(
        error.contains("token 999999, past the vocabulary"),
        "{error}"
    );
    let mut no_languages = good.clone();
    no_languages["lang_to_id"] = serde_json::json!({});
    assert!(write(&no_languages).contains("lang_to_id"));
    std::fs::remove_dir_all(&dir).unwrap();
}
