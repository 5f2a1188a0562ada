//! The registry of the image encoders a model can be built with: the
//! [`ImageEncoderKind`] named in configs (or found from a model folder's
//! `config.json`, [`ImageEncoderKind::detect`]), and the [`AnyImageEncoder`]
//! it builds or loads. `polymodal_video::FrameEncoder` runs any of them on
//! every frame of a clip.
//!
//! Both are generated from the one table in this file (the call of
//! `image_encoders!`), as polymodal-fusion's registry of fusion layers is.
//! To add an encoder (see `docs/encoders.md`): write it in its own file with
//! its `impl Encoder` (input: normalised images `[batch, channels, height,
//! width]`), implement [`ScratchImageEncoder`] (trained from scratch) or
//! [`PretrainedImageEncoder`] (loaded from a model folder) for it, and add
//! one row to the table. The impls of the encoders that predate the registry
//! are at the end of this file.
//!
//! CLIP's vision tower is not listed: it lives in polymodal-text
//! (`polymodal_text::ClipVision`) and does not implement `Encoder`; moving
//! it here is the next step.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_core::{Embeddings, Encoder, Error, LoadReport, Modality, Result};

// The encoder types the table names.
use crate::{ConvEncoder, ConvEncoderConfig, ResNet, ResNetConfig, Vit};

/// The sizes a from-scratch image encoder is built with (a classifier's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageEncoderSizes {
    /// Input channels (1 for grey, 3 for RGB).
    pub channels: usize,
    /// Width of the embeddings.
    pub dim: usize,
}

/// An image encoder trained from scratch, listed in the registry: how
/// [`ImageEncoderKind::init`] builds it.
pub trait ScratchImageEncoder: Encoder<Input = Tensor<4>> + Sized {
    /// A freshly initialised encoder of `sizes`.
    fn init(sizes: &ImageEncoderSizes, device: &Device) -> Result<Self>;
}

/// A pretrained image encoder listed in the registry: which model folders
/// hold one ([`ImageEncoderKind::detect`]) and how
/// [`ImageEncoderKind::load`] reads them.
pub trait PretrainedImageEncoder: Encoder<Input = Tensor<4>> + Sized {
    /// The `model_type`s of its folders' `config.json`.
    const MODEL_TYPES: &'static [&'static str];
    /// Prefixes of its `architectures` names (`ViTModel`), or of timm's
    /// `architecture` (`resnet50.a1_in1k`), read when `config.json` has no
    /// `model_type`.
    const ARCHITECTURES: &'static [&'static str];
    /// Loads a model folder of this kind; the report lists the tensors of
    /// the file the encoder did not use.
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)>;
}

/// Generates [`ImageEncoderKind`] and [`AnyImageEncoder`] from the registry
/// table.
///
/// Each row is `Variant = "name", source Encoder;` with the kind's doc
/// comment above it:
/// - `Variant` names the [`ImageEncoderKind`] and the [`AnyImageEncoder`]
///   variants;
/// - `"name"` is the kind's name in configs ([`ImageEncoderKind::name`],
///   serde, `Display`, `FromStr`);
/// - `source` is `scratch` (the encoder implements [`ScratchImageEncoder`],
///   [`ImageEncoderKind::init`] builds it) or `pretrained` (it implements
///   [`PretrainedImageEncoder`], [`ImageEncoderKind::load`] reads it and
///   [`ImageEncoderKind::detect`] finds it);
/// - `Encoder` is the encoder type.
///
/// [`ImageEncoderKind::ALL`] lists the kinds in the table's order.
macro_rules! image_encoders {
    (@init scratch, $variant:ident, $encoder:ident, $name:literal, $sizes:ident, $device:ident) => {
        Ok(AnyImageEncoder::$variant(<$encoder as ScratchImageEncoder>::init($sizes, $device)?))
    };
    (@init pretrained, $variant:ident, $encoder:ident, $name:literal, $sizes:ident, $device:ident) => {
        Err(Error::Config(format!(
            "image encoder `{}` is pretrained: load it from a model folder",
            $name
        )))
    };
    (@load scratch, $variant:ident, $encoder:ident, $name:literal, $dir:ident, $device:ident) => {
        Err(Error::Config(format!(
            "image encoder `{}` is trained from scratch: there is no folder to load ({})",
            $name,
            $dir.display()
        )))
    };
    (@load pretrained, $variant:ident, $encoder:ident, $name:literal, $dir:ident, $device:ident) => {{
        let (encoder, report) = <$encoder as PretrainedImageEncoder>::load($dir, $device)?;
        Ok((AnyImageEncoder::$variant(encoder), report))
    }};
    (@folders scratch, $encoder:ident) => {
        None
    };
    (@folders pretrained, $encoder:ident) => {
        Some(FolderNames {
            model_types: <$encoder as PretrainedImageEncoder>::MODEL_TYPES,
            architectures: <$encoder as PretrainedImageEncoder>::ARCHITECTURES,
        })
    };
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $source:ident $encoder:ident;
    )+) => {
        /// A kind of image encoder: trained from scratch, or pretrained and
        /// loaded from a model folder.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum ImageEncoderKind {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl ImageEncoderKind {
            /// Every kind, in documentation order.
            pub const ALL: [ImageEncoderKind; [$($name),+].len()] = [$(Self::$variant),+];

            /// The name used in configs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// A fresh encoder of this kind with `sizes`, to train from
            /// scratch; a pretrained kind is an [`Error::Config`] (load it
            /// with [`ImageEncoderKind::load`]).
            pub fn init(self, sizes: &ImageEncoderSizes, device: &Device) -> Result<AnyImageEncoder> {
                match self {
                    $(Self::$variant => image_encoders!(@init $source, $variant, $encoder, $name, sizes, device),)+
                }
            }

            /// Loads the model folder `dir` as an encoder of this kind; a
            /// from-scratch kind is an [`Error::Config`]. See
            /// [`AnyImageEncoder::load`] to find the kind from the folder.
            pub fn load(self, dir: impl AsRef<Path>, device: &Device) -> Result<(AnyImageEncoder, LoadReport)> {
                let dir = dir.as_ref();
                match self {
                    $(Self::$variant => image_encoders!(@load $source, $variant, $encoder, $name, dir, device),)+
                }
            }

            /// The names in `config.json` that identify the folders of a
            /// pretrained kind; `None` for a from-scratch kind.
            fn folders(self) -> Option<FolderNames> {
                match self {
                    $(Self::$variant => image_encoders!(@folders $source, $encoder),)+
                }
            }
        }

        /// An image encoder of any registered kind (one variant per
        /// [`ImageEncoderKind`]); an [`Encoder`] of images `[batch,
        /// channels, height, width]`.
        // A model holds one encoder per modality: the size of the largest
        // variant costs nothing worth boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum AnyImageEncoder {
            $(
                #[doc = concat!("A [`", stringify!($encoder), "`] (`", $name, "`).")]
                $variant($encoder),
            )+
        }

        impl AnyImageEncoder {
            /// The kind of the encoder.
            pub fn kind(&self) -> ImageEncoderKind {
                match self {
                    $(Self::$variant(_) => ImageEncoderKind::$variant,)+
                }
            }
        }

        $(
            impl From<$encoder> for AnyImageEncoder {
                fn from(encoder: $encoder) -> Self {
                    Self::$variant(encoder)
                }
            }
        )+

        impl Encoder for AnyImageEncoder {
            type Input = Tensor<4>;

            fn modality(&self) -> Modality {
                match self {
                    $(Self::$variant(e) => e.modality(),)+
                }
            }

            fn dim(&self) -> usize {
                match self {
                    $(Self::$variant(e) => e.dim(),)+
                }
            }

            fn encode(&self, images: &Tensor<4>) -> Result<Embeddings> {
                match self {
                    $(Self::$variant(e) => e.encode(images),)+
                }
            }
        }
    };
}

// The registry: one row per image encoder, in documentation order.
image_encoders! {
    /// A small CNN trained from scratch (two convolution blocks, 4×4 grid
    /// pooling; small images such as 32×32).
    Scratch = "scratch", scratch ConvEncoder;
    /// ResNet-18/34/50 with torchvision's weight names: a timm folder
    /// (`config.json` with `architecture` `resnet18`, `resnet34` or
    /// `resnet50`, and `model.safetensors`).
    ResNet = "resnet", pretrained ResNet;
    /// ViT (Hugging Face `ViTModel`, `model_type` `vit`).
    Vit = "vit", pretrained Vit;
}

impl AnyImageEncoder {
    /// Loads a model folder as the kind its `config.json` names
    /// ([`ImageEncoderKind::detect`]).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        ImageEncoderKind::detect(dir)?.load(dir, device)
    }
}

impl ImageEncoderKind {
    /// Whether the kind is loaded from a model folder (the others are
    /// trained from scratch).
    pub fn is_pretrained(self) -> bool {
        self.folders().is_some()
    }

    /// The pretrained kind of the model folder `dir`, from its
    /// `config.json`: its `model_type`, or when it has none its
    /// `architectures` (timm: `architecture`). A folder without
    /// `config.json`, or of a model type no kind loads, is an
    /// [`Error::Config`] naming the folder, what it found and the supported
    /// types.
    pub fn detect(dir: impl AsRef<Path>) -> Result<Self> {
        let found = FolderConfig::read(dir.as_ref(), "image")?;
        let kinds = Self::ALL
            .into_iter()
            .filter_map(|k| k.folders().map(|f| (k, f)));
        found.pick(kinds)
    }
}

impl std::fmt::Display for ImageEncoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ImageEncoderKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                Error::Config(format!(
                    "unknown image encoder `{s}` (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// The names in `config.json` that identify a pretrained kind's folders.
#[derive(Debug, Clone, Copy)]
struct FolderNames {
    model_types: &'static [&'static str],
    architectures: &'static [&'static str],
}

/// What a model folder's `config.json` says the model is.
struct FolderConfig {
    /// The `config.json` file.
    path: std::path::PathBuf,
    /// The modality of the registry reading it (for the errors).
    modality: &'static str,
    model_type: Option<String>,
    /// `architectures` (transformers) and `architecture` (timm).
    architectures: Vec<String>,
}

impl FolderConfig {
    /// Reads `dir/config.json` for the registry of `modality`.
    fn read(dir: &Path, modality: &'static str) -> Result<Self> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(Error::Config(format!(
                "{}: no config.json, so the kind of {modality} encoder cannot be told \
                 (a Hugging Face model folder has one)",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let model_type = json["model_type"].as_str().map(str::to_string);
        let mut architectures: Vec<String> = json["architectures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        architectures.extend(json["architecture"].as_str().map(str::to_string));
        Ok(Self {
            path,
            modality,
            model_type,
            architectures,
        })
    }

    /// The kind among `kinds` that the folder holds: the one listing its
    /// `model_type`, or when it has none, the one with a prefix of one of
    /// its architectures.
    fn pick<K: Copy + std::fmt::Display>(
        &self,
        kinds: impl Iterator<Item = (K, FolderNames)> + Clone,
    ) -> Result<K> {
        let found = match &self.model_type {
            Some(model_type) => kinds
                .clone()
                .find(|(_, names)| names.model_types.contains(&model_type.as_str())),
            None => kinds.clone().find(|(_, names)| {
                self.architectures
                    .iter()
                    .any(|a| names.architectures.iter().any(|p| a.starts_with(p)))
            }),
        };
        if let Some((kind, _)) = found {
            return Ok(kind);
        }
        let quoted = |names: &[&str], suffix: &str| {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}{suffix}`")).collect();
            names.join(", ")
        };
        let supported: Vec<String> = kinds
            .map(|(kind, names)| {
                let mut ways = Vec::new();
                if !names.model_types.is_empty() {
                    ways.push(format!("model_type {}", quoted(names.model_types, "")));
                }
                if !names.architectures.is_empty() {
                    ways.push(format!(
                        "architectures {}",
                        quoted(names.architectures, "…")
                    ));
                }
                format!("`{kind}` ({})", ways.join("; "))
            })
            .collect();
        let what = match &self.model_type {
            Some(model_type) => format!("model_type `{model_type}`"),
            None if self.architectures.is_empty() => {
                "neither a model_type nor architectures".to_string()
            }
            None => format!("no model_type, architectures {:?},", self.architectures),
        };
        Err(Error::Config(format!(
            "{}: {what} is not a {} encoder polymodal loads (supported: {})",
            self.path.display(),
            self.modality,
            supported.join(", ")
        )))
    }
}

// How the encoders above are built or loaded (their own files predate the
// registry).

impl ScratchImageEncoder for ConvEncoder {
    /// [`ConvEncoderConfig`]'s defaults (16 and 32 channels) at `dim`.
    fn init(sizes: &ImageEncoderSizes, device: &Device) -> Result<Self> {
        Ok(ConvEncoderConfig::new(sizes.channels)
            .with_dim(sizes.dim)
            .init(device))
    }
}

impl PretrainedImageEncoder for ResNet {
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

impl PretrainedImageEncoder for Vit {
    const MODEL_TYPES: &'static [&'static str] = &["vit"];
    const ARCHITECTURES: &'static [&'static str] = &["ViT"];

    /// [`Vit::load`]: the class token is the pooled vector.
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        Vit::load(dir, device)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/parity/encoders")
            .join(name)
    }

    /// A fresh folder with `config` as its `config.json` (none when `None`).
    fn folder(name: &str, config: Option<&str>) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "polymodal-image-registry-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(config) = config {
            std::fs::write(dir.join("config.json"), config).unwrap();
        }
        dir
    }

    fn images(side: usize, device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..2 * 3 * side * side)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        Tensor::from_data(TensorData::new(values, [2, 3, side, side]), device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for (i, kind) in ImageEncoderKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.name().parse::<ImageEncoderKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(
                serde_json::from_str::<ImageEncoderKind>(&json).unwrap(),
                kind
            );
            assert!(
                !ImageEncoderKind::ALL[..i]
                    .iter()
                    .any(|k| k.name() == kind.name()),
                "the name {kind} is used twice"
            );
        }
        let names: Vec<&str> = ImageEncoderKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["scratch", "resnet", "vit"]);
        let error = "swin".parse::<ImageEncoderKind>().unwrap_err().to_string();
        assert!(error.contains("unknown image encoder `swin`"), "{error}");
    }

    /// The from-scratch kind builds at the sizes asked for and encodes; a
    /// pretrained kind cannot be built from sizes, nor a from-scratch one
    /// loaded.
    #[test]
    fn scratch_kinds_build_and_pretrained_kinds_load() {
        let device = Device::flex();
        let sizes = ImageEncoderSizes {
            channels: 3,
            dim: 8,
        };
        for kind in ImageEncoderKind::ALL {
            let built = kind.init(&sizes, &device);
            if kind.is_pretrained() {
                let error = built.unwrap_err().to_string();
                assert!(error.contains("is pretrained"), "{kind}: {error}");
                continue;
            }
            let encoder = built.unwrap();
            assert_eq!(encoder.kind(), kind);
            assert_eq!((encoder.dim(), encoder.modality()), (8, Modality::Image));
            let embeddings = encoder.encode(&images(16, &device)).unwrap();
            assert_eq!(embeddings.pooled.dims(), [2, 8], "{kind}");
            let error = kind.load(fixture("vit"), &device).unwrap_err();
            assert!(error.to_string().contains("from scratch"), "{error}");
        }
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
        let error = ImageEncoderKind::detect(fixture("clip"))
            .unwrap_err()
            .to_string();
        let config = fixture("clip").join("config.json");
        assert!(error.contains(&config.display().to_string()), "{error}");
        assert!(error.contains("model_type `clip`"), "{error}");
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

    /// Loading through the registry gives the direct loader's model: the
    /// same embeddings, to the bit.
    #[test]
    fn load_through_the_registry_is_the_direct_loader() {
        let device = Device::flex();
        let (direct, _) = Vit::load(fixture("vit"), &device).unwrap();
        let (any, report) = AnyImageEncoder::load(fixture("vit"), &device).unwrap();
        assert!(report.unexpected.is_empty(), "{report:?}");
        assert_eq!(any.kind(), ImageEncoderKind::Vit);
        let input = images(16, &device);
        let (a, b) = (direct.encode(&input).unwrap(), any.encode(&input).unwrap());
        assert_eq!(values(a.pooled), values(b.pooled));
        assert_eq!(values(a.sequence), values(b.sequence));
    }
}
