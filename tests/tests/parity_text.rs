//! Tokenisation against Python `tokenizers` on a varied sample (accents,
//! CJK, emoji, URLs, whitespace, an empty and an over-long text), with the
//! pretrained all-MiniLM-L6-v2 tokenizer of the shared folder and a byte-level
//! BPE tokenizer. Fixtures: `scripts/parity/text.py`.

use std::path::PathBuf;

use polymodal::text::{EncodedBatch, Padding, Side, TextTokenizer, Truncation};
use polymodal_tests::shared_dir;
use serde_json::Value;

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/text.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn texts(fixture: &Value) -> Vec<String> {
    serde_json::from_value(fixture["sample"].clone()).unwrap()
}

/// Our byte offset in `text` as Python's char offset.
fn char_offset(text: &str, byte: usize) -> usize {
    text[..byte].chars().count()
}

/// Compares a batch with the fixture's `case`. `inputs[row]` holds the
/// text of each segment (one for single texts, two for pairs): token
/// offsets refer to the text of their type id.
fn check(case: &str, ours: &EncodedBatch, inputs: &[Vec<String>], fixture: &Value) {
    let expected = fixture["cases"][case].as_array().unwrap();
    assert_eq!(ours.ids.len(), expected.len(), "{case}");
    for (row, want) in expected.iter().enumerate() {
        let field =
            |name: &str| -> Vec<u32> { serde_json::from_value(want[name].clone()).unwrap() };
        let first: String = inputs[row][0].chars().take(30).collect();
        let what = format!("{case} row {row} ({first:?})");
        assert_eq!(ours.ids[row], field("ids"), "{what}: ids");
        assert_eq!(ours.type_ids[row], field("type_ids"), "{what}: type ids");
        assert_eq!(
            ours.attention_mask[row],
            field("attention_mask"),
            "{what}: mask"
        );
        assert_eq!(
            ours.special_tokens_mask[row],
            field("special_tokens_mask"),
            "{what}: special"
        );
        // Zipped below: one type id per offset, or offsets would be dropped.
        assert_eq!(
            ours.offsets[row].len(),
            ours.type_ids[row].len(),
            "{what}: {} offsets but {} type ids",
            ours.offsets[row].len(),
            ours.type_ids[row].len()
        );
        let offsets: Vec<(usize, usize)> = ours.offsets[row]
            .iter()
            .zip(&ours.type_ids[row])
            .map(|(&(a, b), &t)| {
                let text = &inputs[row][(t as usize).min(inputs[row].len() - 1)];
                (char_offset(text, a), char_offset(text, b))
            })
            .collect();
        let want: Vec<(usize, usize)> = serde_json::from_value(want["offsets"].clone()).unwrap();
        assert_eq!(offsets, want, "{what}: offsets");
    }
}

/// Single texts as one-segment inputs for [`check`].
fn segments(texts: &[String]) -> Vec<Vec<String>> {
    texts.iter().map(|t| vec![t.clone()]).collect()
}

fn minilm() -> Option<PathBuf> {
    Some(shared_dir()?.join("models/all-MiniLM-L6-v2/tokenizer.json"))
}

#[test]
fn minilm_as_saved_pads_to_128_like_python() {
    let Some(path) = minilm() else { return };
    let fixture = fixture();
    let sample = texts(&fixture);
    let tokenizer = TextTokenizer::from_file_as_saved(&path).unwrap();
    assert_eq!(tokenizer.padding(), Padding::Fixed(128));
    let batch = tokenizer.encode_batch(&sample).unwrap();
    check("minilm_as_saved", &batch, &segments(&sample), &fixture);
}

#[test]
fn minilm_with_our_policies_matches_python() {
    let Some(path) = minilm() else { return };
    let fixture = fixture();
    let sample = texts(&fixture);
    let longest = TextTokenizer::from_file(&path, 32).unwrap();
    check(
        "minilm_longest_32",
        &longest.encode_batch(&sample).unwrap(),
        &segments(&sample),
        &fixture,
    );

    let pairs: Vec<(String, String)> = serde_json::from_value(fixture["pairs"].clone()).unwrap();
    let pair_segments: Vec<Vec<String>> = pairs
        .iter()
        .map(|(a, b)| vec![a.clone(), b.clone()])
        .collect();
    let batch = longest.encode_pairs(&pairs).unwrap();
    check("minilm_pairs_longest_32", &batch, &pair_segments, &fixture);

    let unpadded = TextTokenizer::from_file_as_saved(&path)
        .unwrap()
        .with_padding(Padding::None)
        .unwrap()
        .with_truncation(Some(Truncation {
            side: Side::Left,
            ..Truncation::at(16)
        }))
        .unwrap();
    check(
        "minilm_unpadded_left16",
        &unpadded.encode_batch(&sample).unwrap(),
        &segments(&sample),
        &fixture,
    );
}

#[test]
fn byte_level_bpe_matches_python() {
    let fixture = fixture();
    let sample = texts(&fixture);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/bpe-tokenizer.json");
    let tokenizer = TextTokenizer::from_file_as_saved(&path).unwrap();
    check(
        "bpe",
        &tokenizer.encode_batch(&sample).unwrap(),
        &segments(&sample),
        &fixture,
    );
}
