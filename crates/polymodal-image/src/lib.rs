//! Images for polymodal: decoding with `image` (format from the content),
//! resizing and normalisation to CHW f32, and a convolutional encoder.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_core::Encoder;
//! use polymodal_image::{ConvEncoderConfig, ImagePreprocess, Normalize};
//!
//! let photo = image::RgbImage::from_pixel(40, 30, image::Rgb([200, 10, 10]));
//! let preprocess = ImagePreprocess { normalize: Normalize::IMAGENET, ..ImagePreprocess::new(32, 32) };
//! let values = preprocess.apply(&photo)?; // or polymodal_image::load_rgb("photo.png")?
//! let device = Device::flex();
//! let batch = Tensor::<4>::from_data(TensorData::new(values, [1, 3, 32, 32]), &device);
//! let encoder = ConvEncoderConfig::new(3).with_dim(32).init(&device);
//! assert_eq!(encoder.encode(&batch).pooled.dims(), [1, 32]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod augment;
mod cnn;
mod decode;
mod preprocess;
mod resize;

pub use augment::{Augment, ColorJitter, RandomResizedCrop};
pub use cnn::{ConvEncoder, ConvEncoderConfig};
pub use decode::{MAX_BYTES, MAX_SIDE, decode_rgb, load_rgb};
pub use preprocess::{ImagePreprocess, Normalize, ResizeMode};
pub use resize::{CropBox, Filter, resize_rgb, shorter_side_size};
