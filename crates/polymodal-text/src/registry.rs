//! The registry of the text encoders a model can be built with: the
//! [`TextEncoderKind`] named in configs (or found from a model folder's
//! `config.json`, [`TextEncoderKind::detect`]), and the [`AnyTextEncoder`] it
//! builds or loads.
//!
//! Both are generated from the one table in this file (the call of
//! `text_encoders!`), as polymodal-fusion's registry of fusion layers is. To
//! add an encoder (see `docs/encoders.md`): write it in its own file with
//! its `impl Encoder` (input: [`TokenBatch`]), implement
//! [`ScratchTextEncoder`] (trained from scratch) or [`PretrainedTextEncoder`]
//! (loaded from a Hugging Face folder) for it, and add one row to the table.
//! The impls of the encoders that predate the registry are at the end of
//! this file.
//!
//! CLIP's text tower ([`crate::ClipText`]) is not listed: it does not
//! implement [`Encoder`] (CLIP is used as a whole, [`crate::Clip`]).
//! [`crate::SentenceEncoder`] is not listed either: it wraps a [`Bert`], and a
//! sentence-transformers folder loads as the `bert` kind with the folder's
//! pooling.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use polymodal_core::{
    Embeddings, Encoder, Error, LoadReport, Modality, RecurrentConfig, Result, TokenBatch,
};

// The encoder types the table names.
use crate::{
    Bert, BertPooling, RnnTextEncoder, RnnTextEncoderConfig, SentenceEncoder, TextEncoder,
    TextEncoderConfig,
};

/// The sizes a from-scratch text encoder is built with (a classifier's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextEncoderSizes {
    /// Vocabulary size (the tokenizer's).
    pub vocab_size: usize,
    /// Width of the embeddings.
    pub dim: usize,
    /// Longest token sequence.
    pub max_tokens: usize,
}

/// A text encoder trained from scratch, listed in the registry: how
/// [`TextEncoderKind::init`] builds it.
pub trait ScratchTextEncoder: Encoder<Input = TokenBatch> + Sized {
    /// A freshly initialised encoder of `sizes`.
    fn init(sizes: &TextEncoderSizes, device: &Device) -> Result<Self>;
}

/// A pretrained text encoder listed in the registry: which model folders
/// hold one ([`TextEncoderKind::detect`]) and how [`TextEncoderKind::load`]
/// reads them.
pub trait PretrainedTextEncoder: Encoder<Input = TokenBatch> + Sized {
    /// The `model_type`s of its folders' `config.json`.
    const MODEL_TYPES: &'static [&'static str];
    /// Prefixes of its `architectures` names (`BertModel`,
    /// `BertForMaskedLM`), read when `config.json` has no `model_type`.
    const ARCHITECTURES: &'static [&'static str];
    /// Loads a model folder of this kind; the report lists the tensors of
    /// the file the encoder did not use.
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)>;
}

/// Generates [`TextEncoderKind`] and [`AnyTextEncoder`] from the registry
/// table.
///
/// Each row is `Variant = "name", source Encoder;` with the kind's doc
/// comment above it:
/// - `Variant` names the [`TextEncoderKind`] and the [`AnyTextEncoder`]
///   variants;
/// - `"name"` is the kind's name in configs ([`TextEncoderKind::name`],
///   serde, `Display`, `FromStr`);
/// - `source` is `scratch` (the encoder implements [`ScratchTextEncoder`],
///   [`TextEncoderKind::init`] builds it) or `pretrained` (it implements
///   [`PretrainedTextEncoder`], [`TextEncoderKind::load`] reads it and
///   [`TextEncoderKind::detect`] finds it);
/// - `Encoder` is the encoder type.
///
/// [`TextEncoderKind::ALL`] lists the kinds in the table's order.
macro_rules! text_encoders {
    (@init scratch, $variant:ident, $encoder:ident, $name:literal, $sizes:ident, $device:ident) => {
        Ok(AnyTextEncoder::$variant(<$encoder as ScratchTextEncoder>::init($sizes, $device)?))
    };
    (@init pretrained, $variant:ident, $encoder:ident, $name:literal, $sizes:ident, $device:ident) => {
        Err(Error::Config(format!(
            "text encoder `{}` is pretrained: load it from a model folder",
            $name
        )))
    };
    (@load scratch, $variant:ident, $encoder:ident, $name:literal, $dir:ident, $device:ident) => {
        Err(Error::Config(format!(
            "text encoder `{}` is trained from scratch: there is no folder to load ({})",
            $name,
            $dir.display()
        )))
    };
    (@load pretrained, $variant:ident, $encoder:ident, $name:literal, $dir:ident, $device:ident) => {{
        let (encoder, report) = <$encoder as PretrainedTextEncoder>::load($dir, $device)?;
        Ok((AnyTextEncoder::$variant(encoder), report))
    }};
    (@folders scratch, $encoder:ident) => {
        None
    };
    (@folders pretrained, $encoder:ident) => {
        Some(FolderNames {
            model_types: <$encoder as PretrainedTextEncoder>::MODEL_TYPES,
            architectures: <$encoder as PretrainedTextEncoder>::ARCHITECTURES,
        })
    };
    ($(
        $(#[$doc:meta])*
        $variant:ident = $name:literal, $source:ident $encoder:ident;
    )+) => {
        /// A kind of text encoder: trained from scratch, or pretrained and
        /// loaded from a Hugging Face model folder.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum TextEncoderKind {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl TextEncoderKind {
            /// Every kind, in documentation order.
            pub const ALL: [TextEncoderKind; [$($name),+].len()] = [$(Self::$variant),+];

            /// The name used in configs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// A fresh encoder of this kind with `sizes`, to train from
            /// scratch; a pretrained kind is an [`Error::Config`] (load it
            /// with [`TextEncoderKind::load`]).
            pub fn init(self, sizes: &TextEncoderSizes, device: &Device) -> Result<AnyTextEncoder> {
                match self {
                    $(Self::$variant => text_encoders!(@init $source, $variant, $encoder, $name, sizes, device),)+
                }
            }

            /// Loads the model folder `dir` as an encoder of this kind; a
            /// from-scratch kind is an [`Error::Config`]. See
            /// [`AnyTextEncoder::load`] to find the kind from the folder.
            pub fn load(self, dir: impl AsRef<Path>, device: &Device) -> Result<(AnyTextEncoder, LoadReport)> {
                let dir = dir.as_ref();
                match self {
                    $(Self::$variant => text_encoders!(@load $source, $variant, $encoder, $name, dir, device),)+
                }
            }

            /// The names in `config.json` that identify the folders of a
            /// pretrained kind; `None` for a from-scratch kind.
            fn folders(self) -> Option<FolderNames> {
                match self {
                    $(Self::$variant => text_encoders!(@folders $source, $encoder),)+
                }
            }
        }

        /// A text encoder of any registered kind (one variant per
        /// [`TextEncoderKind`]); an [`Encoder`] of token batches.
        // A model holds one encoder per modality: the size of the largest
        // variant costs nothing worth boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum AnyTextEncoder {
            $(
                #[doc = concat!("A [`", stringify!($encoder), "`] (`", $name, "`).")]
                $variant($encoder),
            )+
        }

        impl AnyTextEncoder {
            /// The kind of the encoder.
            pub fn kind(&self) -> TextEncoderKind {
                match self {
                    $(Self::$variant(_) => TextEncoderKind::$variant,)+
                }
            }
        }

        $(
            impl From<$encoder> for AnyTextEncoder {
                fn from(encoder: $encoder) -> Self {
                    Self::$variant(encoder)
                }
            }
        )+

        impl Encoder for AnyTextEncoder {
            type Input = TokenBatch;

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

            fn encode(&self, input: &TokenBatch) -> Result<Embeddings> {
                match self {
                    $(Self::$variant(e) => e.encode(input),)+
                }
            }
        }
    };
}

// The registry: one row per text encoder, in documentation order.
text_encoders! {
    /// A small Transformer trained from scratch: token and position
    /// embeddings, pre-norm layers, the mean of the real tokens.
    Scratch = "scratch", scratch TextEncoder;
    /// An LSTM trained from scratch: the final state.
    Rnn = "rnn", scratch RnnTextEncoder;
    /// BERT (Hugging Face `BertModel`, `model_type` `bert`), including
    /// sentence-transformers folders such as all-MiniLM-L6-v2.
    Bert = "bert", pretrained Bert;
}

impl AnyTextEncoder {
    /// Loads a Hugging Face model folder as the kind its `config.json`
    /// names ([`TextEncoderKind::detect`]).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        TextEncoderKind::detect(dir)?.load(dir, device)
    }
}

impl TextEncoderKind {
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
        let found = FolderConfig::read(dir.as_ref(), "text")?;
        let kinds = Self::ALL
            .into_iter()
            .filter_map(|k| k.folders().map(|f| (k, f)));
        found.pick(kinds)
    }
}

impl std::fmt::Display for TextEncoderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TextEncoderKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                Error::Config(format!(
                    "unknown text encoder `{s}` (expected one of {})",
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

impl ScratchTextEncoder for TextEncoder {
    /// [`TextEncoderConfig`]'s defaults (one layer, four heads) at `dim`,
    /// with a position table of `max_tokens`.
    fn init(sizes: &TextEncoderSizes, device: &Device) -> Result<Self> {
        Ok(TextEncoderConfig::new(sizes.vocab_size)
            .with_dim(sizes.dim)
            .with_max_length(sizes.max_tokens)
            .init(device))
    }
}

impl ScratchTextEncoder for RnnTextEncoder {
    /// Embeddings of width `dim` and a one-layer, one-direction LSTM as
    /// wide.
    fn init(sizes: &TextEncoderSizes, device: &Device) -> Result<Self> {
        RnnTextEncoderConfig::new(sizes.vocab_size, RecurrentConfig::new(sizes.dim, sizes.dim))
            .with_embedding_dim(sizes.dim)
            .init(device)
    }
}

impl PretrainedTextEncoder for Bert {
    const MODEL_TYPES: &'static [&'static str] = &["bert"];
    const ARCHITECTURES: &'static [&'static str] = &["Bert"];

    /// A sentence-transformers folder (`modules.json` or
    /// `1_Pooling/config.json`) pools as the folder says, as
    /// [`SentenceEncoder`] does (without its L2 normalisation, a step of
    /// `SentenceEncoder::embed`, not of the encoder); any other BERT folder
    /// pools by the mean of the real tokens ([`BertPooling::Mean`]).
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        let sentence_transformers = ["modules.json", "1_Pooling/config.json"]
            .iter()
            .any(|file| dir.join(file).is_file());
        if sentence_transformers {
            let (sentence, report) = SentenceEncoder::load(dir, device)?;
            Ok((sentence.bert().clone(), report))
        } else {
            Bert::load(dir, BertPooling::Mean, device)
        }
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
            "polymodal-text-registry-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(config) = config {
            std::fs::write(dir.join("config.json"), config).unwrap();
        }
        dir
    }

    fn tokens(device: &Device) -> TokenBatch {
        let ids = Tensor::<2, Int>::from_data([[5, 17, 42, 3, 0], [8, 9, 0, 0, 0]], device);
        let mask = ids.clone().not_equal_elem(0);
        TokenBatch { ids, mask }
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for (i, kind) in TextEncoderKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.name().parse::<TextEncoderKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(
                serde_json::from_str::<TextEncoderKind>(&json).unwrap(),
                kind
            );
            assert!(
                !TextEncoderKind::ALL[..i]
                    .iter()
                    .any(|k| k.name() == kind.name()),
                "the name {kind} is used twice"
            );
        }
        let names: Vec<&str> = TextEncoderKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["scratch", "rnn", "bert"]);
        let error = "gpt".parse::<TextEncoderKind>().unwrap_err().to_string();
        assert!(error.contains("unknown text encoder `gpt`"), "{error}");
    }

    /// The from-scratch kinds build at the sizes asked for and encode; a
    /// pretrained kind cannot be built from sizes, nor a from-scratch one
    /// loaded.
    #[test]
    fn scratch_kinds_build_and_pretrained_kinds_load() {
        let device = Device::flex();
        let sizes = TextEncoderSizes {
            vocab_size: 50,
            dim: 8,
            max_tokens: 16,
        };
        for kind in TextEncoderKind::ALL {
            let built = kind.init(&sizes, &device);
            if kind.is_pretrained() {
                let error = built.unwrap_err().to_string();
                assert!(error.contains("is pretrained"), "{kind}: {error}");
                continue;
            }
            let encoder = built.unwrap();
            assert_eq!(encoder.kind(), kind);
            assert_eq!((encoder.dim(), encoder.modality()), (8, Modality::Text));
            let embeddings = encoder.encode(&tokens(&device)).unwrap();
            assert_eq!(embeddings.pooled.dims(), [2, 8], "{kind}");
            let error = kind.load(fixture("bert"), &device).unwrap_err();
            assert!(error.to_string().contains("from scratch"), "{error}");
        }
    }

    #[test]
    fn detect_finds_the_kind_of_a_folder_or_says_why_not() {
        assert_eq!(
            TextEncoderKind::detect(fixture("bert")).unwrap(),
            TextEncoderKind::Bert
        );
        // No model_type: the architectures decide.
        let dir = folder(
            "architectures",
            Some(r#"{"architectures": ["BertForMaskedLM"]}"#),
        );
        assert_eq!(
            TextEncoderKind::detect(&dir).unwrap(),
            TextEncoderKind::Bert
        );
        // An unknown model type names the folder, the type and the supported ones.
        let error = TextEncoderKind::detect(fixture("clip"))
            .unwrap_err()
            .to_string();
        eprintln!("{error}");
        let config = fixture("clip").join("config.json");
        assert!(error.contains(&config.display().to_string()), "{error}");
        assert!(error.contains("model_type `clip`"), "{error}");
        assert!(
            error.contains("`bert` (model_type `bert`; architectures `Bert…`)"),
            "{error}"
        );
        let dir = folder("nothing", Some(r#"{"architectures": ["GPT2LMHeadModel"]}"#));
        let error = TextEncoderKind::detect(&dir).unwrap_err().to_string();
        assert!(error.contains("GPT2LMHeadModel"), "{error}");
        // No config.json at all: the error names the folder.
        let dir = folder("empty", None);
        let error = TextEncoderKind::detect(&dir).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error:?}");
        let error = error.to_string();
        assert!(
            error.contains(&dir.display().to_string()) && error.contains("no config.json"),
            "{error}"
        );
        assert!(AnyTextEncoder::load(&dir, &Device::flex()).is_err());
    }

    /// Loading through the registry gives the direct loader's model: the
    /// same embeddings, to the bit.
    #[test]
    fn load_through_the_registry_is_the_direct_loader() {
        let device = Device::flex();
        let (direct, _) = Bert::load(fixture("bert"), BertPooling::Mean, &device).unwrap();
        let (any, report) = AnyTextEncoder::load(fixture("bert"), &device).unwrap();
        assert!(report.unexpected.is_empty(), "{report:?}");
        assert_eq!(any.kind(), TextEncoderKind::Bert);
        let (a, b) = (
            direct.encode(&tokens(&device)).unwrap(),
            any.encode(&tokens(&device)).unwrap(),
        );
        assert_eq!(values(a.pooled), values(b.pooled));
        let sequence = |t: Tensor<3>| t.try_into_vec_as::<f32>().unwrap();
        assert_eq!(sequence(a.sequence), sequence(b.sequence));
    }

    /// A sentence-transformers folder is the `bert` kind, pooled as the
    /// folder says (the shared all-MiniLM-L6-v2; skipped without it).
    #[test]
    fn a_sentence_transformers_folder_loads_with_its_pooling() {
        let shared = std::env::var_os("POLYMODAL_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
        let dir = shared.join("models/all-MiniLM-L6-v2");
        if !dir.join("config.json").is_file() {
            polymodal_core::testing::skip(format!("{} not found", dir.display()));
            return;
        }
        assert_eq!(
            TextEncoderKind::detect(&dir).unwrap(),
            TextEncoderKind::Bert
        );
        let device = Device::flex();
        let (sentence, _) = SentenceEncoder::load(&dir, &device).unwrap();
        let (any, _) = AnyTextEncoder::load(&dir, &device).unwrap();
        let batch = sentence
            .tokenizer()
            .encode_batch(&["a cat sleeps", "a dog barks loudly"])
            .unwrap()
            .to_tensors(&device)
            .unwrap();
        let direct = sentence.bert().encode(&batch).unwrap().pooled;
        let ours = any.encode(&batch).unwrap().pooled;
        assert_eq!(values(direct), values(ours));
    }
}
