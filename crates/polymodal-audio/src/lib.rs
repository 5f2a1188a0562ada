//! Audio for polymodal: decoding with symphonia (WAV and FLAC), mel
//! spectrograms, and a convolutional spectrogram encoder.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_audio::{MelConfig, MelSpectrogram, SpectrogramEncoderConfig};
//! use polymodal_core::Encoder;
//!
//! // Half a second of a 440 Hz tone at 8 kHz (or polymodal_audio::decode_file("speech.wav")?).
//! let tone: Vec<f32> = (0..4000).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 8000.0).sin()).collect();
//! let mel = MelSpectrogram::new(MelConfig::librosa(8000, 256, 128, 32))?;
//! let (values, frames) = mel.compute(&tone)?;
//! let device = Device::flex();
//! let batch = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 32, frames]), &device);
//! let encoder = SpectrogramEncoderConfig::new().with_dim(32).init(&device);
//! assert_eq!(encoder.encode(&batch).pooled.dims(), [1, 32]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod cnn;
mod decode;
mod mel;
mod mfcc;
mod resample;
mod wav;
mod whisper;

pub use cnn::{SpectrogramEncoder, SpectrogramEncoderConfig};
pub use decode::{
    AudioClip, AudioInfo, AudioReader, LoadOptions, decode_bytes, decode_file, downmix, load,
};
pub use mel::{LogScale, MelConfig, MelScale, MelSpectrogram, PadMode};
pub use mfcc::Mfcc;
pub use resample::{Resampler, resample};
pub use wav::write_wav_pcm16;
pub use whisper::WhisperFeatures;
