//! Whisper's text normalisers and the error rates against the reference
//! implementations' outputs (openai-whisper's `EnglishTextNormalizer` and
//! `BasicTextNormalizer`, jiwer's `wer` and `cer`) on tricky strings:
//! contractions, titles, hesitations, tags, spelled-out numbers, ordinals,
//! currencies, percentages, British spellings, diacritics, whitespace.
//! Fixtures: `scripts/parity/normalizer.py`.

use std::path::PathBuf;

use polymodal_text::{BasicTextNormalizer, EnglishTextNormalizer, ErrorCounts};
use serde_json::Value;

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity/normalizer.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every (input, expected) pair of `case` that `normalize` gets wrong.
fn mismatches(case: &str, normalize: impl Fn(&str) -> String) -> Vec<String> {
    let fixture = fixture();
    let pairs = fixture[case].as_array().unwrap();
    assert!(pairs.len() > 30, "{case}: {} strings", pairs.len());
    pairs
        .iter()
        .filter_map(|pair| {
            let (input, expected) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            let ours = normalize(input);
            (ours != expected).then(|| format!("{input:?}: ours {ours:?}, reference {expected:?}"))
        })
        .collect()
}

#[test]
fn the_english_normalizer_writes_what_whisper_writes() {
    let wrong = mismatches("english", |s| EnglishTextNormalizer.normalize(s));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_basic_normalizer_writes_what_whisper_writes() {
    let wrong = mismatches("basic", |s| BasicTextNormalizer::default().normalize(s));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let without_diacritics = BasicTextNormalizer {
        remove_diacritics: true,
        split_letters: false,
    };
    let wrong = mismatches("basic_remove_diacritics", |s| {
        without_diacritics.normalize(s)
    });
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn error_rates_are_jiwers() {
    let fixture = fixture();
    let (mut words, mut chars) = (ErrorCounts::default(), ErrorCounts::default());
    for pair in fixture["pairs"].as_array().unwrap() {
        let (r, h) = (
            pair["reference"].as_str().unwrap(),
            pair["hypothesis"].as_str().unwrap(),
        );
        let (w, c) = (ErrorCounts::words(r, h), ErrorCounts::chars(r, h));
        let close = |ours: Option<f64>, key: &str| {
            let expected = pair[key].as_f64().unwrap();
            assert!(
                (ours.unwrap() - expected).abs() < 1e-12,
                "{key} of {r:?} / {h:?}: {ours:?} vs {expected}"
            );
        };
        close(w.rate(), "wer");
        close(c.rate(), "cer");
        words += w;
        chars += c;
    }
    let corpus = &fixture["corpus"];
    assert!((words.rate().unwrap() - corpus["wer"].as_f64().unwrap()).abs() < 1e-12);
    assert!((chars.rate().unwrap() - corpus["cer"].as_f64().unwrap()).abs() < 1e-12);
}

/// The kinds of edit are told apart, and an empty reference has no rate.
#[test]
fn edits_are_counted_by_kind() {
    let counts = ErrorCounts::words("a b c d", "a x c d e");
    assert_eq!(
        (
            counts.substitutions,
            counts.deletions,
            counts.insertions,
            counts.reference_len
        ),
        (1, 0, 1, 4)
    );
    let counts = ErrorCounts::words("a b c d", "a d");
    assert_eq!((counts.deletions, counts.edits()), (2, 2));
    assert_eq!(ErrorCounts::words("", "something").rate(), None);
    assert_eq!(ErrorCounts::words("", "").rate(), None);
    assert_eq!(ErrorCounts::chars("abc", "abc").rate(), Some(0.0));
}
