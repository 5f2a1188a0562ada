//! The registry of the audio encoders a model can be built with: the
//! [`AudioEncoderKind`] named in configs (or found from a model folder's
//! `config.json`, [`AudioEncoderKind::detect`]), and the [`AnyAudioEncoder`]
//! it builds or loads.
//!
//! Both are generated from the one table in this file (the call of
//! `audio_encoders!`), as polymodal-fusion's registry of fusion layers is.
//! To add an encoder (see `docs/encoders.md`): write it in its own file with
//! its `impl Encoder`, implement [`ScratchAudioEncoder`] (trained from
//! scratch) or [`PretrainedAudioEncoder`] (loaded from a Hugging Face
//! folder) for it, and add one row to the table, naming the layout of its
//! input (a function of [`layout`]). The impls of the encoders that predate
//! the registry are at the end of this file.
//!
//! Every kind reads what the trainer's batcher makes, log-mel spectrograms
//! `[batch, 1, mels, frames]`: [`AnyAudioEncoder`] turns them into each
//! encoder's own input (Whisper's `[batch, mels, frames]`, AST's `[batch,
//! frames, mels]`).

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_core::{Embeddings, Encoder, Error, LoadReport, Modality, Result};

// The encoder types the table names.
use crate::{Ast, SpectrogramEncoder, SpectrogramEncoderConfig, WhisperEncoder};

/// The sizes a from-scratch audio encoder is built with (a classifier's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioEncoderSizes {
    /// Width of the embeddings.
    pub dim: usize,
}

/// An audio encoder trained from scratch, listed in the registry: how
/// [`AudioEncoderKind::init`] builds it.
pub trait ScratchAudioEncoder: Encoder + Sized {
    /// A freshly initialised encoder of `sizes`.
    fn init(sizes: &AudioEncoderSizes, device: &Device) -> Result<Self>;
}

/// A pretrained audio encoder listed in the registry: which model folders
/// hold one ([`AudioEncoderKind::detect`]) and how
/// [`AudioEncoderKind::load`] reads them.
pub trait PretrainedAudioEncoder: Encoder + Sized {
    /// The `model_type`s of its folders' `config.json`.
    const MODEL_TYPES: &'static [&'static str];
    /// Prefixes of its `architectures` names (`WhisperModel`,
    /// `ASTForAudioClassification`), read when `config.json` has no
    /// `model_type`.
    const ARCHITECTURES: &'static [&'static str];
    /// Loads a model folder of this kind; the report lists the tensors of
    /// the file the encoder did not use.
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)>;
}

/// The layouts an encoder of the table reads, made from the batcher's
/// spectrograms `[batch, 1, mels, frames]` (the last column of a row).
pub mod layout {
    use burn::prelude::*;

    use polymodal_core::{Error, Result};

    /// `[batch, 1, mels, frames]` as it is (the CNN's input).
    pub fn spectrogram(spectrograms: &Tensor<4>) -> Result<Tensor<4>> {
        Ok(spectrograms.clone())
    }

    /// `[batch, mels, frames]`: the channel squeezed out (Whisper's
    /// `input_features`). Anything but one channel is [`Error::Invalid`].
    pub fn mels_by_frames(spectrograms: &Tensor<4>) -> Result<Tensor<3>> {
        let dims = spectrograms.dims();
        if dims[1] != 1 {
            return Err(Error::Invalid(format!(
                "spectrograms must be [batch, 1, mels, frames], got {dims:?}"
            )));
        }
        Ok(spectrograms.clone().squeeze_dim::<3>(1))
    }

    /// `[batch, frames, mels]`: the channel squeezed out, time first (AST's
    /// `input_values`, as `ASTFeatureExtractor` makes them).
    pub fn frames_by_mels(spectrograms: &Tensor<4>) -> Result<Tensor<3>> {
        Ok(mels_by_frames(spectrograms)?.swap_dims(1, 2))
    }
}

/// Generates [`AudioEncoderKind`] and [`AnyAudioEncoder`] from the registry
/// table.
///
/// Each row is `Variant = "name", source Encoder, layout;` with the kind's
/// doc comment above it:
/// - `Variant` names the [`AudioEncoderKind`] and the [`AnyAudioEncoder`]
///   variants;
/// - `"name"` is the kind's name in configs ([`AudioEncoderKind::name`],
///   serde, `Display`, `FromStr`);
/// - `source` is `scratch` (the encoder implements [`ScratchAudioEncoder`],
///   [`AudioEncoderKind::init`] builds it) or `pretrained` (it implements
///   [`PretrainedAudioEncoder`], [`AudioEncoderKind::load`] reads it and
///   [`AudioEncoderKind::detect`] finds it);
/// - `Encoder` is the encoder type;
/// - `layout` is the function of [`layout`] that makes its input from
///   spectrograms `[batch, 1, mels, frames]`.
///
/// [`AudioEncoderKind::ALL`] lists the kinds in the table's order.
macro_rules! audio_encoders {
    (@init scratch, $variant:ident, $encoder:ident, $name:literal, $sizes:ident, $device:ident) => {
        Ok(AnyAudioEncoder::$variant(<$encoder as ScratchAudioEncoder>::init($sizes, $device)?))
    };
    (@init pretrained, $variant:ident, $encoder:ident, $name:literal, $sizes:ident, $device:ident) => {
        Err(Error::Config(format!(
            "audio encoder `{}` is pretrained: load it from a model folder",
            $name
        )))
    };
    (@load scratch, $variant:ident, $encoder:ident, $name:literal, $dir:ident, $device:ident) => {
        Err(Error::Config(format!(
            "audio encoder `{}` is trained from scratch: there is no folder to load ({})",
            $name,
            $dir.display()
        )))
    };
    (@load pretrained, $variant:ident, $encoder:ident, $name:literal, $dir:ident, $device:ident) => {{
        let (encoder, report) = <$encoder as PretrainedAudioEncoder>::load($dir, $device)?;
        Ok((AnyAudioEncoder::$variant(encoder), report))
    }};
    (@folders scratch, $encoder:ident) => {
        None
    };
    (@folders pretrained, $encoder:ident) => {
        Some(FolderNames {
            model_types: <$encoder as PretrainedAudioEncoder>::MODEL_TYPES,
            architectures: <$encoder as PretrainedAudioEncoder>::ARCHITECTURES,
        })
    };
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $source:ident $encoder:ident, $layout:ident;
    )+) => {
        /// A kind of audio encoder: trained from scratch, or pretrained and
        /// loaded from a Hugging Face model folder.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum AudioEncoderKind {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl AudioEncoderKind {
            /// Every kind, in documentation order.
            pub const ALL: [AudioEncoderKind; [$($name),+].len()] = [$(Self::$variant),+];

            /// The name used in configs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// A fresh encoder of this kind with `sizes`, to train from
            /// scratch; a pretrained kind is an [`Error::Config`] (load it
            /// with [`AudioEncoderKind::load`]).
            pub fn init(self, sizes: &AudioEncoderSizes, device: &Device) -> Result<AnyAudioEncoder> {
                match self {
                    $(Self::$variant => audio_encoders!(@init $source, $variant, $encoder, $name, sizes, device),)+
                }
            }

            /// Loads the model folder `dir` as an encoder of this kind; a
            /// from-scratch kind is an [`Error::Config`]. See
            /// [`AnyAudioEncoder::load`] to find the kind from the folder.
            pub fn load(self, dir: impl AsRef<Path>, device: &Device) -> Result<(AnyAudioEncoder, LoadReport)> {
                let dir = dir.as_ref();
                match self {
                    $(Self::$variant => audio_encoders!(@load $source, $variant, $encoder, $name, dir, device),)+
                }
            }

            /// The names in `config.json` that identify the folders of a
            /// pretrained kind; `None` for a from-scratch kind.
            fn folders(self) -> Option<FolderNames> {
                match self {
                    $(Self::$variant => audio_encoders!(@folders $source, $encoder),)+
                }
            }
        }

        /// An audio encoder of any registered kind (one variant per
        /// [`AudioEncoderKind`]); an [`Encoder`] of spectrograms `[batch, 1,
        /// mels, frames]`, which it passes to each encoder in its own
        /// [`layout`].
        // A model holds one encoder per modality: the size of the largest
        // variant costs nothing worth boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum AnyAudioEncoder {
            $(
                #[doc = concat!("A [`", stringify!($encoder), "`] (`", $name, "`), reading [`layout::", stringify!($layout), "`].")]
                $variant($encoder),
            )+
        }

        impl AnyAudioEncoder {
            /// The kind of the encoder.
            pub fn kind(&self) -> AudioEncoderKind {
                match self {
                    $(Self::$variant(_) => AudioEncoderKind::$variant,)+
                }
            }
        }

        $(
            impl From<$encoder> for AnyAudioEncoder {
                fn from(encoder: $encoder) -> Self {
                    Self::$variant(encoder)
                }
            }
        )+

        impl Encoder for AnyAudioEncoder {
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

            /// `spectrograms` `[batch, 1, mels, frames]`, in the encoder's
            /// layout; a shape it cannot read is [`Error::Invalid`].
            fn encode(&self, spectrograms: &Tensor<4>) -> Result<Embeddings> {
                match self {
                    $(Self::$variant(e) => e.encode(&layout::$layout(spectrograms)?),)+
                }
            }
        }
    };
}

// The registry: one row per audio encoder, in documentation order.
audio_encoders! {
    /// A CNN over log-mel spectrograms trained from scratch (time steps are
    /// the tokens).
    Scratch = "scratch", scratch SpectrogramEncoder, spectrogram;
    /// The Audio Spectrogram Transformer (Hugging Face `ASTModel`,
    /// `model_type` `audio-spectrogram-transformer`).
    Ast = "ast", pretrained Ast, frames_by_mels;
    /// Whisper's encoder (Hugging Face `WhisperModel.encoder`, `model_type`
    /// `whisper`).
    Whisper = "whisper", pretrained WhisperEncoder, mels_by_frames;
}

impl AnyAudioEncoder {
    /// Loads a Hugging Face model folder as the kind its `config.json`
    /// names ([`AudioEncoderKind::detect`]).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        AudioEncoderKind::detect(dir)?.load(dir, device)
    }
}

impl AudioEncoderKind {
    /// Whether the kind is loaded from a model folder (the others are
    /// trained from scratch).
    pub fn is_pretrained(self) -> bool {
        self.folders().is_some()
    }

    /// The pretrained kind of the model folder `dir`, from its
    /// `config.json`: its `model_type`, or when it has none its
    /// `architectures`. A folder without `config.json`, or of a model type
    /// no kind loads, is an [`Error::Config`] naming the folder, what it
    /// found and the supported types.
    pub fn detect(dir: impl AsRef<Path>) -> Result<Self> {
        let found = FolderConfig::read(dir.as_ref(), "audio")?;
        let kinds = Self::ALL
            .into_iter()
            .filter_map(|k| k.folders().map(|f| (k, f)));
        found.pick(kinds)
    }
}

impl std::fmt::Display for AudioEncoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AudioEncoderKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                Error::Config(format!(
                    "unknown audio encoder `{s}` (expected one of {})",
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

impl ScratchAudioEncoder for SpectrogramEncoder {
    /// [`SpectrogramEncoderConfig`]'s defaults (16 and 32 channels) at `dim`.
    fn init(sizes: &AudioEncoderSizes, device: &Device) -> Result<Self> {
        Ok(SpectrogramEncoderConfig::new()
            .with_dim(sizes.dim)
            .init(device))
    }
}

impl PretrainedAudioEncoder for Ast {
    const MODEL_TYPES: &'static [&'static str] = &["audio-spectrogram-transformer"];
    const ARCHITECTURES: &'static [&'static str] = &["AST"];

    /// [`Ast::load`].
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        Ast::load(dir, device)
    }
}

impl PretrainedAudioEncoder for WhisperEncoder {
    const MODEL_TYPES: &'static [&'static str] = &["whisper"];
    const ARCHITECTURES: &'static [&'static str] = &["Whisper"];

    /// [`WhisperEncoder::load`] (the decoder's tensors are reported unused).
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        WhisperEncoder::load(dir, device)
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
            "polymodal-audio-registry-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(config) = config {
            std::fs::write(dir.join("config.json"), config).unwrap();
        }
        dir
    }

    /// Spectrograms `[batch, 1, mels, frames]` as the batcher makes them.
    fn spectrograms(batch: usize, mels: usize, frames: usize, device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..batch * mels * frames)
            .map(|i| (i as f32 * 0.23).sin())
            .collect();
        Tensor::from_data(TensorData::new(values, [batch, 1, mels, frames]), device)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for (i, kind) in AudioEncoderKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.name().parse::<AudioEncoderKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(
                serde_json::from_str::<AudioEncoderKind>(&json).unwrap(),
                kind
            );
            assert!(
                !AudioEncoderKind::ALL[..i]
                    .iter()
                    .any(|k| k.name() == kind.name()),
                "the name {kind} is used twice"
            );
        }
        let names: Vec<&str> = AudioEncoderKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["scratch", "ast", "whisper"]);
        let error = "wav2vec2"
            .parse::<AudioEncoderKind>()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown audio encoder `wav2vec2`"),
            "{error}"
        );
    }

    /// The from-scratch kind builds at the sizes asked for and encodes; a
    /// pretrained kind cannot be built from sizes, nor a from-scratch one
    /// loaded.
    #[test]
    fn scratch_kinds_build_and_pretrained_kinds_load() {
        let device = Device::flex();
        let sizes = AudioEncoderSizes { dim: 8 };
        for kind in AudioEncoderKind::ALL {
            let built = kind.init(&sizes, &device);
            if kind.is_pretrained() {
                let error = built.unwrap_err().to_string();
                assert!(error.contains("is pretrained"), "{kind}: {error}");
                continue;
            }
            let encoder = built.unwrap();
            assert_eq!(encoder.kind(), kind);
            assert_eq!((encoder.dim(), encoder.modality()), (8, Modality::Audio));
            let embeddings = encoder.encode(&spectrograms(2, 16, 20, &device)).unwrap();
            assert_eq!(embeddings.pooled.dims(), [2, 8], "{kind}");
            let error = kind.load(fixture("whisper"), &device).unwrap_err();
            assert!(error.to_string().contains("from scratch"), "{error}");
        }
    }

    #[test]
    fn detect_finds_the_kind_of_a_folder_or_says_why_not() {
        assert_eq!(
            AudioEncoderKind::detect(fixture("ast")).unwrap(),
            AudioEncoderKind::Ast
        );
        assert_eq!(
            AudioEncoderKind::detect(fixture("whisper")).unwrap(),
            AudioEncoderKind::Whisper
        );
        // No model_type: the architectures decide.
        let dir = folder(
            "architectures",
            Some(r#"{"architectures": ["ASTForAudioClassification"]}"#),
        );
        assert_eq!(
            AudioEncoderKind::detect(&dir).unwrap(),
            AudioEncoderKind::Ast
        );
        // An unknown model type names the folder, the type and the supported ones.
        let error = AudioEncoderKind::detect(fixture("bert"))
            .unwrap_err()
            .to_string();
        let config = fixture("bert").join("config.json");
        assert!(error.contains(&config.display().to_string()), "{error}");
        assert!(error.contains("model_type `bert`"), "{error}");
        assert!(
            error.contains("`ast` (model_type `audio-spectrogram-transformer`")
                && error.contains("`whisper` (model_type `whisper`"),
            "{error}"
        );
        // No config.json at all: the error names the folder.
        let dir = folder("empty", None);
        let error = AudioEncoderKind::detect(&dir).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error:?}");
        let error = error.to_string();
        assert!(
            error.contains(&dir.display().to_string()) && error.contains("no config.json"),
            "{error}"
        );
    }

    /// Loading through the registry gives the direct loader's model: the
    /// same embeddings, to the bit, from the batcher's layout
    /// `[batch, 1, mels, frames]`.
    #[test]
    fn load_through_the_registry_is_the_direct_loader() {
        let device = Device::flex();
        // Whisper reads [batch, mels, frames]: 8 mels, 32 frames.
        let (direct, _) = WhisperEncoder::load(fixture("whisper"), &device).unwrap();
        let (any, _) = AnyAudioEncoder::load(fixture("whisper"), &device).unwrap();
        assert_eq!(any.kind(), AudioEncoderKind::Whisper);
        let input = spectrograms(2, 8, 32, &device);
        let a = direct.encode(&input.clone().reshape([2, 8, 32])).unwrap();
        let b = any.encode(&input).unwrap();
        assert_eq!(values(a.pooled), values(b.pooled));
        assert_eq!(values(a.sequence), values(b.sequence));
        // AST reads [batch, frames, mels]: 10 mels, 12 frames.
        let (direct, _) = Ast::load(fixture("ast"), &device).unwrap();
        let (any, report) = AnyAudioEncoder::load(fixture("ast"), &device).unwrap();
        assert!(report.unexpected.is_empty(), "{report:?}");
        assert_eq!(any.kind(), AudioEncoderKind::Ast);
        let input = spectrograms(2, 10, 12, &device);
        let time_first = input.clone().reshape([2, 10, 12]).swap_dims(1, 2);
        let a = direct.encode(&time_first).unwrap();
        let b = any.encode(&input).unwrap();
        assert_eq!(values(a.pooled), values(b.pooled));
        assert_eq!(values(a.sequence), values(b.sequence));
        // Two channels are not spectrograms: an error, not a panic.
        let two = Tensor::<4>::zeros([2, 2, 10, 12], &device);
        let error = any.encode(&two).unwrap_err();
        assert!(matches!(error, Error::Invalid(_)), "{error:?}");
        // Nor is the wrong size for a pretrained model.
        assert!(any.encode(&spectrograms(1, 10, 11, &device)).is_err());
    }
}
