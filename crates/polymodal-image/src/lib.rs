//! Images for polymodal: decoding with `image` (PNG, JPEG, WebP, GIF, BMP,
//! TIFF; format from the content; EXIF orientation applied), Pillow-exact
//! resizing, the CLIP / ViT / ImageNet preprocessing presets, seeded
//! augmentations, and encoders: a small CNN for small images, ResNet-18/34/50
//! (torchvision weights) and ViT (Hugging Face `ViTModel` weights). See
//! `docs/media.md` and `docs/encoders.md`.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::Encoder;
//! use polymodal_image::{ConvEncoderConfig, ImagePreprocess, load_rgb};
//!
//! // A 64 x 48 photo saved as PNG (any supported format loads the same way).
//! let path = std::env::temp_dir().join(format!("polymodal-doc-{}.png", std::process::id()));
//! image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90])).save(&path).unwrap();
//!
//! // Hugging Face's CLIPImageProcessor at 32 x 32: [3, 32, 32] f32.
//! let photo = load_rgb(&path)?;
//! let values = ImagePreprocess::clip(32).apply(&photo)?;
//! let device = Device::flex();
//! let batch = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 32, 32]), &device);
//! let encoder = ConvEncoderConfig::new(3).with_dim(32).init(&device);
//! assert_eq!(encoder.encode(&batch)?.pooled.dims(), [1, 32]);
//! # std::fs::remove_file(path).ok();
//! # Ok::<(), polymodal_core::Error>(())
//! ```
//!
//! A ResNet-18 backbone (here freshly initialised; `ResNet::load` reads
//! torchvision weights saved as safetensors) gives one 512-d vector per image
//! and a token per cell of its last feature map:
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::Encoder;
//! use polymodal_image::ResNetConfig;
//!
//! let device = Device::flex();
//! let resnet = ResNetConfig::resnet18().init(&device)?;
//! let images = Tensor::<4>::zeros([1, 3, 64, 64], &device);
//! let embeddings = resnet.encode(&images)?;
//! assert_eq!(embeddings.pooled.dims(), [1, 512]);
//! assert_eq!(embeddings.sequence.dims(), [1, 4, 512]); // a 2 × 2 map
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod augment;
mod clip_vision;
mod cnn;
mod decode;
#[cfg(feature = "wgpu")]
pub mod kernel;
mod preprocess;
mod registry;
mod resize;
mod resnet;
mod vit;

pub use augment::{Augment, ColorJitter, RandomResizedCrop};
pub use clip_vision::{ClipVision, ClipVisionConfig, clip_layers};
pub use cnn::{ConvEncoder, ConvEncoderConfig};
pub use decode::{MAX_BYTES, MAX_SIDE, decode_rgb, load_rgb};
pub use preprocess::{ImagePreprocess, Normalize, ResizeMode};
pub use registry::{AnyImageEncoder, ImageEncoderKind, ImageEncoderSizes};
pub use resize::{CropBox, Filter, PassWeights, pass_weights, resize_rgb, shorter_side_size};
pub use resnet::{ResNet, ResNetConfig};
pub use vit::{Vit, VitConfig, VitOutput};
