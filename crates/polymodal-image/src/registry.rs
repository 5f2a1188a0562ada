//! The registry of the image encoders a model can be built with: the
//! [`ImageEncoderKind`] named in configs (or found from a model folder's
//! `config.json`, [`ImageEncoderKind::detect`]), and the [`AnyImageEncoder`]
//! it builds or loads. `polymodal_video::FrameEncoder` runs any of them on
//! every frame of a clip.
//!
//! Both are generated from the one table in this file (the call of
//! [`polymodal_core::encoder_registry!`]), as polymodal-fusion's registry of
//! fusion layers is. To add an encoder (see `docs/encoders.md`): write it in
//! its own file with its `impl Encoder` (input: normalised images `[batch,
//! channels, height, width]`), implement
//! [`ScratchEncoder`]`<`[`ImageEncoderSizes`]`>` (trained from scratch) or
//! [`PretrainedEncoder`] (loaded from a model folder) for it, and add one
//! row to the table. The impls of the encoders that predate the registry are
//! at the end of this file.
//!
//! A CLIP folder is the `clip` kind here (its vision tower) and in
//! polymodal-text's registry (its text tower).

use std::path::Path;

use burn::prelude::*;

use polymodal_core::registry::{PretrainedEncoder, ScratchEncoder};
use polymodal_core::{Error, LoadReport, Result};

// The encoder types the table names.
use crate::{
    ClipVision, ClipVisionConfig, ConvEncoder, ConvEncoderConfig, ImagePreprocess, ResNet,
    ResNetConfig, Vit, VitConfig,
};

/// The sizes a from-scratch image encoder is built with (a classifier's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageEncoderSizes {
    /// Input channels (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Width of the embeddings.
    pub dim: usize,
}

// The registry: one row per image encoder, in documentation order.
polymodal_core::encoder_registry! {
    /// A kind of image encoder: trained from scratch, or pretrained and
    /// loaded from a model folder.
    kind ImageEncoderKind;
    /// An image encoder of any registered kind (one variant per
    /// [`ImageEncoderKind`]); an [`Encoder`](polymodal_core::Encoder) of
    /// images `[batch, channels, height, width]`.
    any AnyImageEncoder(Tensor<4>);
    sizes ImageEncoderSizes;
    modality "image";
    rows {
        /// A small CNN trained from scratch (two convolution blocks, 4×4 grid
        /// pooling; small images such as 32×32).
        Scratch = "scratch", scratch ConvEncoder;
        /// ResNet-18/34/50 with torchvision's weight names: a timm folder
        /// (`config.json` with `architecture` `resnet18`, `resnet34` or
        /// `resnet50`, and `model.safetensors`).
        ResNet = "resnet", pretrained ResNet;
        /// ViT (Hugging Face `ViTModel`, `model_type` `vit`).
        Vit = "vit", pretrained Vit;
        /// CLIP's vision tower (Hugging Face `CLIPVisionModel`, or the
        /// `vision_model` of a `CLIPModel` folder): the post-norm class token.
        Clip = "clip", pretrained ClipVision;
    }
}

impl ImageEncoderKind {
    /// The preprocessing the model of the pretrained folder `dir` (of this
    /// kind) was trained with: its `preprocessor_config.json`
    /// ([`ImagePreprocess::from_hf_file`]) where it has one, else the kind's
    /// standard (ViT: [`ImagePreprocess::vit`] at the `image_size` of its
    /// `config.json`; ResNet: torchvision's [`ImagePreprocess::imagenet`] at
    /// 224). A from-scratch kind is an [`Error::Config`].
    pub fn preprocess(self, dir: impl AsRef<Path>) -> Result<ImagePreprocess> {
        let dir = dir.as_ref();
        let processor = dir.join("preprocessor_config.json");
        let scratch = || {
            Error::Config(format!(
                "image encoder `{self}` is trained from scratch: its preprocessing is the \
                 experiment's `[features.image]`"
            ))
        };
        if !self.is_pretrained() {
            return Err(scratch());
        }
        if processor.is_file() {
            return ImagePreprocess::from_hf_file(processor);
        }
        match self {
            Self::Scratch => Err(scratch()),
            Self::ResNet => Ok(ImagePreprocess::imagenet(224)),
            Self::Vit => {
                let config = VitConfig::from_file(dir.join("config.json"))?;
                Ok(ImagePreprocess::vit(side(config.image_size, dir)?))
            }
            Self::Clip => {
                let config = ClipVisionConfig::from_file(dir.join("config.json"))?;
                Ok(ImagePreprocess::clip(side(config.image_size, dir)?))
            }
        }
    }
}

/// A folder's `image_size` as a pixel count.
fn side(image_size: usize, dir: &Path) -> Result<u32> {
    u32::try_from(image_size)
        .map_err(|_| Error::Config(format!("{}: image_size too large", dir.display())))
}

// How the encoders above are built or loaded (their own files predate the
// registry).

impl ScratchEncoder<ImageEncoderSizes> for ConvEncoder {
    /// [`ConvEncoderConfig`]'s defaults (16 and 32 channels) at `dim`.
    fn init(sizes: &ImageEncoderSizes, device: &Device) -> Result<Self> {
        Ok(ConvEncoderConfig::new(sizes.channels)
            .with_dim(sizes.dim)
            .init(device))
    }
}

impl PretrainedEncoder for ResNet {
    const MODEL_TYPES: &'static [&'static str] = &[];
    const ARCHITECTURES: &'static [&'static str] = &["resnet18", "resnet34", "resnet50"];

    /// A timm folder: the depth from `config.json`'s `architecture` (the
    /// name before any `.tag`), the weights from `model.safetensors` (timm's
    /// ResNets keep torchvision's names). Variants with other stems
    /// (`resnet50d`) are an [`Error::Config`].
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let architecture = json["architecture"].as_str().ok_or_else(|| {
            Error::Config(format!(
                "{}: no `architecture` (timm's resnet18, resnet34, resnet50)",
                path.display()
            ))
        })?;
        let name = architecture.split('.').next().unwrap_or(architecture);
        let config: ResNetConfig = name
            .parse()
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        ResNet::load(&config, dir.join("model.safetensors"), device)
    }
}

impl PretrainedEncoder for Vit {
    const MODEL_TYPES: &'static [&'static str] = &["vit"];
    const ARCHITECTURES: &'static [&'static str] = &["ViT"];

    /// [`Vit::load`]: the class token is the pooled vector.
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        Vit::load(dir, device)
    }
}

impl PretrainedEncoder for ClipVision {
    const MODEL_TYPES: &'static [&'static str] = &["clip", "clip_vision_model"];
    const ARCHITECTURES: &'static [&'static str] = &["CLIPModel", "CLIPVisionModel"];

    /// [`ClipVision::load`].
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        ClipVision::load(dir, device)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use polymodal_core::Modality;
    use polymodal_core::testing::{check_same_encoder, check_scratch_kinds};

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        polymodal_core::testing::encoder_fixture(name)
    }

    /// A fresh folder with `config` as its `config.json` (none when `None`).
    fn folder(name: &str, config: Option<&str>) -> PathBuf {
        polymodal_core::testing::config_folder(&format!("image-registry-{name}"), config)
    }

    fn images(side: usize, device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..2 * 3 * side * side)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        Tensor::from_data(TensorData::new(values, [2, 3, side, side]), device)
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        polymodal_core::testing::check_kind_names(
            &ImageEncoderKind::ALL,
            ImageEncoderKind::name,
            &["scratch", "resnet", "vit", "clip"],
            ("swin", "unknown image encoder `swin`"),
        );
    }

    #[test]
    fn scratch_kinds_build_and_pretrained_kinds_load() {
        let sizes = ImageEncoderSizes {
            channels: 3,
            dim: 8,
        };
        let input = images(16, &Device::flex());
        let shape = (2, 8, Modality::Image);
        check_scratch_kinds::<ImageEncoderKind>(&sizes, &input, shape, &fixture("vit"));
    }

    #[test]
    fn detect_finds_the_kind_of_a_folder_or_says_why_not() {
        assert_eq!(
            ImageEncoderKind::detect(fixture("vit")).unwrap(),
            ImageEncoderKind::Vit
        );
        // timm's config.json names the architecture, with a tag.
        let dir = folder(
            "timm",
            Some(r#"{"architecture": "resnet50.a1_in1k", "num_classes": 1000}"#),
        );
        assert_eq!(
            ImageEncoderKind::detect(&dir).unwrap(),
            ImageEncoderKind::ResNet
        );
        // ... a variant with another stem is found but refused on loading.
        let dir = folder("timm-d", Some(r#"{"architecture": "resnet50d"}"#));
        assert_eq!(
            ImageEncoderKind::detect(&dir).unwrap(),
            ImageEncoderKind::ResNet
        );
        let error = AnyImageEncoder::load(&dir, &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown ResNet `resnet50d`"), "{error}");
        // An unknown model type names the folder, the type and the supported ones.
        // A CLIP folder is the clip kind (its vision tower).
        assert_eq!(
            ImageEncoderKind::detect(fixture("clip")).unwrap(),
            ImageEncoderKind::Clip
        );
        let error = ImageEncoderKind::detect(fixture("bert"))
            .unwrap_err()
            .to_string();
        let config = fixture("bert").join("config.json");
        assert!(error.contains(&config.display().to_string()), "{error}");
        assert!(error.contains("model_type `bert`"), "{error}");
        assert!(
            error.contains("`vit` (model_type `vit`") && error.contains("`resnet50…`"),
            "{error}"
        );
        // torchvision's fixture folder has weights but no config.json: the
        // error names the folder.
        let error = ImageEncoderKind::detect(fixture("resnet")).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error:?}");
        let error = error.to_string();
        assert!(
            error.contains(&fixture("resnet").display().to_string())
                && error.contains("no config.json"),
            "{error}"
        );
    }

    /// Loading through the registry gives the direct loader's model.
    #[test]
    fn load_through_the_registry_is_the_direct_loader() {
        let device = Device::flex();
        let (direct, _) = Vit::load(fixture("vit"), &device).unwrap();
        let (any, report) = AnyImageEncoder::load(fixture("vit"), &device).unwrap();
        assert!(report.unexpected.is_empty(), "{report:?}");
        assert_eq!(any.kind(), ImageEncoderKind::Vit);
        check_same_encoder(&direct, &any, &images(16, &device));
    }

    /// A folder's preprocessing: its `preprocessor_config.json` when it has
    /// one, else the kind's standard at the folder's size.
    #[test]
    fn a_folder_decides_its_preprocessing() {
        let config = VitConfig::from_file(fixture("vit").join("config.json")).unwrap();
        let side = config.image_size as u32;
        let vit = ImageEncoderKind::Vit;
        assert_eq!(
            vit.preprocess(fixture("vit")).unwrap(),
            ImagePreprocess::vit(side)
        );
        let dir = folder("processor", Some(r#"{"model_type": "vit"}"#));
        std::fs::write(
            dir.join("preprocessor_config.json"),
            r#"{"size": {"shortest_edge": 40}, "do_center_crop": true, "crop_size": 32,
                "resample": 3, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#,
        )
        .unwrap();
        let processed = vit.preprocess(&dir).unwrap();
        assert_eq!((processed.width, processed.height), (32, 32));
        assert_eq!(
            processed.resize,
            crate::ResizeMode::ShorterSideThenCenterCrop { shorter_side: 40 }
        );
        assert_eq!(processed.filter, crate::Filter::Bicubic);
        let error = ImageEncoderKind::Scratch.preprocess(&dir).unwrap_err();
        assert!(error.to_string().contains("from scratch"), "{error}");
    }
}
