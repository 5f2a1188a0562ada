//! The registry of the text encoders a model can be built with: the
//! [`TextEncoderKind`] named in configs (or found from a model folder's
//! `config.json`, [`TextEncoderKind::detect`]), and the [`AnyTextEncoder`] it
//! builds or loads.
//!
//! Both are generated from the one table in this file (the call of
//! [`polymodal_core::encoder_registry!`]), as polymodal-fusion's registry of
//! fusion layers is. To add an encoder (see `docs/encoders.md`): write it in
//! its own file with its `impl Encoder` (input: [`TokenBatch`]), implement
//! [`ScratchEncoder`]`<`[`TextEncoderSizes`]`>` (trained from scratch) or
//! [`PretrainedEncoder`] (loaded from a Hugging Face folder) for it, and add
//! one row to the table. The impls of the encoders that predate the registry
//! are at the end of this file.
//!
//! [`crate::SentenceEncoder`] is not listed: it wraps a [`Bert`], and a
//! sentence-transformers folder loads as the `bert` kind with the folder's
//! pooling. A CLIP folder is the `clip` kind here (its text tower) and in
//! polymodal-image's registry (its vision tower).

use std::path::Path;

use burn::prelude::*;

use polymodal_core::registry::{PretrainedEncoder, ScratchEncoder};
use polymodal_core::{LoadReport, RecurrentConfig, Result, TokenBatch};

// The encoder types the table names.
use crate::{
    Bert, BertPooling, ClipText, RnnTextEncoder, RnnTextEncoderConfig, SentenceEncoder,
    TextEncoder, TextEncoderConfig,
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

// The registry: one row per text encoder, in documentation order.
polymodal_core::encoder_registry! {
    /// A kind of text encoder: trained from scratch, or pretrained and
    /// loaded from a Hugging Face model folder.
    kind TextEncoderKind;
    /// A text encoder of any registered kind (one variant per
    /// [`TextEncoderKind`]); an [`Encoder`](polymodal_core::Encoder) of
    /// token batches.
    any AnyTextEncoder(TokenBatch);
    sizes TextEncoderSizes;
    modality "text";
    rows {
        /// A small Transformer trained from scratch: token and position
        /// embeddings, pre-norm layers, the mean of the real tokens.
        Scratch = "scratch", scratch TextEncoder;
        /// An LSTM trained from scratch: the final state.
        Rnn = "rnn", scratch RnnTextEncoder;
        /// BERT (Hugging Face `BertModel`, `model_type` `bert`), including
        /// sentence-transformers folders such as all-MiniLM-L6-v2.
        Bert = "bert", pretrained Bert;
        /// CLIP's text tower (Hugging Face `CLIPTextModel`, or the
        /// `text_model` of a `CLIPModel` folder): the end-of-text vector.
        Clip = "clip", pretrained ClipText;
    }
}

// How the encoders above are built or loaded (their own files predate the
// registry).

impl ScratchEncoder<TextEncoderSizes> for TextEncoder {
    /// [`TextEncoderConfig`]'s defaults (one layer, four heads) at `dim`,
    /// with a position table of `max_tokens`.
    fn init(sizes: &TextEncoderSizes, device: &Device) -> Result<Self> {
        Ok(TextEncoderConfig::new(sizes.vocab_size)
            .with_dim(sizes.dim)
            .with_max_length(sizes.max_tokens)
            .init(device))
    }
}

impl ScratchEncoder<TextEncoderSizes> for RnnTextEncoder {
    /// Embeddings of width `dim` and a one-layer, one-direction LSTM as
    /// wide.
    fn init(sizes: &TextEncoderSizes, device: &Device) -> Result<Self> {
        RnnTextEncoderConfig::new(sizes.vocab_size, RecurrentConfig::new(sizes.dim, sizes.dim))
            .with_embedding_dim(sizes.dim)
            .init(device)
    }
}

impl PretrainedEncoder for Bert {
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

impl PretrainedEncoder for ClipText {
    const MODEL_TYPES: &'static [&'static str] = &["clip", "clip_text_model"];
    const ARCHITECTURES: &'static [&'static str] = &["CLIPModel", "CLIPTextModel"];

    /// [`ClipText::load`].
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        ClipText::load(dir, device)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use polymodal_core::testing::{check_same_encoder, check_scratch_kinds};
    use polymodal_core::{Encoder, Error, Modality};

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        polymodal_core::testing::encoder_fixture(name)
    }

    /// A fresh folder with `config` as its `config.json` (none when `None`).
    fn folder(name: &str, config: Option<&str>) -> PathBuf {
        polymodal_core::testing::config_folder(&format!("text-registry-{name}"), config)
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
        polymodal_core::testing::check_kind_names(
            &TextEncoderKind::ALL,
            TextEncoderKind::name,
            &["scratch", "rnn", "bert", "clip"],
            ("gpt", "unknown text encoder `gpt`"),
        );
    }

    #[test]
    fn scratch_kinds_build_and_pretrained_kinds_load() {
        let sizes = TextEncoderSizes {
            vocab_size: 50,
            dim: 8,
            max_tokens: 16,
        };
        let input = tokens(&Device::flex());
        let shape = (2, 8, Modality::Text);
        check_scratch_kinds::<TextEncoderKind>(&sizes, &input, shape, &fixture("bert"));
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
        // A CLIP folder is the clip kind (its text tower).
        assert_eq!(
            TextEncoderKind::detect(fixture("clip")).unwrap(),
            TextEncoderKind::Clip
        );
        let error = TextEncoderKind::detect(fixture("vit"))
            .unwrap_err()
            .to_string();
        eprintln!("{error}");
        let config = fixture("vit").join("config.json");
        assert!(error.contains(&config.display().to_string()), "{error}");
        assert!(error.contains("model_type `vit`"), "{error}");
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

    /// Loading through the registry gives the direct loader's model.
    #[test]
    fn load_through_the_registry_is_the_direct_loader() {
        let device = Device::flex();
        let (direct, _) = Bert::load(fixture("bert"), BertPooling::Mean, &device).unwrap();
        let (any, report) = AnyTextEncoder::load(fixture("bert"), &device).unwrap();
        assert!(report.unexpected.is_empty(), "{report:?}");
        assert_eq!(any.kind(), TextEncoderKind::Bert);
        check_same_encoder(&direct, &any, &tokens(&device));
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

    /// A CLIP folder through both registries gives the towers of the pair
    /// [`crate::Clip`] loads (whose outputs the parity tests check against
    /// transformers' `CLIPModel`): the same pooled vectors, to the bit.
    #[test]
    fn a_clip_folder_loads_its_towers_through_both_registries() {
        let device = Device::flex();
        let dir = fixture("clip");
        let (pair, _) = crate::Clip::load(&dir, &device).unwrap();
        let (text, report) = AnyTextEncoder::load(&dir, &device).unwrap();
        assert_eq!(text.kind(), TextEncoderKind::Clip);
        assert!(
            report
                .unexpected
                .iter()
                .any(|n| n.starts_with("vision_model."))
        );
        let batch = tokens(&device);
        let (_, want) = pair
            .text_model()
            .forward(batch.ids.clone(), batch.mask.clone())
            .unwrap();
        assert_eq!(values(text.encode(&batch).unwrap().pooled), values(want));
        let (image, _) = polymodal_image::AnyImageEncoder::load(&dir, &device).unwrap();
        assert_eq!(image.kind(), polymodal_image::ImageEncoderKind::Clip);
        let side = pair.vision_model().image_size();
        let pixels = Tensor::<4>::random(
            [2, 3, side, side],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let (_, want) = pair.vision_model().forward(pixels.clone()).unwrap();
        assert_eq!(values(image.encode(&pixels).unwrap().pooled), values(want));
    }
}
