//! Any bytes as a `tokenizer.json`; when one loads, any text through it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polymodal_text::TextTokenizer;

fuzz_target!(
    // polymodal catches the panics of third-party decoders (symphonia,
    // tokenizers) on malformed input and returns errors; libfuzzer-sys's hook
    // would abort on those caught panics. Keep printing them, without
    // aborting: a panic polymodal does not catch still aborts the process
    // when it reaches the fuzzer's entry point.
    init: std::panic::set_hook(Box::new(|info| eprintln!("caught? {info}"))),
    |data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (json, text) = data.split_at(split);
    let path = std::env::temp_dir().join(format!("polymodal-fuzz-{}.json", std::process::id()));
    std::fs::write(&path, json).expect("temp file");
    if let Ok(tokenizer) = TextTokenizer::from_file(&path, 64) {
        let text = String::from_utf8_lossy(text);
        if let Ok(batch) = tokenizer.encode_batch(&[text.as_ref(), "a fixed sentence"]) {
            assert!(batch.ids.iter().all(|row| row.len() <= 64));
        }
    }
});
