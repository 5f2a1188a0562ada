//! The registry of the audio encoders a model can be built with: the
//! [`AudioEncoderKind`] named in configs (or found from a model folder's
//! `config.json`, [`AudioEncoderKind::detect`]), and the [`AnyAudioEncoder`]
//! it builds or loads.
//!
//! Both are generated from the one table in this file (the call of
//! [`polymodal_core::encoder_registry!`]), as polymodal-fusion's registry of
//! fusion layers is. To add an encoder (see `docs/encoders.md`): write it in
//! its own file with its `impl Encoder`, implement
//! [`ScratchEncoder`]`<`[`AudioEncoderSizes`]`>` (trained from scratch) or
//! [`PretrainedEncoder`] (loaded from a Hugging Face folder) for it, and add
//! one row to the table, naming the layout of its input (a function of
//! [`layout`]). The impls of the encoders that predate the registry are at
//! the end of this file.
//!
//! Every kind reads what the trainer's batcher makes, log-mel spectrograms
//! `[batch, 1, mels, frames]`: [`AnyAudioEncoder`] turns them into each
//! encoder's own input (Whisper's `[batch, mels, frames]`, AST's `[batch,
//! frames, mels]`).

use std::path::Path;

use burn::prelude::*;

use polymodal_core::registry::{PretrainedEncoder, ScratchEncoder};
use polymodal_core::{LoadReport, Result};

// The encoder types the table names.
use crate::{Ast, SpectrogramEncoder, SpectrogramEncoderConfig, WhisperEncoder};

/// The sizes a from-scratch audio encoder is built with (a classifier's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioEncoderSizes {
    /// Width of the embeddings.
    pub dim: usize,
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

// The registry: one row per audio encoder, in documentation order; the
// last column is the function of [`layout`] that makes the encoder's input
// from spectrograms `[batch, 1, mels, frames]` (a shape it cannot read is
// `Error::Invalid`).
polymodal_core::encoder_registry! {
    /// A kind of audio encoder: trained from scratch, or pretrained and
    /// loaded from a Hugging Face model folder.
    kind AudioEncoderKind;
    /// An audio encoder of any registered kind (one variant per
    /// [`AudioEncoderKind`]); an [`Encoder`](polymodal_core::Encoder) of
    /// spectrograms `[batch, 1, mels, frames]`, which it passes to each
    /// encoder in its own [`layout`].
    any AnyAudioEncoder(Tensor<4>);
    sizes AudioEncoderSizes;
    modality "audio";
    rows {
        /// A CNN over log-mel spectrograms trained from scratch (time steps are
        /// the tokens).
        Scratch = "scratch", scratch SpectrogramEncoder, layout::spectrogram;
        /// The Audio Spectrogram Transformer (Hugging Face `ASTModel`,
        /// `model_type` `audio-spectrogram-transformer`).
        Ast = "ast", pretrained Ast, layout::frames_by_mels;
        /// Whisper's encoder (Hugging Face `WhisperModel.encoder`, `model_type`
        /// `whisper`).
        Whisper = "whisper", pretrained WhisperEncoder, layout::mels_by_frames;
    }
}

// How the encoders above are built or loaded (their own files predate the
// registry).

impl ScratchEncoder<AudioEncoderSizes> for SpectrogramEncoder {
    /// [`SpectrogramEncoderConfig`]'s defaults (16 and 32 channels) at `dim`.
    fn init(sizes: &AudioEncoderSizes, device: &Device) -> Result<Self> {
        Ok(SpectrogramEncoderConfig::new()
            .with_dim(sizes.dim)
            .init(device))
    }
}

impl PretrainedEncoder for Ast {
    const MODEL_TYPES: &'static [&'static str] = &["audio-spectrogram-transformer"];
    const ARCHITECTURES: &'static [&'static str] = &["AST"];

    /// [`Ast::load`].
    fn load(dir: &Path, device: &Device) -> Result<(Self, LoadReport)> {
        Ast::load(dir, device)
    }
}

impl PretrainedEncoder for WhisperEncoder {
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

    use polymodal_core::testing::check_scratch_kinds;
    use polymodal_core::{Encoder, Error, Modality};

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        polymodal_core::testing::encoder_fixture(name)
    }

    /// A fresh folder with `config` as its `config.json` (none when `None`).
    fn folder(name: &str, config: Option<&str>) -> PathBuf {
        polymodal_core::testing::config_folder(&format!("audio-registry-{name}"), config)
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
        polymodal_core::testing::check_kind_names(
            &AudioEncoderKind::ALL,
            AudioEncoderKind::name,
            &["scratch", "ast", "whisper"],
            ("wav2vec2", "unknown audio encoder `wav2vec2`"),
        );
    }

    #[test]
    fn scratch_kinds_build_and_pretrained_kinds_load() {
        let sizes = AudioEncoderSizes { dim: 8 };
        let input = spectrograms(2, 16, 20, &Device::flex());
        let shape = (2, 8, Modality::Audio);
        check_scratch_kinds::<AudioEncoderKind>(&sizes, &input, shape, &fixture("whisper"));
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
