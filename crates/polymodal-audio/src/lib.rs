//! Audio for polymodal: decoding with symphonia (WAV, FLAC, MP3, Ogg Vorbis,
//! AAC in MP4), streaming reads of a time window, resampling (rubato), mel
//! spectrograms with librosa's conventions, MFCC, Whisper's input features,
//! and encoders: a CNN over log-mel spectrograms, the Audio Spectrogram
//! Transformer and Whisper's encoder (Hugging Face weights). See
//! `docs/media.md` and `docs/encoders.md`.
//!
//! From a file to a tensor:
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_audio::{LoadOptions, WhisperFeatures, load, write_wav_pcm16};
//!
//! // Two seconds of a 440 Hz tone at 44.1 kHz, written as a WAV file.
//! let path = std::env::temp_dir().join(format!("polymodal-doc-{}.wav", std::process::id()));
//! let tone: Vec<f32> = (0..88_200).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin() * 0.5).collect();
//! write_wav_pcm16(&path, &tone, 44_100, 1)?;
//!
//! // Like librosa.load(path, sr=16000, mono=True, offset=0.5, duration=1.0).
//! let options = LoadOptions { offset_secs: 0.5, duration_secs: Some(1.0), ..LoadOptions::mono_at(16_000) };
//! let clip = load(&path, &options)?;
//! assert_eq!((clip.sample_rate, clip.frames()), (16_000, 16_000));
//!
//! // Whisper's 80 x 3000 log-mel input, as a [1, 80, 3000] tensor.
//! let whisper = WhisperFeatures::new()?;
//! let features = whisper.compute(&clip.samples)?;
//! let input = Tensor::<3>::from_data(TensorData::new(features, [1, 80, whisper.frames()]), &Device::flex());
//! assert_eq!(input.dims(), [1, 80, 3000]);
//! # std::fs::remove_file(path).ok();
//! # Ok::<(), polymodal_core::Error>(())
//! ```
//!
//! Encoding a spectrogram:
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_audio::{MelConfig, MelSpectrogram, SpectrogramEncoderConfig};
//! use polymodal_core::Encoder;
//!
//! let tone: Vec<f32> = (0..4000).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 8000.0).sin()).collect();
//! let mel = MelSpectrogram::new(MelConfig::librosa(8000, 256, 128, 32))?;
//! let (values, frames) = mel.compute(&tone)?;
//! let device = Device::flex();
//! let batch = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 32, frames]), &device);
//! let encoder = SpectrogramEncoderConfig::new().with_dim(32).init(&device);
//! assert_eq!(encoder.encode(&batch)?.pooled.dims(), [1, 32]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod ast;
mod cnn;
mod decode;
#[cfg(feature = "wgpu")]
pub mod kernel;
mod mel;
mod mfcc;
mod registry;
mod resample;
mod transcribe;
mod wav;
mod whisper;
mod whisper_decoder;
mod whisper_encoder;

pub use ast::{Ast, AstConfig, AstFeatureConfig};
pub use cnn::{SpectrogramEncoder, SpectrogramEncoderConfig};
pub use decode::{
    AudioClip, AudioInfo, AudioReader, ClipBuilder, LoadOptions, SampleSource, SampleStream,
    SliceSource, decode_bytes, decode_file, downmix, load,
};
pub use mel::{LogScale, MelConfig, MelScale, MelSpectrogram, PadMode, Window, reflect_indices};
pub use mfcc::Mfcc;
pub use registry::{AnyAudioEncoder, AudioEncoderKind, AudioEncoderSizes, layout};
pub use resample::{Resampler, resample};
pub use transcribe::{
    DecodeOptions, Decoded, Progress, Segment, SubtitleFormat, TIME_PRECISION, Task, Transcript,
    Whisper, WhisperGenerationConfig, compression_ratio, subtitles,
};
pub use wav::write_wav_pcm16;
pub use whisper::{FrameBlock, WhisperFeatures, WhisperFrames};
pub use whisper_decoder::{DecoderCache, WhisperDecoder, WhisperDecoderConfig};
pub use whisper_encoder::{WhisperEncoder, WhisperEncoderConfig, audio_positions};
