//! Video for polymodal: decoding with FFmpeg (through video-rs), metadata,
//! frame sampling strategies that seek, audio tracks, H.264 encoding, and a
//! per-frame encoder with temporal pooling.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::Encoder;
//! use polymodal_image::ConvEncoderConfig;
//! use polymodal_video::FrameEncoderConfig;
//!
//! // With a file: let frames = polymodal_video::sample_uniform("clip.mp4", 8)?;
//! let device = Device::flex();
//! let clips = Tensor::<5>::zeros([2, 8, 3, 32, 32], &device); // [batch, frames, c, h, w]
//! let encoder = FrameEncoderConfig::new(ConvEncoderConfig::new(3).with_dim(32)).init(&device);
//! let embeddings = encoder.encode(&clips);
//! assert_eq!(embeddings.sequence.dims(), [2, 8, 32]);
//! ```

mod audio;
mod decode;
mod encoder;
mod reader;
mod sample;

pub use audio::load_audio_track;
pub use decode::{decode_all, encode_mp4, probe, sample_uniform};
pub use encoder::{FrameEncoder, FrameEncoderConfig};
pub use reader::{VideoFrame, VideoInfo, VideoReader};
pub use sample::{Sampling, Strategy, sample_frames, uniform_indices};
