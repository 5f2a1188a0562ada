//! Video for polymodal: decoding with FFmpeg (through video-rs), metadata,
//! frame sampling strategies that seek, audio tracks, H.264 encoding, and
//! video encoders: any image encoder per frame, then temporal mean pooling,
//! attention pooling or a temporal Transformer. See `docs/media.md` and
//! `docs/encoders.md`.
//!
//! Everything that reads or writes files ([`VideoReader`], [`sample_frames`],
//! [`probe`], [`load_audio_track`], [`encode_mp4`], ...) needs FFmpeg and
//! comes with the `ffmpeg` feature, on by default. Without it the crate keeps
//! the encoders ([`FrameEncoder`], [`Temporal`]) and the sampling settings
//! ([`Sampling`]), and builds without FFmpeg's libraries.
//!
//! ```
//! # #[cfg(feature = "ffmpeg")] {
//! use burn::prelude::*;
//! use polymodal_core::Encoder;
//! use polymodal_image::{ConvEncoderConfig, ImagePreprocess};
//! use polymodal_video::{FrameEncoderConfig, Sampling, encode_mp4, probe, sample_frames};
//!
//! // A 2-second 32 x 32 clip at 10 fps, encoded as H.264.
//! let path = std::env::temp_dir().join(format!("polymodal-doc-{}.mp4", std::process::id()));
//! let frames: Vec<image::RgbImage> = (0..20u8)
//!     .map(|i| image::RgbImage::from_pixel(32, 32, image::Rgb([i * 12, 0, 255 - i * 12])))
//!     .collect();
//! encode_mp4(&path, &frames, 10.0)?;
//! assert_eq!(probe(&path)?.frame_count, Some(20));
//!
//! // 8 frames spread over the clip, preprocessed: [1, 8, 3, 32, 32].
//! let preprocess = ImagePreprocess::vit(32);
//! let mut values = Vec::new();
//! for frame in sample_frames(&path, &Sampling::uniform(8))? {
//!     values.extend(preprocess.apply(&frame.image)?);
//! }
//! let device = Device::flex();
//! let clips = Tensor::<5>::from_data(TensorData::new(values, [1, 8, 3, 32, 32]), &device);
//! let encoder = FrameEncoderConfig::new(ConvEncoderConfig::new(3).with_dim(32)).init(&device)?;
//! assert_eq!(encoder.encode(&clips)?.sequence.dims(), [1, 8, 32]);
//! # std::fs::remove_file(path).ok();
//! # }
//! # Ok::<(), polymodal_core::Error>(())
//! ```

#[cfg(feature = "ffmpeg")]
mod audio;
#[cfg(feature = "ffmpeg")]
mod decode;
mod encoder;
#[cfg(feature = "ffmpeg")]
mod reader;
mod sample;

#[cfg(feature = "ffmpeg")]
pub use audio::{AudioTrackStream, load_audio_track};
#[cfg(feature = "ffmpeg")]
pub use decode::{decode_all, encode_mp4, probe, sample_uniform};
pub use encoder::{FrameEncoder, FrameEncoderConfig, Temporal, TemporalPooling};
#[cfg(feature = "ffmpeg")]
pub use reader::{VideoFrame, VideoInfo, VideoReader};
#[cfg(feature = "ffmpeg")]
pub use sample::sample_frames;
pub use sample::{MAX_SAMPLED_FRAMES, Sampling, Strategy, uniform_indices};
