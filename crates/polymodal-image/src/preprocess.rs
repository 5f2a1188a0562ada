//! Resize and normalise RGB images into model input (CHW f32).

use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::{Deserialize, Serialize};

/// Per-channel normalisation `(x / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Channel means (R, G, B) on the 0..1 scale.
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Normalize {
    /// ImageNet statistics (torchvision, ViT).
    pub const IMAGENET: Self = Self {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// Maps 0..255 to -1..1.
    pub const HALF: Self = Self {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
}

/// Image preprocessing: exact resize, then normalisation, to `[channels, height, width]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePreprocess {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Average the channels into one (for grey-scale models).
    pub grayscale: bool,
    /// Normalisation.
    pub normalize: Normalize,
}

impl ImagePreprocess {
    /// Output channel count.
    pub fn channels(&self) -> usize {
        if self.grayscale { 1 } else { 3 }
    }

    /// Number of values [`Self::apply`] returns.
    pub fn len(&self) -> usize {
        self.channels() * (self.width * self.height) as usize
    }

    /// Whether the output is empty (a zero-sized target).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resizes (bilinear, skipped when the size already matches) and normalises.
    pub fn apply(&self, image: &RgbImage) -> Vec<f32> {
        let resized;
        let image = if image.dimensions() == (self.width, self.height) {
            image
        } else {
            resized = imageops::resize(image, self.width, self.height, FilterType::Triangle);
            &resized
        };
        let plane = (self.width * self.height) as usize;
        let mut out = vec![0.0f32; self.len()];
        let Normalize { mean, std } = self.normalize;
        for (i, pixel) in image.pixels().enumerate() {
            let rgb = pixel.0.map(|v| v as f32 / 255.0);
            if self.grayscale {
                let grey = (rgb[0] + rgb[1] + rgb[2]) / 3.0;
                out[i] = (grey - mean[0]) / std[0];
            } else {
                for c in 0..3 {
                    out[c * plane + i] = (rgb[c] - mean[c]) / std[c];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_channel_major_and_normalised() {
        let mut image = RgbImage::new(2, 1);
        image.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        image.put_pixel(1, 0, image::Rgb([0, 255, 0]));
        let pre = ImagePreprocess {
            width: 2,
            height: 1,
            grayscale: false,
            normalize: Normalize::HALF,
        };
        assert_eq!(pre.apply(&image), vec![1.0, -1.0, -1.0, 1.0, -1.0, -1.0]);
    }

    #[test]
    fn resizes_to_the_target() {
        let image = RgbImage::from_pixel(10, 6, image::Rgb([51, 51, 51]));
        let pre = ImagePreprocess {
            width: 4,
            height: 4,
            grayscale: true,
            normalize: Normalize {
                mean: [0.0; 3],
                std: [1.0; 3],
            },
        };
        let out = pre.apply(&image);
        assert_eq!(out.len(), 16);
        assert!(out.iter().all(|v| (v - 0.2).abs() < 1e-6));
    }
}
