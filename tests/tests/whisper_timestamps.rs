//! Timestamps and long-form transcription against transformers, on the real
//! whisper-tiny.en checkpoint and speech clips in the shared folder: the
//! same segments (tokens with their timestamp tokens, start and end times)
//! for each clip alone and for long inputs made of them, greedy, with 5
//! beams, with OpenAI's silence thresholds and with each window prompted
//! with the text before it (fixtures:
//! `scripts/parity/whisper_timestamps.py`).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use polymodal::audio::{DecodeOptions, LoadOptions, Segment, SliceSource, Whisper, load};
use polymodal_tests::{shared_dir, token_ids};
use serde_json::Value;

fn fixture() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/whisper_timestamps.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The shared folder, the fixture and the model it names, on the CPU (none
/// when the shared folder is absent outside CI).
fn setup() -> Option<(PathBuf, Value, Whisper)> {
    let shared = shared_dir()?;
    let fixture = fixture();
    let model_dir = shared.join(fixture["model"].as_str().unwrap());
    let (model, _) = Whisper::load(model_dir, &Device::flex()).unwrap();
    Some((shared, fixture, model))
}

fn clip(shared: &Path, file: &str) -> Vec<f32> {
    load(shared.join(file), &LoadOptions::mono_at(16_000))
        .unwrap()
        .samples
}

/// A long input of the fixture: its parts (files, seconds of silence) one
/// after another.
fn joined(shared: &Path, parts: &Value) -> Vec<f32> {
    let mut samples = Vec::new();
    for part in parts.as_array().unwrap() {
        match part.get("file") {
            Some(file) => samples.extend(clip(shared, file.as_str().unwrap())),
            None => {
                let secs = part["silence"].as_f64().unwrap();
                samples.resize(samples.len() + (secs * 16_000.0) as usize, 0.0);
            }
        }
    }
    samples
}

/// The options of a fixture case, by its name.
fn options(case: &str) -> DecodeOptions {
    match case {
        "greedy" => DecodeOptions::plain(),
        "beam" => DecodeOptions::plain().with_beams(5),
        "greedy_thresholds" => DecodeOptions {
            no_speech_threshold: Some(0.6),
            logprob_threshold: Some(-1.0),
            ..DecodeOptions::plain()
        },
        "greedy_condition" => DecodeOptions {
            condition_on_previous_text: true,
            ..DecodeOptions::plain()
        },
        "beam_condition" => DecodeOptions {
            condition_on_previous_text: true,
            ..DecodeOptions::plain().with_beams(5)
        },
        other => panic!("unknown case {other}"),
    }
}

/// Asserts `segments` are the fixture's: same tokens, text and times.
fn assert_same(what: &str, segments: &[Segment], expected: &Value) {
    let expected = expected.as_array().unwrap();
    let texts = |s: &[Segment]| s.iter().map(|s| s.text.clone()).collect::<Vec<_>>();
    assert_eq!(
        segments.len(),
        expected.len(),
        "{what}: {:?} vs {expected:?}",
        texts(segments)
    );
    for (segment, reference) in segments.iter().zip(expected) {
        let tokens = token_ids(&reference["tokens"]);
        assert_eq!(segment.tokens, tokens, "{what}: {}", segment.text);
        assert_eq!(segment.text, reference["text"].as_str().unwrap(), "{what}");
        for (ours, theirs) in [
            (segment.start_secs, &reference["start"]),
            (segment.end_secs, &reference["end"]),
        ] {
            let theirs = theirs.as_f64().unwrap();
            assert!(
                (ours - theirs).abs() < 1e-5,
                "{what}: {ours} s vs {theirs} s"
            );
        }
    }
}

#[test]
fn timestamps_of_each_clip_are_those_of_transformers() {
    let Some((shared, fixture, mut model)) = setup() else {
        return;
    };
    for case in ["greedy", "beam"] {
        model = model.with_options(options(case)).unwrap();
        for clip_fixture in fixture["short"].as_array().unwrap() {
            let file = clip_fixture["file"].as_str().unwrap();
            let segments = model.transcribe_long(&clip(&shared, file)).unwrap();
            assert_same(&format!("{file} {case}"), &segments, &clip_fixture[case]);
        }
    }
}

#[test]
fn long_inputs_are_transcribed_window_after_window_as_transformers_does() {
    let Some((shared, fixture, mut model)) = setup() else {
        return;
    };
    for (name, input) in fixture["long"].as_object().unwrap() {
        let samples = joined(&shared, &input["parts"]);
        assert_eq!(samples.len() as u64, input["samples"].as_u64().unwrap());
        for (case, expected) in input["cases"].as_object().unwrap() {
            model = model.with_options(options(case)).unwrap();
            let segments = model.transcribe_long(&samples).unwrap();
            assert_same(&format!("{name} {case}"), &segments, expected);
        }
    }
}

/// Whisper's thresholds keep tiny.en's " you" in a window of digital
/// silence (the fixture's `silence_first`); the default options do not
/// decode such windows, and the speech after them keeps its times.
#[test]
fn windows_of_digital_silence_give_no_text_by_default() {
    let Some((shared, fixture, model)) = setup() else {
        return;
    };
    let input = &fixture["long"]["silence_first"];
    let reference = &input["cases"]["greedy_thresholds"];
    assert_eq!(
        reference[0]["text"], " you",
        "the fixture shows the problem"
    );
    let segments = model
        .transcribe_long(&joined(&shared, &input["parts"]))
        .unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(segments[0].text, reference[1]["text"].as_str().unwrap());
    assert_eq!(
        segments[0].tokens.len(),
        reference[1]["tokens"].as_array().unwrap().len()
    );
    assert!((segments[0].start_secs - 30.0).abs() < 1e-9);
}

/// A window whose text fails the thresholds is decoded again at each
/// higher temperature in turn (sampling, reproducible from the seed), and
/// the last try is kept when none passes.
#[test]
fn failing_windows_fall_back_to_higher_temperatures() {
    let Some((shared, _, model)) = setup() else {
        return;
    };
    let speech = clip(&shared, "data/speech/audioeval/en/quick_brown_fox.wav");
    // No text is this likely: every temperature is tried.
    let unreachable = DecodeOptions {
        temperatures: vec![0.0, 0.5, 1.0],
        logprob_threshold: Some(-1e-4),
        no_speech_threshold: None,
        ..DecodeOptions::default()
    };
    let model = model.with_options(unreachable.clone()).unwrap();
    let first = model.transcribe_long(&speech).unwrap();
    assert!(!first.is_empty());
    assert!(first.iter().all(|s| s.temperature == 1.0), "{first:?}");
    assert_eq!(model.transcribe_long(&speech).unwrap(), first);
    // Text that passes stays at temperature 0.
    let model = model.with_options(DecodeOptions::default()).unwrap();
    let passed = model.transcribe_long(&speech).unwrap();
    assert!(passed.iter().all(|s| s.temperature == 0.0), "{passed:?}");
    assert_eq!(
        passed[0].text,
        " The quick brown fox jumps over the lazy dog."
    );
    assert!(passed[0].compression_ratio < 2.4 && passed[0].avg_logprob > -1.0);
}

/// Read from a stream window by window (and from a file on disk), long
/// input gives transformers' segments too: the streamed features are the
/// whole input's.
#[test]
fn streamed_long_input_gives_the_same_segments() {
    let Some((shared, fixture, mut model)) = setup() else {
        return;
    };
    let input = &fixture["long"]["speech"];
    let samples = joined(&shared, &input["parts"]);
    model = model.with_options(options("greedy")).unwrap();
    let streamed = model
        .transcribe_source(|| Ok(SliceSource::new(&samples, 12_345)), |_| {})
        .unwrap();
    assert_same(
        "streamed speech greedy",
        &streamed,
        &input["cases"]["greedy"],
    );

    // From a file: the same as the file's samples held whole.
    let path = std::env::temp_dir().join(format!("polymodal-stream-{}.wav", std::process::id()));
    polymodal::audio::write_wav_pcm16(&path, &samples[..40 * 16_000], 16_000, 1).unwrap();
    let mut seen = Vec::new();
    let from_file = model
        .transcribe_file(&path, |p| seen.push(p.done_secs))
        .unwrap();
    let held = model
        .transcribe_long(&clip(&shared, path.to_str().unwrap()))
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(from_file, held);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen.last() == Some(&40.0),
        "{seen:?}"
    );
}
