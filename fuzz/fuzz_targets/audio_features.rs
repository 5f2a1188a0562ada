//! Arbitrary samples (NaN, infinities, tiny and huge values, any length)
//! through resampling, mel, MFCC and Whisper features.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polymodal_audio::{MelConfig, MelSpectrogram, Mfcc, WhisperFeatures, resample};

fuzz_target!(|data: &[u8]| {
    let samples: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let _ = resample(&samples, 1, 8_000, 16_000);
    let _ = resample(&samples, 2, 44_100, 16_000);
    let mel = MelSpectrogram::new(MelConfig::librosa(16_000, 64, 16, 8)).expect("valid");
    if let Ok((values, frames)) = mel.compute(&samples) {
        assert_eq!(values.len(), 8 * frames);
    }
    let mfcc = Mfcc::new(MelConfig::librosa(16_000, 64, 16, 8), 4).expect("valid");
    let _ = mfcc.compute(&samples);
    let whisper = WhisperFeatures::with_chunk_secs(1).expect("valid");
    let _ = whisper.compute(&samples);
});
