//! Resizing RGB images exactly as Pillow does (`Image.resize`), so that
//! preprocessing matches the Python pipelines models were trained with:
//! separable convolution, horizontal pass first, 22-bit fixed-point weights,
//! 8-bit intermediate; nearest neighbour by Pillow's accumulated coordinates.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Result};

/// Resampling filter. When shrinking, the convolution filters widen with the
/// scale factor (antialiasing), as in Pillow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    /// Nearest neighbour (Pillow `NEAREST`).
    Nearest,
    /// Triangle filter (Pillow `BILINEAR`).
    #[default]
    Bilinear,
    /// Cubic convolution with a = -0.5 (Pillow `BICUBIC`).
    Bicubic,
    /// Lanczos with 3 lobes (Pillow `LANCZOS`).
    Lanczos3,
}

impl Filter {
    /// The kernel and its support (radius) at scale 1.
    fn kernel(self) -> (fn(f64) -> f64, f64) {
        match self {
            Self::Nearest => (|_| 1.0, 0.5),
            Self::Bilinear => (triangle, 1.0),
            Self::Bicubic => (cubic, 2.0),
            Self::Lanczos3 => (lanczos3, 3.0),
        }
    }
}

fn triangle(x: f64) -> f64 {
    (1.0 - x.abs()).max(0.0)
}

fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos3(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// A region of an image in pixels (fractional edges allowed, as Pillow's `box`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

impl CropBox {
    /// The whole of an image of `width` x `height`.
    pub fn whole(width: u32, height: u32) -> Self {
        Self {
            left: 0.0,
            top: 0.0,
            width: width as f64,
            height: height as f64,
        }
    }

    fn fits(&self, width: u32, height: u32) -> bool {
        let finite = [self.left, self.top, self.width, self.height]
            .iter()
            .all(|v| v.is_finite());
        finite
            && self.left >= 0.0
            && self.top >= 0.0
            && self.width > 0.0
            && self.height > 0.0
            && self.left + self.width <= width as f64
            && self.top + self.height <= height as f64
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point weights of one pass: for output pixel `i`, source pixels
/// `start[i]..start[i] + len[i]` with weights `weights[i * stride..]`.
struct Weights {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights: Vec<i32>,
}

impl Weights {
    fn new(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Filter) -> Self {
        let (kernel, support) = filter.kernel();
        let scale = (in1 - in0) / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = support * filter_scale;
        let stride = support.ceil() as usize * 2 + 1;
        let mut this = Self {
            start: Vec::with_capacity(out_size),
            len: Vec::with_capacity(out_size),
            stride,
            weights: vec![0; out_size * stride],
        };
        let mut row = vec![0.0f64; stride];
        for i in 0..out_size {
            let center = in0 + (i as f64 + 0.5) * scale;
            // C's (int) truncation, as in Pillow; both values are > -1 here.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64)
                .min(in_size as i64)
                .max(min as i64) as usize;
            let len = (max - min).min(stride);
            let mut total = 0.0;
            for (k, w) in row[..len].iter_mut().enumerate() {
                *w = kernel(((k + min) as f64 - center + 0.5) / filter_scale);
                total += *w;
            }
            for (k, w) in row[..len].iter().enumerate() {
                let w = if total != 0.0 { w / total } else { *w };
                let fixed = w * (1u32 << PRECISION_BITS) as f64;
                this.weights[i * stride + k] = (fixed + 0.5f64.copysign(fixed)) as i32;
            }
            this.start.push(min);
            this.len.push(len);
        }
        this
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        let weights = &self.weights[i * self.stride..i * self.stride + self.len[i]];
        (self.start[i], weights)
    }
}

/// The fixed-point weights of one resampling pass along one axis, in a form
/// other implementations of the same algorithm (polymodal-wgpu's
/// preprocessing kernel) can use: output pixel `i` is
/// `clip8(2^21 + Σ_k weights[i·stride + k] · in[start[i] + k])` for
/// `k < len[i]`, where `clip8(v) = clamp(v >> 22, 0, 255)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PassWeights {
    /// First source pixel of each output pixel.
    pub start: Vec<usize>,
    /// Number of source pixels of each output pixel.
    pub len: Vec<usize>,
    /// Row length of `weights`.
    pub stride: usize,
    /// `[outputs, stride]`, 22-bit fixed point.
    pub weights: Vec<i32>,
}

/// Pillow's weights for resampling `in0..in1` of an axis of `in_size`
/// pixels to `out_size` pixels with `filter` (nearest neighbour as one tap
/// of weight 1).
pub fn pass_weights(
    in_size: u32,
    in0: f64,
    in1: f64,
    out_size: u32,
    filter: Filter,
) -> PassWeights {
    let out = out_size as usize;
    if filter == Filter::Nearest {
        let start = nearest_table(in0, in1 - in0, out_size, in_size)
            .into_iter()
            .map(|i| i as usize)
            .collect();
        return PassWeights {
            start,
            len: vec![1; out],
            stride: 1,
            weights: vec![1 << PRECISION_BITS; out],
        };
    }
    let w = Weights::new(in_size as usize, in0, in1, out, filter);
    PassWeights {
        start: w.start,
        len: w.len,
        stride: w.stride,
        weights: w.weights,
    }
}

fn clip8(value: i32) -> u8 {
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `crop` of `image` (the whole image when `None`) to `width` x
/// `height`, with Pillow's algorithm (`image.resize((w, h), filter, box)`).
pub fn resize_rgb(
    image: &RgbImage,
    crop: Option<CropBox>,
    width: u32,
    height: u32,
    filter: Filter,
) -> Result<RgbImage> {
    let (source_width, source_height) = image.dimensions();
    if source_width == 0 || source_height == 0 || width == 0 || height == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {source_width}x{source_height} image to {width}x{height}"
        )));
    }
    let region = crop.unwrap_or(CropBox::whole(source_width, source_height));
    if !region.fits(source_width, source_height) {
        return Err(Error::Invalid(format!(
            "crop box {region:?} is not inside the {source_width}x{source_height} image"
        )));
    }
    if region == CropBox::whole(source_width, source_height)
        && (width, height) == (source_width, source_height)
    {
        return Ok(image.clone());
    }
    if filter == Filter::Nearest {
        return Ok(nearest(image, region, width, height));
    }
    let (w, h) = (width as usize, height as usize);
    let horizontal = Weights::new(
        source_width as usize,
        region.left,
        region.left + region.width,
        w,
        filter,
    );
    let vertical = Weights::new(
        source_height as usize,
        region.top,
        region.top + region.height,
        h,
        filter,
    );
    // Only the source rows the vertical pass reads go through the first pass.
    let first_row = vertical.start[0];
    let last_row = vertical.start[h - 1] + vertical.len[h - 1];
    let source = image.as_raw();
    let row_bytes = source_width as usize * 3;
    let mut temp = vec![0u8; (last_row - first_row) * w * 3];
    for (y, out_row) in temp.chunks_exact_mut(w * 3).enumerate() {
        let row = &source[(first_row + y) * row_bytes..(first_row + y + 1) * row_bytes];
        horizontal_pass(row, &horizontal, out_row);
    }
    let mut out = vec![0u8; w * h * 3];
    let mut sums = vec![0i32; w * 3];
    for (y, out_row) in out.chunks_exact_mut(w * 3).enumerate() {
        let (start, weights) = vertical.of(y);
        sums.fill(1 << (PRECISION_BITS - 1));
        for (k, &weight) in weights.iter().enumerate() {
            let row = &temp[(start - first_row + k) * w * 3..(start - first_row + k + 1) * w * 3];
            for (sum, &v) in sums.iter_mut().zip(row) {
                *sum += v as i32 * weight;
            }
        }
        for (o, &sum) in out_row.iter_mut().zip(&sums) {
            *o = clip8(sum);
        }
    }
    Ok(RgbImage::from_raw(width, height, out).expect("buffer sized for the image"))
}

fn horizontal_pass(row: &[u8], weights: &Weights, out: &mut [u8]) {
    for (x, pixel) in out.chunks_exact_mut(3).enumerate() {
        let (start, ws) = weights.of(x);
        let mut sum = [1i32 << (PRECISION_BITS - 1); 3];
        for (source, &w) in row[start * 3..(start + ws.len()) * 3]
            .chunks_exact(3)
            .zip(ws)
        {
            sum[0] += source[0] as i32 * w;
            sum[1] += source[1] as i32 * w;
            sum[2] += source[2] as i32 * w;
        }
        pixel[0] = clip8(sum[0]);
        pixel[1] = clip8(sum[1]);
        pixel[2] = clip8(sum[2]);
    }
}

/// Pillow's nearest neighbour: source coordinates accumulated in f64 from
/// the first pixel centre, then truncated.
fn nearest(image: &RgbImage, region: CropBox, width: u32, height: u32) -> RgbImage {
    let xs = nearest_table(region.left, region.width, width, image.width());
    let ys = nearest_table(region.top, region.height, height, image.height());
    RgbImage::from_fn(width, height, |x, y| {
        *image.get_pixel(xs[x as usize], ys[y as usize])
    })
}

/// Source index of each of `out` pixels covering `offset..offset + extent`.
fn nearest_table(offset: f64, extent: f64, out: u32, limit: u32) -> Vec<u32> {
    let step = extent / out as f64;
    let mut position = offset + step * 0.5;
    (0..out)
        .map(|_| {
            let index = (position as u32).min(limit - 1);
            position += step;
            index
        })
        .collect()
}

/// The size after scaling the shorter side to `shorter` (the longer one is
/// truncated, like torchvision and Hugging Face).
pub fn shorter_side_size(width: u32, height: u32, shorter: u32) -> (u32, u32) {
    if width <= height {
        let long = (shorter as u64 * height as u64 / width.max(1) as u64) as u32;
        (shorter, long)
    } else {
        let long = (shorter as u64 * width as u64 / height.max(1) as u64) as u32;
        (long, shorter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat_with_every_filter() {
        let image = RgbImage::from_pixel(37, 23, image::Rgb([10, 128, 250]));
        for filter in [
            Filter::Nearest,
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Lanczos3,
        ] {
            for (w, h) in [(8, 8), (100, 61)] {
                let out = resize_rgb(&image, None, w, h, filter).unwrap();
                assert_eq!(out.dimensions(), (w, h));
                assert!(out.pixels().all(|p| p.0 == [10, 128, 250]), "{filter:?}");
            }
        }
    }

    #[test]
    fn a_crop_of_the_same_size_copies_pixels() {
        let image = RgbImage::from_fn(6, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let crop = CropBox {
            left: 2.0,
            top: 1.0,
            width: 3.0,
            height: 2.0,
        };
        let out = resize_rgb(&image, Some(crop), 3, 2, Filter::Bicubic).unwrap();
        assert_eq!(out.get_pixel(0, 0).0, [2, 1, 0]);
        assert_eq!(out.get_pixel(2, 1).0, [4, 2, 0]);
    }

    #[test]
    fn shorter_side_keeps_the_aspect_ratio() {
        assert_eq!(shorter_side_size(451, 300, 224), (336, 224));
        assert_eq!(shorter_side_size(300, 451, 224), (224, 336));
        assert_eq!(shorter_side_size(512, 512, 224), (224, 224));
    }

    #[test]
    fn bad_sizes_and_crops_are_errors() {
        let image = RgbImage::new(4, 4);
        assert!(resize_rgb(&image, None, 0, 3, Filter::Bilinear).is_err());
        assert!(resize_rgb(&RgbImage::new(0, 0), None, 3, 3, Filter::Bilinear).is_err());
        let outside = CropBox {
            left: 3.0,
            top: 0.0,
            width: 4.0,
            height: 4.0,
        };
        assert!(resize_rgb(&image, Some(outside), 2, 2, Filter::Bilinear).is_err());
    }
}
