//! Video frames (u8 RGB, HWC) to model input (resized, cropped, normalised
//! CHW) on the device in two passes, computed in f32 bit-identical to
//! [`ImagePreprocess::apply`](crate::ImagePreprocess::apply) (Pillow's
//! resampling), returned in the device's float type: [`FramePreprocess`].
//!
//! A Burn backend extension ([`FramePreprocessOps`]): the CubeCL kernel for
//! wgpu devices (`cube`), the CPU reference on Flex that runs each frame
//! through `ImagePreprocess::apply` (`cpu`), and the autodiff part that
//! treats the result as a constant (`autodiff`). Behind the `wgpu` feature.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_image::ImagePreprocess;
//! use polymodal_image::kernel::FramePreprocess;
//!
//! // On the CPU here; on a `polymodal_wgpu::wgpu_device(..)?` the kernel runs.
//! let device = Device::flex();
//! let frames = vec![image::RgbImage::new(64, 48); 2];
//! let preprocess = FramePreprocess::new(ImagePreprocess::imagenet(32), 64, 48)?;
//! let input = preprocess.forward(preprocess.pixels(&frames, &device)?)?;
//! assert_eq!(input.dims(), [2, 3, 32, 32]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod autodiff;
mod cpu;
mod cube;

use std::sync::Mutex;

use burn::backend::{Backend, Dispatch, backend_extension, tensor::FloatTensor, tensor::IntTensor};
use burn::prelude::*;
use burn::tensor::DType;
use image::RgbImage;

use polymodal_core::{Error, Result};
use polymodal_wgpu::extension::float_dtype;

use crate::{ImagePreprocess, PassWeights, ResizeMode, pass_weights, shorter_side_size};

/// The frame preprocessing as a backend operation; call it through
/// [`FramePreprocess`].
#[allow(clippy::too_many_arguments)]
#[backend_extension(Flex, Cube, Autodiff)]
pub trait FramePreprocessOps: Backend {
    /// Frames `pixels` `[frames, height·width]` (i32, `r | g << 8 | b << 16`)
    /// → `[frames, channels, out_height, out_width]`: Pillow's two passes
    /// (start, length and weights of each, i32) and the normalisation
    /// (`norm`: three scales, three shifts).
    fn preprocess_frames(
        pixels: IntTensor<Self>,
        horizontal_start: IntTensor<Self>,
        horizontal_len: IntTensor<Self>,
        horizontal_weights: IntTensor<Self>,
        vertical_start: IntTensor<Self>,
        vertical_len: IntTensor<Self>,
        vertical_weights: IntTensor<Self>,
        norm: FloatTensor<Self>,
        shape: FrameShape,
    ) -> FloatTensor<Self>;
}

/// The sizes of one preprocessing launch, and the settings for the CPU
/// reference.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameShape {
    /// The full settings.
    pub config: ImagePreprocess,
    /// Frames in the batch.
    pub frames: usize,
    /// Input frame width.
    pub width: usize,
    /// Input frame height.
    pub height: usize,
    /// Output width.
    pub out_width: usize,
    /// Output height.
    pub out_height: usize,
    /// First source row the vertical pass reads.
    pub first_row: usize,
    /// Source rows the vertical pass reads.
    pub rows: usize,
    /// Row length of the horizontal weights.
    pub horizontal_stride: usize,
    /// Row length of the vertical weights.
    pub vertical_stride: usize,
    /// One output channel, the mean of R, G, B.
    pub grayscale: bool,
}

/// Tables uploaded once per device: start, length and weights of each pass
/// (i32), and the normalisation (three scales, three shifts).
#[derive(Clone)]
struct Tables {
    device: Device,
    horizontal: [Tensor<1, Int>; 3],
    vertical: [Tensor<1, Int>; 3],
    norm: Tensor<1>,
}

/// Preprocessing of video frames of one size on the device.
pub struct FramePreprocess {
    config: ImagePreprocess,
    width: u32,
    height: u32,
    horizontal: PassWeights,
    vertical: PassWeights,
    tables: Mutex<Vec<Tables>>,
}

impl std::fmt::Debug for FramePreprocess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePreprocess")
            .field("config", &self.config)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Output pixels `from..from + count` of `weights`.
fn window(weights: PassWeights, from: usize, count: usize) -> PassWeights {
    let stride = weights.stride;
    PassWeights {
        start: weights.start[from..from + count].to_vec(),
        len: weights.len[from..from + count].to_vec(),
        stride,
        weights: weights.weights[from * stride..(from + count) * stride].to_vec(),
    }
}

impl FramePreprocess {
    /// `config` for frames of `width` × `height` (the weights of both
    /// passes are computed here, once).
    pub fn new(config: ImagePreprocess, width: u32, height: u32) -> Result<Self> {
        let (w, h) = (config.width, config.height);
        if width == 0 || height == 0 || w == 0 || h == 0 {
            return Err(Error::Invalid(format!(
                "cannot preprocess {width}x{height} frames to {w}x{h}"
            )));
        }
        let filter = config.filter;
        let axis = |size: u32, out: u32, scaled: u32, from: u32| {
            window(
                pass_weights(size, 0.0, size as f64, scaled, filter),
                from as usize,
                out as usize,
            )
        };
        let (horizontal, vertical) = if (width, height) == (w, h) {
            // Used as they are, as ImagePreprocess::apply does: one tap each.
            let identity =
                |size| pass_weights(size, 0.0, size as f64, size, crate::Filter::Nearest);
            (identity(width), identity(height))
        } else {
            match config.resize {
                ResizeMode::Exact => (axis(width, w, w, 0), axis(height, h, h, 0)),
                ResizeMode::ShorterSideThenCenterCrop { shorter_side } => {
                    let (sw, sh) = shorter_side_size(width, height, shorter_side);
                    if sw < w || sh < h {
                        return Err(Error::Config(format!(
                            "preprocess: shorter side {shorter_side} is smaller than the {w}x{h} crop"
                        )));
                    }
                    (
                        axis(width, w, sw, (sw - w) / 2),
                        axis(height, h, sh, (sh - h) / 2),
                    )
                }
            }
        };
        Ok(Self {
            config,
            width,
            height,
            horizontal,
            vertical,
            tables: Mutex::new(Vec::new()),
        })
    }

    /// Frames packed for [`FramePreprocess::forward`]: `[frames, height ·
    /// width]` i32, one pixel per value (`r | g << 8 | b << 16`).
    pub fn pixels(&self, frames: &[RgbImage], device: &Device) -> Result<Tensor<2, Int>> {
        if frames.is_empty() {
            return Err(Error::Invalid("no frames to preprocess".into()));
        }
        let mut packed = Vec::with_capacity(frames.len() * (self.width * self.height) as usize);
        for (i, frame) in frames.iter().enumerate() {
            if frame.dimensions() != (self.width, self.height) {
                return Err(Error::Invalid(format!(
                    "frame {i} is {}x{}, the preprocessing was built for {}x{}",
                    frame.width(),
                    frame.height(),
                    self.width,
                    self.height
                )));
            }
            packed.extend(
                frame
                    .pixels()
                    .map(|p| p[0] as i32 | (p[1] as i32) << 8 | (p[2] as i32) << 16),
            );
        }
        let shape = [frames.len(), (self.width * self.height) as usize];
        Ok(Tensor::from_data(TensorData::new(packed, shape), device))
    }

    /// `pixels` from [`FramePreprocess::pixels`] → `[frames, channels,
    /// height, width]` in the device's float dtype (computed in f32): the
    /// two-pass kernel on wgpu, the CPU reference on the CPU backend.
    pub fn forward(&self, pixels: Tensor<2, Int>) -> Result<Tensor<4>> {
        let shape = self.check(&pixels)?;
        let t = self.tables(&pixels.device());
        let [h0, h1, h2] = t.horizontal;
        let [v0, v1, v2] = t.vertical;
        Ok(
            Tensor::<4>::from_dispatch(<Dispatch as FramePreprocessOps>::preprocess_frames(
                pixels.into_dispatch(),
                h0.into_dispatch(),
                h1.into_dispatch(),
                h2.into_dispatch(),
                v0.into_dispatch(),
                v1.into_dispatch(),
                v2.into_dispatch(),
                t.norm.into_dispatch(),
                shape,
            ))
            .cast(float_dtype(&t.device)),
        )
    }

    /// The same with Burn's ops (unpacking, each pass as a matrix product
    /// with rounding, normalisation, stacking): the baseline the kernel is
    /// measured against. In the device's float type, so a value can differ
    /// by one step of 255 from Pillow's integer arithmetic (more in f16).
    pub fn forward_unfused(&self, pixels: Tensor<2, Int>) -> Result<Tensor<4>> {
        let shape = self.check(&pixels)?;
        let t = self.tables(&pixels.device());
        let device = t.device.clone();
        let (n, w, h) = (shape.frames, self.width as usize, self.height as usize);
        let dense = |p: &PassWeights, inputs: usize| -> Tensor<2> {
            // [inputs, outputs]: column i holds output i's weights.
            let mut m = vec![0.0f32; inputs * p.start.len()];
            for (i, (&s, &l)) in p.start.iter().zip(&p.len).enumerate() {
                for k in 0..l {
                    m[(s + k) * p.start.len() + i] = p.weights[i * p.stride + k] as f32 / 4194304.0;
                }
            }
            Tensor::from_data(TensorData::new(m, [inputs, p.start.len()]), &device)
        };
        let round = |x: Tensor<3>| (x + 0.5).floor().clamp(0.0, 255.0);
        let rows = pixels.reshape([n, h, w]).slice([
            0..n,
            shape.first_row..shape.first_row + shape.rows,
            0..w,
        ]);
        let horizontal = dense(&self.horizontal, w).unsqueeze::<3>();
        let vertical = dense(&self.vertical, h)
            .slice([
                shape.first_row..shape.first_row + shape.rows,
                0..shape.out_height,
            ])
            .transpose()
            .unsqueeze::<3>();
        let norm = self.norm();
        let channel = |c: usize| -> Tensor<3> {
            let value = (rows.clone().div_scalar(1 << (8 * c)).remainder_scalar(256)).float();
            let across = round(value.matmul(horizontal.clone()));
            round(vertical.clone().matmul(across))
        };
        let planes: Vec<Tensor<3>> = if shape.grayscale {
            let sum = channel(0) + channel(1) + channel(2);
            vec![sum / 3.0 * norm[0] + norm[3]]
        } else {
            (0..3).map(|c| channel(c) * norm[c] + norm[3 + c]).collect()
        };
        Ok(Tensor::stack(planes, 1))
    }

    fn check(&self, pixels: &Tensor<2, Int>) -> Result<FrameShape> {
        let [frames, count] = pixels.dims();
        if frames == 0 || count != (self.width * self.height) as usize {
            return Err(Error::Invalid(format!(
                "pixels {:?}: expected [frames > 0, {}] for {}x{} frames",
                pixels.dims(),
                self.width * self.height,
                self.width,
                self.height
            )));
        }
        if pixels.dtype() != DType::I32 {
            return Err(Error::Invalid(format!(
                "pixels must be i32 (FramePreprocess::pixels), got {:?}",
                pixels.dtype()
            )));
        }
        let first_row = self.vertical.start[0];
        let last = self
            .vertical
            .start
            .iter()
            .zip(&self.vertical.len)
            .map(|(s, l)| s + l)
            .max()
            .unwrap_or(first_row);
        Ok(FrameShape {
            config: self.config.clone(),
            frames,
            width: self.width as usize,
            height: self.height as usize,
            out_width: self.config.width as usize,
            out_height: self.config.height as usize,
            first_row,
            rows: last - first_row,
            horizontal_stride: self.horizontal.stride,
            vertical_stride: self.vertical.stride,
            grayscale: self.config.grayscale,
        })
    }

    /// (v/255 − mean)/std as v·scale + shift: three scales, three shifts,
    /// computed as `ImagePreprocess::apply` computes them.
    fn norm(&self) -> Vec<f32> {
        let normalize = self.config.normalize;
        let scale = normalize.std.map(|s| 1.0 / (255.0 * s));
        let shift: [f32; 3] = std::array::from_fn(|c| -normalize.mean[c] / normalize.std[c]);
        scale.into_iter().chain(shift).collect()
    }

    fn tables(&self, device: &Device) -> Tables {
        let mut cache = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.iter().find(|t| &t.device == device) {
            return t.clone();
        }
        let ints = |v: Vec<i32>| {
            Tensor::<1, Int>::from_data(TensorData::new(v.clone(), [v.len()]), device)
        };
        let pass = |p: &PassWeights| {
            [
                ints(p.start.iter().map(|&s| s as i32).collect()),
                ints(p.len.iter().map(|&l| l as i32).collect()),
                ints(p.weights.clone()),
            ]
        };
        let norm = self.norm();
        let tables = Tables {
            device: device.clone(),
            horizontal: pass(&self.horizontal),
            vertical: pass(&self.vertical),
            // f32 whatever the device's default: the kernel reads f32.
            norm: Tensor::from_data(
                TensorData::new(norm.to_vec(), [norm.len()]),
                (device, DType::F32),
            ),
        };
        cache.push(tables.clone());
        tables
    }
}
