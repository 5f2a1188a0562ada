//! Transcribes audio files with a Whisper folder and says where the time
//! went (features, encoder, decoding), one window per file.
//!
//! ```sh
//! cargo run --release -p polymodal-audio --example transcribe -- \
//!     ../shared/models/whisper-tiny.en ../shared/data/speech/audioeval/en/*.wav
//! ```

use std::time::Instant;

use burn::prelude::*;
use polymodal_audio::{LoadOptions, Whisper, load};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: transcribe WHISPER_DIR FILE...")?;
    let device = Device::flex();
    let (whisper, _) = Whisper::load(&model, &device)?;
    for file in args {
        let samples = load(&file, &LoadOptions::mono_at(16_000))?.samples;
        let start = Instant::now();
        let features = whisper.features(&samples)?;
        let features_done = start.elapsed();
        let encoded = whisper.encoder().forward(features.clone())?;
        encoded.into_data();
        let encoder_done = start.elapsed();
        let decoded = whisper.greedy(features)?.remove(0);
        // greedy() runs the encoder again: its time counts once.
        let decoding = start.elapsed() - encoder_done - (encoder_done - features_done);
        println!(
            "{file}: {:?}\n  features {:.0} ms, encoder {:.0} ms, decoding {:.0} ms for {} tokens",
            whisper.decode(&decoded.tokens)?,
            features_done.as_secs_f64() * 1e3,
            (encoder_done - features_done).as_secs_f64() * 1e3,
            decoding.as_secs_f64() * 1e3,
            decoded.tokens.len()
        );
    }
    Ok(())
}
