//! Resize and normalise RGB images into model input (CHW f32).

use image::RgbImage;
use image::imageops;
use serde::{Deserialize, Serialize};

use polymodal_core::{Error, Result};

use crate::decode::MAX_SIDE;
use crate::resize::{Filter, resize_rgb, shorter_side_size};

/// Per-channel normalisation `(x / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Channel means (R, G, B) on the 0..1 scale.
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Default for Normalize {
    fn default() -> Self {
        Self::IMAGENET
    }
}

impl Normalize {
    /// ImageNet statistics (torchvision, ViT).
    pub const IMAGENET: Self = Self {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// OpenAI CLIP's statistics.
    pub const CLIP: Self = Self {
        mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
        std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
    };
    /// Maps 0..255 to -1..1.
    pub const HALF: Self = Self {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
}

/// How the image is brought to the output size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    /// Stretch to the output size (ViT, most small-image models).
    #[default]
    Exact,
    /// Scale so the shorter side is `shorter_side` pixels, keeping the aspect
    /// ratio, then cut the output size from the centre (CLIP; torchvision's
    /// `Resize` + `CenterCrop`).
    ShorterSideThenCenterCrop {
        /// Length of the shorter side after scaling.
        shorter_side: u32,
    },
}

/// Image preprocessing to model input: resize (and crop), normalise, lay out
/// as `[channels, height, width]` f32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePreprocess {
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Average the channels into one (for grey-scale models).
    #[serde(default)]
    pub grayscale: bool,
    /// Normalisation (default: ImageNet statistics).
    #[serde(default)]
    pub normalize: Normalize,
    /// How the image is brought to the output size.
    #[serde(default)]
    pub resize: ResizeMode,
    /// Resampling filter.
    #[serde(default)]
    pub filter: Filter,
}

impl ImagePreprocess {
    /// Stretch to `width` x `height` with a bilinear filter, ImageNet statistics.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            grayscale: false,
            normalize: Normalize::IMAGENET,
            resize: ResizeMode::Exact,
            filter: Filter::Bilinear,
        }
    }

    /// Hugging Face's `CLIPImageProcessor`: shorter side to `size` (bicubic),
    /// centre crop `size` x `size`, CLIP statistics.
    pub fn clip(size: u32) -> Self {
        Self {
            normalize: Normalize::CLIP,
            resize: ResizeMode::ShorterSideThenCenterCrop { shorter_side: size },
            filter: Filter::Bicubic,
            ..Self::new(size, size)
        }
    }

    /// Hugging Face's `ViTImageProcessor`: stretch to `size` x `size`
    /// (bilinear), mean and std 0.5.
    pub fn vit(size: u32) -> Self {
        Self {
            normalize: Normalize::HALF,
            ..Self::new(size, size)
        }
    }

    /// torchvision's ImageNet evaluation transform: shorter side to
    /// `size * 256 / 224` (bilinear), centre crop `size`, ImageNet statistics.
    pub fn imagenet(size: u32) -> Self {
        Self {
            resize: ResizeMode::ShorterSideThenCenterCrop {
                shorter_side: size * 256 / 224,
            },
            ..Self::new(size, size)
        }
    }

    /// Output channel count.
    pub fn channels(&self) -> usize {
        if self.grayscale { 1 } else { 3 }
    }

    /// Number of values [`Self::apply`] returns.
    pub fn len(&self) -> usize {
        self.channels() * self.width as usize * self.height as usize
    }

    /// Checks the settings (they often come from a config file): an output
    /// size of 1 to [`MAX_SIDE`] pixels a side, finite means, finite non-zero
    /// standard deviations, and a shorter side no smaller than the crop.
    /// The error names the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("image preprocessing: {what}")));
        for (name, side) in [("width", self.width), ("height", self.height)] {
            if side == 0 || side > MAX_SIDE {
                return bad(format!("{name} must be 1 to {MAX_SIDE} pixels, got {side}"));
            }
        }
        let Normalize { mean, std } = self.normalize;
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return bad(format!("normalize.mean must be finite, got {m}"));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s != 0.0)) {
            return bad(format!(
                "normalize.std must be finite and non-zero, got {s}"
            ));
        }
        if let ResizeMode::ShorterSideThenCenterCrop { shorter_side } = self.resize
            && (shorter_side < self.width.min(self.height) || shorter_side > MAX_SIDE)
        {
            return bad(format!(
                "resize.shorter_side must be {} to {MAX_SIDE} pixels (no smaller than the crop), got {shorter_side}",
                self.width.min(self.height)
            ));
        }
        Ok(())
    }

    /// Whether the output is empty (a zero-sized target).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The image brought to the output size, still RGB u8.
    pub fn resized(&self, image: &RgbImage) -> Result<RgbImage> {
        self.validate()?;
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return Err(Error::Invalid("the image is empty".into()));
        }
        if (width, height) == (self.width, self.height) {
            return Ok(image.clone());
        }
        match self.resize {
            ResizeMode::Exact => resize_rgb(image, None, self.width, self.height, self.filter),
            ResizeMode::ShorterSideThenCenterCrop { shorter_side } => {
                let (scaled_w, scaled_h) = shorter_side_size(width, height, shorter_side);
                if scaled_w < self.width || scaled_h < self.height {
                    return Err(Error::Config(format!(
                        "preprocess: shorter side {shorter_side} is smaller than the {}x{} crop",
                        self.width, self.height
                    )));
                }
                let scaled = resize_rgb(image, None, scaled_w, scaled_h, self.filter)?;
                let (left, top) = ((scaled_w - self.width) / 2, (scaled_h - self.height) / 2);
                Ok(imageops::crop_imm(&scaled, left, top, self.width, self.height).to_image())
            }
        }
    }

    /// Resizes, crops and normalises: `channels() * height * width` values.
    pub fn apply(&self, image: &RgbImage) -> Result<Vec<f32>> {
        self.validate()?;
        // An image already at the output size is used as it is, not copied.
        let resized;
        let image = if image.dimensions() == (self.width, self.height) {
            image
        } else {
            resized = self.resized(image)?;
            &resized
        };
        let plane = self.width as usize * self.height as usize;
        let mut out = vec![0.0f32; self.len()];
        let Normalize { mean, std } = self.normalize;
        // (v / 255 - mean) / std as one multiply-add per value.
        let scale = std.map(|s| 1.0 / (255.0 * s));
        let shift: [f32; 3] = std::array::from_fn(|c| -mean[c] / std[c]);
        if self.grayscale {
            for (slot, pixel) in out.iter_mut().zip(image.pixels()) {
                let sum = pixel.0.iter().map(|&v| v as f32).sum::<f32>();
                *slot = sum / 3.0 * scale[0] + shift[0];
            }
        } else {
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, pixel) in image.pixels().enumerate() {
                let [pr, pg, pb] = pixel.0;
                r[i] = pr as f32 * scale[0] + shift[0];
                g[i] = pg as f32 * scale[1] + shift[1];
                b[i] = pb as f32 * scale[2] + shift[2];
            }
        }
        Ok(out)
    }
}

/// A Hugging Face image processor's `preprocessor_config.json` (the fields
/// that decide the pixels: `ViTImageProcessor`, `CLIPImageProcessor`,
/// `ConvNextImageProcessor`, ...).
#[derive(Debug, Deserialize)]
struct HfImageProcessor {
    #[serde(default = "yes")]
    do_resize: bool,
    size: Option<HfSize>,
    #[serde(default)]
    do_center_crop: bool,
    crop_size: Option<HfSize>,
    /// ConvNext: the shorter side is `size / crop_pct` before the crop.
    crop_pct: Option<f64>,
    #[serde(default = "yes")]
    do_rescale: bool,
    #[serde(default = "yes")]
    do_normalize: bool,
    image_mean: Option<[f32; 3]>,
    image_std: Option<[f32; 3]>,
    /// PIL's filter numbers: 0 nearest, 1 Lanczos, 2 bilinear, 3 bicubic.
    #[serde(default = "bilinear")]
    resample: u32,
}

fn yes() -> bool {
    true
}
fn bilinear() -> u32 {
    2
}

/// `size` / `crop_size`: a number, `{height, width}` or `{shortest_edge}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HfSize {
    Square(u32),
    Box { height: u32, width: u32 },
    ShortestEdge { shortest_edge: u32 },
}

impl ImagePreprocess {
    /// The preprocessing a Hugging Face `preprocessor_config.json` describes:
    /// resize (exact, or shorter side then centre crop), PIL filter, mean
    /// and standard deviation. A setting polymodal cannot reproduce (no
    /// rescaling to 0..1, no resize) is an [`Error::Config`] naming the file
    /// and the setting.
    pub fn from_hf_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let bad = |what: String| Error::Config(format!("{}: {what}", path.display()));
        let hf: HfImageProcessor = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if !hf.do_rescale || !hf.do_resize {
            return Err(bad(
                "do_rescale and do_resize must be true (the model reads fixed-size 0..1 pixels)"
                    .into(),
            ));
        }
        let filter = match hf.resample {
            0 => Filter::Nearest,
            1 => Filter::Lanczos3,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            other => return Err(bad(format!("resample {other} is not supported (0 to 3)"))),
        };
        let size = hf.size.ok_or_else(|| bad("no `size`".into()))?;
        let (width, height, resize) = match (size, hf.do_center_crop.then_some(hf.crop_size)) {
            (HfSize::Square(side), None) => (side, side, ResizeMode::Exact),
            (HfSize::Box { height, width }, None) => (width, height, ResizeMode::Exact),
            (HfSize::ShortestEdge { shortest_edge }, None) => match hf.crop_pct {
                // ConvNext below 384 pixels: scale, then crop `shortest_edge`.
                Some(pct) if shortest_edge < 384 && pct > 0.0 && pct <= 1.0 => {
                    let shorter_side = (f64::from(shortest_edge) / pct) as u32;
                    let resize = ResizeMode::ShorterSideThenCenterCrop { shorter_side };
                    (shortest_edge, shortest_edge, resize)
                }
                _ => (shortest_edge, shortest_edge, ResizeMode::Exact),
            },
            (size, Some(crop)) => {
                let shorter_side = match size {
                    HfSize::Square(s) | HfSize::ShortestEdge { shortest_edge: s } => s,
                    HfSize::Box { height, width } => height.min(width),
                };
                let (width, height) = match crop {
                    Some(HfSize::Square(s)) => (s, s),
                    Some(HfSize::Box { height, width }) => (width, height),
                    Some(HfSize::ShortestEdge { .. }) | None => (shorter_side, shorter_side),
                };
                (
                    width,
                    height,
                    ResizeMode::ShorterSideThenCenterCrop { shorter_side },
                )
            }
        };
        let normalize = if hf.do_normalize {
            Normalize {
                mean: hf.image_mean.unwrap_or(Normalize::IMAGENET.mean),
                std: hf.image_std.unwrap_or(Normalize::IMAGENET.std),
            }
        } else {
            Normalize {
                mean: [0.0; 3],
                std: [1.0; 3],
            }
        };
        let preprocess = Self {
            normalize,
            resize,
            filter,
            ..Self::new(width, height)
        };
        preprocess.validate().map_err(|e| bad(e.to_string()))?;
        Ok(preprocess)
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
            normalize: Normalize::HALF,
            ..ImagePreprocess::new(2, 1)
        };
        assert_eq!(
            pre.apply(&image).unwrap(),
            vec![1.0, -1.0, -1.0, 1.0, -1.0, -1.0]
        );
    }

    #[test]
    fn resizes_to_the_target() {
        let image = RgbImage::from_pixel(10, 6, image::Rgb([51, 51, 51]));
        let pre = ImagePreprocess {
            grayscale: true,
            normalize: Normalize {
                mean: [0.0; 3],
                std: [1.0; 3],
            },
            ..ImagePreprocess::new(4, 4)
        };
        let out = pre.apply(&image).unwrap();
        assert_eq!(out.len(), 16);
        assert!(out.iter().all(|v| (v - 0.2).abs() < 1e-6));
    }

    #[test]
    fn clip_crops_the_centre_of_the_scaled_image() {
        // Left third red, middle green, right third blue: the centre crop of
        // a wide image keeps only green.
        let image = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
            0 => image::Rgb([255, 0, 0]),
            1 => image::Rgb([0, 255, 0]),
            _ => image::Rgb([0, 0, 255]),
        });
        let pre = ImagePreprocess {
            normalize: Normalize {
                mean: [0.0; 3],
                std: [1.0; 3],
            },
            ..ImagePreprocess::clip(20)
        };
        let out = pre.apply(&image).unwrap();
        assert_eq!(out.len(), 3 * 20 * 20);
        // Away from the crop's edges (where the cubic kernel reaches the
        // neighbouring thirds) only green is left.
        for y in 0..20 {
            for x in 2..18 {
                let at = |c: usize| out[c * 400 + y * 20 + x];
                assert!(at(1) > 0.99 && at(0) < 0.01 && at(2) < 0.01, "({x}, {y})");
            }
        }
    }

    #[test]
    fn a_crop_larger_than_the_scaled_image_is_a_config_error() {
        let pre = ImagePreprocess {
            resize: ResizeMode::ShorterSideThenCenterCrop { shorter_side: 10 },
            ..ImagePreprocess::new(16, 16)
        };
        assert!(pre.apply(&RgbImage::new(40, 30)).is_err());
        assert!(
            ImagePreprocess::new(4, 4)
                .apply(&RgbImage::new(0, 0))
                .is_err()
        );
    }

    fn processor_file(name: &str, json: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("polymodal-hf-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("preprocessor_config.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    /// The processor files transformers writes for ViT and CLIP (as saved by
    /// `ViTImageProcessor()` / `CLIPImageProcessor()`) give the presets
    /// whose pixels the parity tests check against those processors.
    #[test]
    fn hugging_face_processor_files_give_the_presets() {
        let vit = r#"{"do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor",
            "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": 0.00392156862745098,
            "size": {"height": 224, "width": 224}}"#;
        let path = processor_file("vit", vit);
        assert_eq!(
            ImagePreprocess::from_hf_file(&path).unwrap(),
            ImagePreprocess::vit(224)
        );
        let clip = r#"{"crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
            "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}}"#;
        let path = processor_file("clip", clip);
        assert_eq!(
            ImagePreprocess::from_hf_file(&path).unwrap(),
            ImagePreprocess::clip(224)
        );
        // The older format: plain numbers.
        let path = processor_file(
            "old",
            r#"{"size": 32, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#,
        );
        assert_eq!(
            ImagePreprocess::from_hf_file(&path).unwrap(),
            ImagePreprocess::vit(32)
        );
        // What cannot be reproduced is an error naming the file and setting.
        let path = processor_file("bad", r#"{"size": 32, "resample": 5}"#);
        let error = ImagePreprocess::from_hf_file(&path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("resample 5") && error.contains("preprocessor_config.json"),
            "{error}"
        );
        let path = processor_file("nosize", r#"{"do_resize": true}"#);
        assert!(ImagePreprocess::from_hf_file(&path).is_err());
    }
}
