//! Seeded training augmentations on RGB images: random resized crop,
//! horizontal flip and colour jitter (torchvision's semantics).

use image::RgbImage;
use image::imageops;
use rand::Rng;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Result};

use crate::resize::{CropBox, Filter, resize_rgb};

/// torchvision's `RandomResizedCrop`: a random region covering `scale` of
/// the area with aspect ratio in `ratio`, resized to the output size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomResizedCrop {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Range of the crop's area as a fraction of the image.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: (f64, f64),
    /// Resampling filter.
    pub filter: Filter,
}

impl RandomResizedCrop {
    /// torchvision's defaults: area 8–100 %, aspect 3/4–4/3, bilinear.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            filter: Filter::Bilinear,
        }
    }

    /// Picks the crop box for an image of `width` x `height`: up to ten tries
    /// at a random area and (log-uniform) aspect, else the centre crop at
    /// the nearest allowed aspect.
    pub fn sample_box(&self, width: u32, height: u32, rng: &mut impl Rng) -> CropBox {
        let (w, h) = (width as f64, height as f64);
        let area = w * h;
        let (log_lo, log_hi) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(log_lo..=log_hi).exp();
            let (cw, ch) = (
                (target * aspect).sqrt().round(),
                (target / aspect).sqrt().round(),
            );
            if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
                let left = rng.random_range(0..=(w - cw) as u32) as f64;
                let top = rng.random_range(0..=(h - ch) as u32) as f64;
                return CropBox {
                    left,
                    top,
                    width: cw,
                    height: ch,
                };
            }
        }
        let aspect = w / h;
        let (cw, ch) = if aspect < self.ratio.0 {
            (w, (w / self.ratio.0).round())
        } else if aspect > self.ratio.1 {
            ((h * self.ratio.1).round(), h)
        } else {
            (w, h)
        };
        CropBox {
            left: ((w - cw) / 2.0).floor(),
            top: ((h - ch) / 2.0).floor(),
            width: cw,
            height: ch,
        }
    }
}

/// torchvision's `ColorJitter` for brightness, contrast and saturation:
/// each factor is drawn from `[1 - x, 1 + x]` and applied in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ColorJitter {
    /// Brightness strength (0 disables).
    pub brightness: f32,
    /// Contrast strength (0 disables).
    pub contrast: f32,
    /// Saturation strength (0 disables).
    pub saturation: f32,
}

/// A training augmentation pipeline. Deterministic for a given RNG state,
/// so a seeded RNG reproduces an epoch exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Random resized crop (also sets the output size); `None` keeps the size.
    pub crop: Option<RandomResizedCrop>,
    /// Probability of a horizontal flip.
    pub flip_probability: f64,
    /// Colour jitter.
    pub jitter: ColorJitter,
}

impl Augment {
    /// Applies the augmentations to `image`.
    pub fn apply(&self, image: &RgbImage, rng: &mut impl Rng) -> Result<RgbImage> {
        if !(0.0..=1.0).contains(&self.flip_probability) {
            return Err(Error::Config(format!(
                "augment: flip probability must be in 0..=1, got {}",
                self.flip_probability
            )));
        }
        let mut out = match &self.crop {
            Some(crop) => {
                let area = crop.sample_box(image.width(), image.height(), rng);
                resize_rgb(image, Some(area), crop.width, crop.height, crop.filter)?
            }
            None => image.clone(),
        };
        if rng.random_bool(self.flip_probability) {
            imageops::flip_horizontal_in_place(&mut out);
        }
        self.jitter.apply(&mut out, rng)?;
        Ok(out)
    }
}

impl ColorJitter {
    /// Applies a random jitter in place.
    pub fn apply(&self, image: &mut RgbImage, rng: &mut impl Rng) -> Result<()> {
        for (name, x) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(0.0..=1.0).contains(&x) {
                return Err(Error::Config(format!(
                    "color jitter: {name} must be in 0..=1, got {x}"
                )));
            }
        }
        let mut factor = |x: f32| (x > 0.0).then(|| rng.random_range(1.0 - x..=1.0 + x));
        let (brightness, contrast, saturation) = (
            factor(self.brightness),
            factor(self.contrast),
            factor(self.saturation),
        );
        if let Some(f) = brightness {
            blend(image, f, |_| [0.0; 3]);
        }
        if let Some(f) = contrast {
            // Blend towards the mean grey level of the whole image.
            let n = (image.width() * image.height()).max(1) as f32;
            let mean = image.pixels().map(|p| grey(p.0)).sum::<f32>() / n;
            blend(image, f, |_| [mean; 3]);
        }
        if let Some(f) = saturation {
            blend(image, f, |p| [grey(p); 3]);
        }
        Ok(())
    }
}

/// ITU-R 601 luma, as torchvision's `rgb_to_grayscale`.
fn grey([r, g, b]: [u8; 3]) -> f32 {
    0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32
}

/// `factor * pixel + (1 - factor) * other(pixel)`, clamped to 0..=255.
fn blend(image: &mut RgbImage, factor: f32, other: impl Fn([u8; 3]) -> [f32; 3]) {
    for pixel in image.pixels_mut() {
        let towards = other(pixel.0);
        for (c, v) in pixel.0.iter_mut().enumerate() {
            let mixed = factor * *v as f32 + (1.0 - factor) * towards[c];
            *v = mixed.round().clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn photo() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 100])
        })
    }

    fn augment() -> Augment {
        Augment {
            crop: Some(RandomResizedCrop::new(32, 32)),
            flip_probability: 0.5,
            jitter: ColorJitter {
                brightness: 0.4,
                contrast: 0.4,
                saturation: 0.4,
            },
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_image_and_another_seed_another() {
        let a = augment()
            .apply(&photo(), &mut StdRng::seed_from_u64(7))
            .unwrap();
        let b = augment()
            .apply(&photo(), &mut StdRng::seed_from_u64(7))
            .unwrap();
        let c = augment()
            .apply(&photo(), &mut StdRng::seed_from_u64(8))
            .unwrap();
        assert_eq!(a.dimensions(), (32, 32));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn crop_boxes_stay_inside_and_respect_the_ranges() {
        let crop = RandomResizedCrop::new(8, 8);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..500 {
            let b = crop.sample_box(64, 48, &mut rng);
            assert!(b.left >= 0.0 && b.top >= 0.0);
            assert!(b.left + b.width <= 64.0 && b.top + b.height <= 48.0);
            assert!(b.width * b.height >= 0.08 * 64.0 * 48.0 * 0.8);
        }
        // A 1-pixel-high strip cannot fit the aspect range: centre fallback.
        let b = crop.sample_box(100, 1, &mut rng);
        assert!(b.width <= 100.0 && b.height == 1.0);
    }

    #[test]
    fn a_certain_flip_mirrors_the_image() {
        let flip = Augment {
            crop: None,
            flip_probability: 1.0,
            jitter: ColorJitter::default(),
        };
        let out = flip.apply(&photo(), &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(out.get_pixel(0, 5), photo().get_pixel(63, 5));
    }

    #[test]
    fn zero_saturation_factor_gives_grey() {
        let mut image = photo();
        blend(&mut image, 0.0, |p| [grey(p); 3]);
        assert!(image.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut rng = StdRng::seed_from_u64(0);
        let bad_flip = Augment {
            flip_probability: 1.5,
            ..augment()
        };
        assert!(bad_flip.apply(&photo(), &mut rng).is_err());
        let bad_jitter = Augment {
            jitter: ColorJitter {
                brightness: 2.0,
                ..ColorJitter::default()
            },
            ..augment()
        };
        assert!(bad_jitter.apply(&photo(), &mut rng).is_err());
    }
}
