//! What the encoder registries of the modality crates share: the traits an
//! encoder implements to be listed ([`ScratchEncoder`], [`PretrainedEncoder`]),
//! the reading of a model folder's `config.json` that finds its kind
//! ([`FolderConfig`]), the parsing of a kind's name ([`parse_name`]), and the
//! macro that makes a registry from its table
//! ([`encoder_registry!`](crate::encoder_registry)).
//!
//! Each modality crate (polymodal-text, polymodal-image, polymodal-audio)
//! calls [`encoder_registry!`](crate::encoder_registry) once, in its
//! `src/registry.rs`, with one row per encoder; see `docs/encoders.md`.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::{Encoder, Error, LoadReport, Result};

/// An encoder trained from scratch, listed in a registry: how the
/// registry's kind (its `init`, made by
/// [`encoder_registry!`](crate::encoder_registry)) builds it from the
/// modality's `Sizes` (`polymodal_text::TextEncoderSizes`, …).
pub trait ScratchEncoder<Sizes>: Encoder + Sized {
    /// A freshly initialised encoder of `sizes`.
    fn init(sizes: &Sizes, device: &Device) -> Result<Self>;
}

/// A pretrained encoder listed in a registry: which model folders hold one
/// (the kind's `detect`, made by
/// [`encoder_registry!`](crate::encoder_registry), see [`FolderConfig`]) and
/// how the kind's `load` reads them.
pub trait PretrainedEncoder: Encoder + Sized {
    /// The `model_type`s of its folders' `config.json`.
    const MODEL_TYPES: &'static [&'static str];
    /// Prefixes of its `architectures` names (`BertModel`,
    /// `BertForMaskedLM`), or of timm's `architecture` (`resnet50.a1_in1k`),
    /// read when `config.json` has no `model_type`.
    const ARCHITECTURES: &'static [&'static str];
    /// Loads a model folder of this kind; the report lists the tensors of
    /// the file the encoder did not use.
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)>;
}

/// A registry's kind enum, as code that works with every modality's
/// registry sees it ([`encoder_registry!`](crate::encoder_registry)
/// implements it; the kind's inherent methods are the same).
pub trait EncoderKind:
    Copy + PartialEq + std::fmt::Debug + std::fmt::Display + Sized + 'static
{
    /// What a from-scratch kind is built from.
    type Sizes;
    /// The encoder enum of the registry.
    type Any: Encoder;
    /// Every kind, in documentation order.
    fn all() -> &'static [Self];
    /// Whether the kind is loaded from a model folder.
    fn is_pretrained(self) -> bool;
    /// A fresh encoder of a from-scratch kind.
    fn init(self, sizes: &Self::Sizes, device: &Device) -> Result<Self::Any>;
    /// A pretrained kind's encoder loaded from the model folder `dir`.
    fn load(self, dir: &Path, device: &Device) -> Result<(Self::Any, LoadReport)>;
    /// The kind of an encoder of the registry.
    fn of(encoder: &Self::Any) -> Self;
    /// The kind named `name` in configs.
    fn parse(name: &str) -> Result<Self>;
    /// The pretrained kind of the model folder `dir`, from its `config.json`.
    fn detect(dir: &Path) -> Result<Self>;
}

/// The names in `config.json` that identify a pretrained kind's folders.
#[derive(Debug, Clone, Copy)]
pub struct FolderNames {
    /// [`PretrainedEncoder::MODEL_TYPES`].
    pub model_types: &'static [&'static str],
    /// [`PretrainedEncoder::ARCHITECTURES`].
    pub architectures: &'static [&'static str],
}

impl FolderNames {
    /// The names of the folders of the pretrained encoder `E`.
    pub const fn of<E: PretrainedEncoder>() -> Self {
        Self {
            model_types: E::MODEL_TYPES,
            architectures: E::ARCHITECTURES,
        }
    }
}

/// What a model folder's `config.json` says the model is.
#[derive(Debug, Clone)]
pub struct FolderConfig {
    /// The `config.json` file.
    path: PathBuf,
    /// The modality of the registry reading it (for the errors).
    modality: &'static str,
    model_type: Option<String>,
    /// `architectures` (transformers) and `architecture` (timm).
    architectures: Vec<String>,
}

impl FolderConfig {
    /// Reads `dir/config.json` for the registry of `modality` (`"text"`,
    /// named in the errors). A folder without one, or a file that is not
    /// JSON, is an [`Error::Config`] naming it.
    pub fn read(dir: &Path, modality: &'static str) -> Result<Self> {
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
    /// its architectures. None is an [`Error::Config`] naming the file, what
    /// it found and the supported kinds.
    pub fn pick<K: Copy + std::fmt::Display>(
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

/// The kind among `kinds` named `s` (by `name`); another name is an
/// [`Error::Config`]: "unknown `what` `s` (expected one of …)".
///
/// ```
/// use polymodal_core::registry::parse_name;
///
/// let name = |n: u8| ["one", "two"][n as usize];
/// assert_eq!(parse_name("two", &[0, 1], name, "number").unwrap(), 1);
/// let error = parse_name("three", &[0, 1], name, "number").unwrap_err();
/// assert_eq!(
///     error.to_string().split_once("unknown").unwrap().1,
///     " number `three` (expected one of one, two)"
/// );
/// ```
pub fn parse_name<K: Copy>(
    s: &str,
    kinds: &[K],
    name: impl Fn(K) -> &'static str,
    what: &str,
) -> Result<K> {
    kinds
        .iter()
        .copied()
        .find(|&k| name(k) == s)
        .ok_or_else(|| {
            let names: Vec<&str> = kinds.iter().map(|&k| name(k)).collect();
            Error::Config(format!(
                "unknown {what} `{s}` (expected one of {})",
                names.join(", ")
            ))
        })
}

/// What the expansion of [`encoder_registry!`](crate::encoder_registry)
/// names through `$crate`.
#[doc(hidden)]
pub mod __private {
    pub use burn::prelude::Device;
}

/// Generates a modality's registry of encoders from its table: the kind
/// named in configs and the `#[derive(Module)]` enum holding an encoder of
/// any kind, which implements [`Encoder`](crate::Encoder) by dispatch.
///
/// ```text
/// polymodal_core::encoder_registry! {
///     /// (docs of the kind enum)
///     kind TextEncoderKind;
///     /// (docs of the encoder enum)
///     any AnyTextEncoder(TokenBatch);
///     sizes TextEncoderSizes;
///     modality "text";
///     rows {
///         /// (docs of the kind)
///         Scratch = "scratch", scratch TextEncoder;
///         Bert = "bert", pretrained Bert;
///     }
/// }
/// ```
///
/// - `kind` names the kind enum: `Copy`, serde by name, with `ALL` (the
///   kinds in the table's order), `name`, `init`, `load`, `is_pretrained`,
///   `detect` (from a folder's `config.json`, [`FolderConfig`]), `Display`
///   and `FromStr` ([`parse_name`]);
/// - `any` names the encoder enum, an `Encoder` of the given input, with
///   `kind`, `load` (detect, then load) and `From` each encoder type;
/// - `sizes` is what [`ScratchEncoder`]s are built from;
/// - `modality` is the word of the errors (`unknown text encoder …`);
/// - each row is `Variant = "name", source Encoder;` with the kind's doc
///   comment above it: `source` is `scratch` (the encoder implements
///   [`ScratchEncoder`]`<Sizes>`, `init` builds it) or `pretrained` (it
///   implements [`PretrainedEncoder`], `load` reads it and `detect` finds
///   it). A row may end with `, layout_fn`: a function from the enum's input
///   to the encoder's own (`fn(&Input) -> Result<Own>`), applied before each
///   `encode`.
///
/// The caller's crate must depend on `burn` and `serde` (the derives name
/// them).
#[macro_export]
macro_rules! encoder_registry {
    (@init scratch, $any:ident, $variant:ident, $encoder:ident, $sizes_ty:ident, $what:literal, $name:literal, $sizes:ident, $device:ident) => {
        ::core::result::Result::Ok($any::$variant(
            <$encoder as $crate::registry::ScratchEncoder<$sizes_ty>>::init($sizes, $device)?,
        ))
    };
    (@init pretrained, $any:ident, $variant:ident, $encoder:ident, $sizes_ty:ident, $what:literal, $name:literal, $sizes:ident, $device:ident) => {
        ::core::result::Result::Err($crate::Error::Config(::std::format!(
            "{} encoder `{}` is pretrained: load it from a model folder",
            $what,
            $name
        )))
    };
    (@load scratch, $any:ident, $variant:ident, $encoder:ident, $what:literal, $name:literal, $dir:ident, $device:ident) => {
        ::core::result::Result::Err($crate::Error::Config(::std::format!(
            "{} encoder `{}` is trained from scratch: there is no folder to load ({})",
            $what,
            $name,
            $dir.display()
        )))
    };
    (@load pretrained, $any:ident, $variant:ident, $encoder:ident, $what:literal, $name:literal, $dir:ident, $device:ident) => {{
        let (encoder, report) =
            <$encoder as $crate::registry::PretrainedEncoder>::load($dir, $device)?;
        ::core::result::Result::Ok(($any::$variant(encoder), report))
    }};
    (@folders scratch, $encoder:ident) => {
        ::core::option::Option::None
    };
    (@folders pretrained, $encoder:ident) => {
        ::core::option::Option::Some($crate::registry::FolderNames::of::<$encoder>())
    };
    (@input $input:ident) => {
        $input
    };
    (@input $input:ident, $layout:path) => {
        &$layout($input)?
    };
    (
        $(#[$kind_doc:meta])*
        kind $kind:ident;
        $(#[$any_doc:meta])*
        any $any:ident($input:ty);
        sizes $sizes:ident;
        modality $what:literal;
        rows {$(
            $(#[$doc:meta])*
            $variant:ident = $name:literal, $source:ident $encoder:ident $(, $layout:path)?;
        )+}
    ) => {
        $(#[$kind_doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $kind {
            $(
                $(#[$doc])*
                #[serde(rename = $name)]
                $variant,
            )+
        }

        impl $kind {
            /// Every kind, in documentation order.
            pub const ALL: [$kind; [$($name),+].len()] = [$(Self::$variant),+];

            /// The name used in configs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// A fresh encoder of this kind with `sizes`, to train from
            /// scratch; a pretrained kind is an
            /// [`Error::Config`](polymodal_core::Error::Config) (load it with
            /// [`Self::load`]).
            pub fn init(
                self,
                sizes: &$sizes,
                device: &$crate::registry::__private::Device,
            ) -> $crate::Result<$any> {
                match self {
                    $(Self::$variant => $crate::encoder_registry!(
                        @init $source, $any, $variant, $encoder, $sizes, $what, $name, sizes, device
                    ),)+
                }
            }

            #[doc = concat!(
                "Loads the model folder `dir` as an encoder of this kind; a \
                 from-scratch kind is an \
                 [`Error::Config`](polymodal_core::Error::Config). See [`",
                stringify!($any),
                "::load`] to find the kind from the folder."
            )]
            pub fn load(
                self,
                dir: impl ::core::convert::AsRef<::std::path::Path>,
                device: &$crate::registry::__private::Device,
            ) -> $crate::Result<($any, $crate::LoadReport)> {
                let dir = dir.as_ref();
                match self {
                    $(Self::$variant => $crate::encoder_registry!(
                        @load $source, $any, $variant, $encoder, $what, $name, dir, device
                    ),)+
                }
            }

            /// The names in `config.json` that identify the folders of a
            /// pretrained kind; `None` for a from-scratch kind.
            fn folders(self) -> ::core::option::Option<$crate::registry::FolderNames> {
                match self {
                    $(Self::$variant => $crate::encoder_registry!(@folders $source, $encoder),)+
                }
            }

            /// Whether the kind is loaded from a model folder (the others are
            /// trained from scratch).
            pub fn is_pretrained(self) -> bool {
                self.folders().is_some()
            }

            /// The pretrained kind of the model folder `dir`, from its
            /// `config.json`: its `model_type`, or when it has none its
            /// `architectures` (timm: `architecture`). A folder without
            /// `config.json`, or of a model type no kind loads, is an
            /// [`Error::Config`](polymodal_core::Error::Config) naming the
            /// folder, what it found and the supported types.
            pub fn detect(dir: impl ::core::convert::AsRef<::std::path::Path>) -> $crate::Result<Self> {
                let found = $crate::registry::FolderConfig::read(dir.as_ref(), $what)?;
                let kinds = Self::ALL
                    .into_iter()
                    .filter_map(|k| k.folders().map(|f| (k, f)));
                found.pick(kinds)
            }
        }

        impl $crate::registry::EncoderKind for $kind {
            type Sizes = $sizes;
            type Any = $any;

            fn all() -> &'static [Self] {
                &Self::ALL
            }

            fn is_pretrained(self) -> bool {
                $kind::is_pretrained(self)
            }

            fn init(
                self,
                sizes: &$sizes,
                device: &$crate::registry::__private::Device,
            ) -> $crate::Result<$any> {
                $kind::init(self, sizes, device)
            }

            fn load(
                self,
                dir: &::std::path::Path,
                device: &$crate::registry::__private::Device,
            ) -> $crate::Result<($any, $crate::LoadReport)> {
                $kind::load(self, dir, device)
            }

            fn of(encoder: &$any) -> Self {
                encoder.kind()
            }

            fn parse(name: &str) -> $crate::Result<Self> {
                name.parse()
            }

            fn detect(dir: &::std::path::Path) -> $crate::Result<Self> {
                $kind::detect(dir)
            }
        }

        impl ::std::fmt::Display for $kind {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $kind {
            type Err = $crate::Error;

            fn from_str(s: &str) -> $crate::Result<Self> {
                $crate::registry::parse_name(s, &Self::ALL, Self::name, concat!($what, " encoder"))
            }
        }

        $(#[$any_doc])*
        // A model holds one encoder per modality: the size of the largest
        // variant costs nothing worth boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(::burn::module::Module, Debug)]
        pub enum $any {
            $(
                #[doc = concat!(
                    "A [`", stringify!($encoder), "`] (`", $name, "`)",
                    $(", reading [`", stringify!($layout), "`]",)?
                    "."
                )]
                $variant($encoder),
            )+
        }

        impl $any {
            /// The kind of the encoder.
            pub fn kind(&self) -> $kind {
                match self {
                    $(Self::$variant(_) => $kind::$variant,)+
                }
            }

            #[doc = concat!(
                "Loads a model folder as the kind its `config.json` names ([`",
                stringify!($kind),
                "::detect`])."
            )]
            pub fn load(
                dir: impl ::core::convert::AsRef<::std::path::Path>,
                device: &$crate::registry::__private::Device,
            ) -> $crate::Result<(Self, $crate::LoadReport)> {
                let dir = dir.as_ref();
                $kind::detect(dir)?.load(dir, device)
            }
        }

        $(
            impl ::core::convert::From<$encoder> for $any {
                fn from(encoder: $encoder) -> Self {
                    Self::$variant(encoder)
                }
            }
        )+

        impl $crate::Encoder for $any {
            type Input = $input;

            fn modality(&self) -> $crate::Modality {
                match self {
                    $(Self::$variant(e) => $crate::Encoder::modality(e),)+
                }
            }

            fn dim(&self) -> usize {
                match self {
                    $(Self::$variant(e) => $crate::Encoder::dim(e),)+
                }
            }

            fn encode(&self, input: &$input) -> $crate::Result<$crate::Embeddings> {
                match self {
                    $(Self::$variant(e) => $crate::Encoder::encode(
                        e,
                        $crate::encoder_registry!(@input input $(, $layout)?),
                    ),)+
                }
            }
        }
    };
}
