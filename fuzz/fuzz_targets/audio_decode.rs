//! Any bytes, with any container hint, through symphonia and the streaming
//! reader: an error or samples, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const HINTS: [Option<&str>; 6] = [None, Some("wav"), Some("flac"), Some("mp3"), Some("ogg"), Some("m4a")];

fuzz_target!(
    // polymodal catches the panics of third-party decoders (symphonia,
    // tokenizers) on malformed input and returns errors; libfuzzer-sys's hook
    // would abort on those caught panics. Keep printing them, without
    // aborting: a panic polymodal does not catch still aborts the process
    // when it reaches the fuzzer's entry point.
    init: std::panic::set_hook(Box::new(|info| eprintln!("caught? {info}"))),
    |data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let hint = HINTS[selector as usize % HINTS.len()];
    if let Ok(clip) = polymodal_audio::decode_bytes(bytes.to_vec(), hint) {
        assert!(clip.channels > 0 && clip.sample_rate > 0);
        assert_eq!(clip.samples.len() % clip.channels, 0);
    }
});
