//! Whisper's decoder and greedy decoding against transformers, on the real
//! whisper-tiny.en checkpoint and speech clips in the shared folder: the
//! same generated tokens and text for every clip, and the decoder's logits
//! at the first steps within 1e-3 (fixtures: `scripts/parity/whisper_decode.py`).

use burn::prelude::*;
use polymodal::audio::{DecodeOptions, LoadOptions, Whisper, load};
use polymodal_tests::{shared_dir, token_ids as ids};
use serde_json::Value;

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/parity/whisper_decode.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The clip as 16 kHz mono: a file of the shared folder (a video's audio
/// track), or three seconds of digital silence.
fn samples(shared: &std::path::Path, file: &str) -> Vec<f32> {
    if file == "silence" {
        return vec![0.0; 48_000];
    }
    let options = LoadOptions::mono_at(16_000);
    match load(shared.join(file), &options) {
        Ok(clip) => clip.samples,
        Err(_) => {
            polymodal::video::load_audio_track(shared.join(file), &options)
                .unwrap()
                .samples
        }
    }
}

#[test]
fn greedy_decoding_gives_the_tokens_and_logits_of_transformers() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let fixture = fixture();
    let device = Device::flex();
    let (model, report) =
        Whisper::load(shared.join(fixture["model"].as_str().unwrap()), &device).unwrap();
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert_eq!(model.prompt().unwrap(), ids(&fixture["prompt"]));
    let clips = fixture["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 7);
    let mut largest = 0.0f32;
    for clip in clips {
        let file = clip["file"].as_str().unwrap();
        let features = model.features(&samples(&shared, file)).unwrap();
        // Input decoded by other libraries (the soundtrack: ffmpeg's resampler
        // for the fixture) is compared loosely.
        let exact = clip["exact"].as_bool().unwrap();
        let tolerance = if exact { 1e-3 } else { 0.05 };

        // The logits of the first steps, given the reference tokens before them.
        let expected = ids(&clip["tokens"]);
        let encoded = model.encoder().forward(features.clone()).unwrap();
        let mut cache = model.decoder().cache(encoded).unwrap();
        let mut input = model.prompt().unwrap();
        let steps = if exact {
            clip["steps"].as_array().unwrap().as_slice()
        } else {
            &[]
        };
        for (step, reference) in steps.iter().enumerate() {
            let width = input.len();
            let tokens: Vec<i64> = input.iter().map(|&t| t as i64).collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, width]), &device);
            let logits = model.decoder().step(tokens, &mut cache).unwrap();
            let last = logits
                .narrow(1, width - 1, 1)
                .try_into_vec_as::<f32>()
                .unwrap();
            let top = ids(&reference["ids"]);
            let values = reference["logits"].as_array().unwrap();
            for (id, value) in top.iter().zip(values) {
                let (ours, theirs) = (last[*id as usize], value.as_f64().unwrap() as f32);
                largest = largest.max((ours - theirs).abs());
                assert!(
                    (ours - theirs).abs() < 1e-3,
                    "{file}, step {step}, token {id}: {ours} vs transformers' {theirs}"
                );
            }
            input = vec![expected[step]];
        }

        // Greedy decoding: the same tokens, the same text, the same scores.
        let decoded = model.greedy(features).unwrap().remove(0);
        assert_eq!(decoded.tokens, expected, "{file}");
        let text = model.decode(&decoded.tokens).unwrap();
        assert_eq!(text, clip["text"].as_str().unwrap(), "{file}");
        // Beam search with five beams: transformers' tokens too (they differ
        // from greedy decoding's on two clips, and run to the position limit
        // on silence).
        let features = model.features(&samples(&shared, file)).unwrap();
        let beam = model.beam_search(features, 5).unwrap();
        assert_eq!(
            beam.tokens,
            ids(&clip["beam_tokens"]),
            "{file}: beam search"
        );
        assert_eq!(
            model.decode(&beam.tokens).unwrap(),
            clip["beam_text"].as_str().unwrap(),
            "{file}: beam search"
        );
        let score = |name: &str| clip[name].as_f64().unwrap() as f32;
        let no_speech = (decoded.no_speech_prob - score("no_speech_prob")).abs();
        assert!(
            no_speech < tolerance,
            "{file}: no-speech probability off by {no_speech}"
        );
        let logprob = (decoded.avg_logprob - score("avg_logprob")).abs();
        assert!(
            logprob < tolerance,
            "{file}: mean log-probability off by {logprob}"
        );
    }
    eprintln!("largest logit difference from transformers: {largest:e}");
}

#[test]
fn transcription_refuses_bad_input() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let device = Device::flex();
    let (model, _) = Whisper::load(shared.join("models/whisper-tiny.en"), &device).unwrap();
    let error = model.transcribe(&[0.0, f32::NAN, 0.1]).unwrap_err();
    assert!(error.to_string().contains("NaN"), "{error}");
    // Features of the wrong size name what the encoder expects.
    let short = Tensor::<3>::zeros([1, 80, 100], &device);
    let error = model.greedy(short).unwrap_err().to_string();
    assert!(error.contains("80 mel bins × 3000 frames"), "{error}");
    // A folder without a decoder configuration is a clear error.
    let error = Whisper::load(shared.join("models/all-MiniLM-L6-v2"), &device)
        .unwrap_err()
        .to_string();
    assert!(error.contains("generation_config.json"), "{error}");
}

/// On a wgpu device (lavapipe in CI) decoding gives the same tokens.
#[test]
fn greedy_decoding_on_wgpu_gives_the_same_tokens() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let Some(gpu) = polymodal::wgpu::wgpu_for_tests() else {
        return;
    };
    let fixture = fixture();
    let (model, _) = Whisper::load(shared.join(fixture["model"].as_str().unwrap()), &gpu).unwrap();
    for clip in &fixture["clips"].as_array().unwrap()[..2] {
        let file = clip["file"].as_str().unwrap();
        let transcript = model.transcribe(&samples(&shared, file)).unwrap();
        assert_eq!(transcript.decoded.tokens, ids(&clip["tokens"]), "{file}");
        assert_eq!(transcript.text, clip["text"].as_str().unwrap(), "{file}");
    }
    // Beam search on the clip where it differs from greedy decoding.
    let counting = &fixture["clips"][1];
    let file = counting["file"].as_str().unwrap();
    let model = model.with_beams(5).unwrap();
    let transcript = model.transcribe(&samples(&shared, file)).unwrap();
    assert_eq!(
        transcript.decoded.tokens,
        ids(&counting["beam_tokens"]),
        "{file}"
    );
}

/// Silence gives no text and music no more than the reference invents.
/// Whisper's own rule (no-speech probability above 0.6 with a mean
/// log-probability below -1) keeps tiny.en's " you" on digital silence, so
/// silent windows are not decoded at all; on Big Buck Bunny's soundtrack
/// the rule drops faster-whisper's one segment, "Mmm." (its timestamped
/// decoding scores −1.38 with a no-speech probability of 0.61).
#[test]
fn silence_gives_no_text_and_music_little() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let device = Device::flex();
    let (model, _) = Whisper::load(shared.join("models/whisper-tiny.en"), &device).unwrap();
    let silence = samples(&shared, "silence");
    let decoded = model.transcribe(&silence).unwrap();
    assert_eq!(decoded.text, " you");
    assert!(decoded.decoded.no_speech_prob > 0.9, "{decoded:?}");
    assert!(!decoded.is_silence(), "{decoded:?}");
    assert!(model.transcribe_long(&silence).unwrap().is_empty());
    // Quiet noise is not digital silence: it is decoded.
    let hiss: Vec<f32> = (0..48_000)
        .map(|i| ((i * 7919) % 97) as f32 * 2e-5)
        .collect();
    assert!(hiss.iter().any(|s| s.abs() >= Whisper::SILENT_PEAK));

    let music = samples(&shared, "data/media/video/bigbuckbunny.mp4");
    // Whisper's rule drops the music's window by default; decoded plainly
    // (transformers' default) it is the one segment faster-whisper invents.
    let segments = model.transcribe_long(&music).unwrap();
    assert!(segments.is_empty(), "{segments:?}");
    let plain = model
        .with_options(DecodeOptions::plain())
        .unwrap()
        .transcribe_long(&music)
        .unwrap();
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!(plain[0].text, " Mmm.");
    assert_eq!(plain[0].start_secs, 0.0);
    assert!(
        plain[0].no_speech_prob > 0.6 && plain[0].avg_logprob < -1.0,
        "{plain:?}"
    );
}
