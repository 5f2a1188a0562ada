//! The Audio Spectrogram Transformer (Gong et al., 2021) as Hugging Face's
//! `ASTModel`: overlapping 16×16 patches of a log-mel spectrogram (strided
//! by `frequency_stride` × `time_stride`), class and distillation tokens,
//! learned positions and ViT layers; the pooled vector is the mean of the
//! two special tokens. Weights load by their Hugging Face names.

use std::path::Path;

use burn::module::Param;
use burn::nn::LayerNorm;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use serde::Deserialize;

use polymodal_core::{
    Embeddings, Encoder, Error, Init, LoadReport, Modality, PreNormBlock, Result, Weights,
    hf_vit_layers, read_config, weights::HfTransformer,
};

use crate::{MelConfig, MelSpectrogram};

/// The fields of a Hugging Face AST `config.json` that shape the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AstConfig {
    /// The Transformer layers' sizes (`hidden_size`, `num_hidden_layers`, ...).
    #[serde(flatten)]
    pub transformer: HfTransformer,
    /// Patch side.
    #[serde(default = "sixteen")]
    pub patch_size: usize,
    /// Patch stride along frequency.
    #[serde(default = "ten")]
    pub frequency_stride: usize,
    /// Patch stride along time.
    #[serde(default = "ten")]
    pub time_stride: usize,
    /// Frames of the input.
    #[serde(default = "max_length")]
    pub max_length: usize,
    /// Mel bands of the input.
    #[serde(default = "mel_bins")]
    pub num_mel_bins: usize,
}

fn sixteen() -> usize {
    16
}
fn ten() -> usize {
    10
}
fn max_length() -> usize {
    1024
}
fn mel_bins() -> usize {
    128
}

impl AstConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, Self::validate)
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.patch_size == 0
            || self.frequency_stride == 0
            || self.time_stride == 0
            || self.num_mel_bins < self.patch_size
            || self.max_length < self.patch_size
        {
            return Err(Error::Config(format!(
                "the input ({} mel bins × {} frames) must hold one {2}×{2} patch, strides positive",
                self.num_mel_bins, self.max_length, self.patch_size
            )));
        }
        self.transformer.validate()
    }

    /// Patches along frequency and time.
    pub fn grid(&self) -> [usize; 2] {
        [
            (self.num_mel_bins - self.patch_size) / self.frequency_stride + 1,
            (self.max_length - self.patch_size) / self.time_stride + 1,
        ]
    }

    /// A randomly initialised model.
    pub fn init(&self, device: &Device) -> Result<Ast> {
        Ast::build(self, &Init::random(), device)
    }
}

/// An Audio Spectrogram Transformer (Hugging Face `ASTModel`).
#[derive(Module, Debug)]
pub struct Ast {
    patch_embedding: Conv2d,
    cls_token: Param<Tensor<3>>,
    distillation_token: Param<Tensor<3>>,
    positions: Param<Tensor<3>>,
    layers: Vec<PreNormBlock>,
    norm: LayerNorm,
    hidden: usize,
    frames: usize,
    mel_bins: usize,
}

impl Ast {
    /// Loads a Hugging Face folder (`config.json` + `model.safetensors`; an
    /// `ASTForAudioClassification` checkpoint's encoder under
    /// `audio_spectrogram_transformer.` is found too).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = AstConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        let prefixes = ["", "audio_spectrogram_transformer."];
        let weights = weights.with_prefix_of("embeddings.cls_token", &prefixes);
        let model = Self::build(&config, &Init::from(&weights), device)?;
        Ok((model, weights.finish()?))
    }

    fn build(config: &AstConfig, init: &Init, device: &Device) -> Result<Self> {
        let (h, p, eps) = (
            config.transformer.hidden_size,
            config.patch_size,
            config.transformer.layer_norm_eps,
        );
        let [f, t] = config.grid();
        let sizes = &config.transformer;
        let layers = hf_vit_layers(init, sizes.num_hidden_layers, sizes.block_shape()?, device)?;
        let embeddings = init.pp("embeddings");
        let tokens = |name: &str, length: usize| embeddings.token_table(name, length, h, device);
        Ok(Self {
            patch_embedding: embeddings.pp("patch_embeddings.projection").conv2d(
                &Conv2dConfig::new([1, h], [p, p])
                    .with_stride([config.frequency_stride, config.time_stride]),
                device,
            )?,
            cls_token: tokens("cls_token", 1)?,
            distillation_token: tokens("distillation_token", 1)?,
            positions: tokens("position_embeddings", f * t + 2)?,
            layers,
            norm: init.pp("layernorm").layer_norm(h, eps, device)?,
            hidden: h,
            frames: config.max_length,
            mel_bins: config.num_mel_bins,
        })
    }

    /// Last hidden state `[batch, 2 + patches, hidden]` of spectrograms
    /// `[batch, frames, mel_bins]` (Hugging Face's `input_values`: time first,
    /// as `ASTFeatureExtractor` makes them).
    pub fn forward(&self, input: Tensor<3>) -> Result<Tensor<3>> {
        let [batch, frames, bins] = input.dims();
        if frames != self.frames || bins != self.mel_bins {
            return Err(Error::Invalid(format!(
                "AST expects {} frames × {} mel bins, got {frames} × {bins}",
                self.frames, self.mel_bins
            )));
        }
        // [batch, 1, mel_bins, frames]: frequency is the image's height.
        let image = input.swap_dims(1, 2).unsqueeze_dim::<4>(1);
        let patches = self.patch_embedding.forward(image);
        let [_, hidden, f, t] = patches.dims();
        let patches = patches.reshape([batch, hidden, f * t]).swap_dims(1, 2);
        let special = |p: &Param<Tensor<3>>| p.val().expand([batch, 1, hidden]);
        let mut x = Tensor::cat(
            vec![
                special(&self.cls_token),
                special(&self.distillation_token),
                patches,
            ],
            1,
        ) + self.positions.val();
        for layer in &self.layers {
            x = layer.forward(x, None, false);
        }
        Ok(self.norm.forward(x))
    }
}

/// The input an AST folder was trained with, as its
/// `preprocessor_config.json` describes it for Hugging Face's
/// `ASTFeatureExtractor`: Kaldi filter banks ([`MelConfig::kaldi_fbank`])
/// padded with zeros or cut to `max_length` frames, then `(x - mean) / (2·std)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AstFeatureConfig {
    /// Sample rate of the input, in Hz.
    #[serde(default = "sampling_rate")]
    pub sampling_rate: u32,
    /// Mel bands.
    #[serde(default = "mel_bins")]
    pub num_mel_bins: usize,
    /// Frames of every input (shorter audio is padded, longer cut).
    #[serde(default = "max_length")]
    pub max_length: usize,
    /// Whether the values are normalised with `mean` and `std`.
    #[serde(default = "yes")]
    pub do_normalize: bool,
    /// The training set's mean log filter-bank value (AudioSet's by default).
    #[serde(default = "audioset_mean")]
    pub mean: f32,
    /// The training set's standard deviation of those values.
    #[serde(default = "audioset_std")]
    pub std: f32,
    /// The Hugging Face class the file is for (`ASTFeatureExtractor`).
    #[serde(default)]
    pub feature_extractor_type: Option<String>,
}

fn sampling_rate() -> u32 {
    16_000
}
fn yes() -> bool {
    true
}
fn audioset_mean() -> f32 {
    -4.267_739_3
}
fn audioset_std() -> f32 {
    4.568_997_4
}

impl Default for AstFeatureConfig {
    /// `ASTFeatureExtractor()`: 16 kHz, 128 bands, 1024 frames, AudioSet's
    /// statistics.
    fn default() -> Self {
        Self {
            sampling_rate: sampling_rate(),
            num_mel_bins: mel_bins(),
            max_length: max_length(),
            do_normalize: true,
            mean: audioset_mean(),
            std: audioset_std(),
            feature_extractor_type: None,
        }
    }
}

/// The file holding a Hugging Face folder's feature extractor settings.
const PREPROCESSOR: &str = "preprocessor_config.json";

impl AstFeatureConfig {
    /// The input of the AST in `dir`: its `preprocessor_config.json` when it
    /// has one (`ASTFeatureExtractor`'s defaults for what the file leaves
    /// out), else those defaults at the mel bands and frames of its
    /// `config.json`. Bands or frames that differ between the two files are
    /// an [`Error::Config`] naming both.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let model = AstConfig::from_file(dir.join("config.json"))?;
        let path = dir.join(PREPROCESSOR);
        if !path.exists() {
            return Ok(Self {
                num_mel_bins: model.num_mel_bins,
                max_length: model.max_length,
                ..Self::default()
            });
        }
        let features: Self = read_config(&path, Self::validate)?;
        let sizes = |n: usize, t: usize| format!("{n} mel bins × {t} frames");
        if (features.num_mel_bins, features.max_length) != (model.num_mel_bins, model.max_length) {
            return Err(Error::Config(format!(
                "{} asks for {} but {} is built for {}",
                path.display(),
                sizes(features.num_mel_bins, features.max_length),
                dir.join("config.json").display(),
                sizes(model.num_mel_bins, model.max_length)
            )));
        }
        Ok(features)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if let Some(kind) = self
            .feature_extractor_type
            .as_deref()
            .filter(|&k| k != "ASTFeatureExtractor")
        {
            return Err(Error::Config(format!(
                "feature_extractor_type is {kind}, not ASTFeatureExtractor"
            )));
        }
        if self.sampling_rate < 1000 || self.num_mel_bins == 0 || self.max_length == 0 {
            return Err(Error::Config(format!(
                "need a sampling_rate of at least 1000 Hz and positive num_mel_bins and \
                 max_length, got {} Hz, {} and {}",
                self.sampling_rate, self.num_mel_bins, self.max_length
            )));
        }
        if !(self.mean.is_finite() && self.std.is_finite() && self.std > 0.0) {
            return Err(Error::Config(format!(
                "mean must be finite and std positive, got {} and {}",
                self.mean, self.std
            )));
        }
        MelSpectrogram::new(self.mel()).map(drop)
    }

    /// The filter banks: `torchaudio.compliance.kaldi.fbank` with the
    /// `hanning` window, as `ASTFeatureExtractor` calls it.
    pub fn mel(&self) -> MelConfig {
        MelConfig::kaldi_fbank(self.sampling_rate, self.num_mel_bins)
    }

    /// The samples that make exactly `max_length` frames (saturating: the
    /// training features refuse a clip that long by name).
    pub fn clip_samples(&self) -> usize {
        let mel = self.mel();
        let hops = self
            .max_length
            .saturating_sub(1)
            .saturating_mul(mel.hop_length);
        mel.frame_span().saturating_add(hops)
    }

    /// `(mean, scale)` such that the model reads `(x - mean) / scale`:
    /// `ASTFeatureExtractor` divides by twice its `std`. `None` without
    /// normalisation.
    pub fn normalization(&self) -> Option<(f32, f32)> {
        self.do_normalize.then_some((self.mean, 2.0 * self.std))
    }
}

impl Encoder for Ast {
    type Input = Tensor<3>;

    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn dim(&self) -> usize {
        self.hidden
    }

    /// Pooled: the mean of the class and distillation tokens (`ASTModel`'s
    /// `pooler_output`); sequence: every token.
    fn encode(&self, input: &Tensor<3>) -> Result<Embeddings> {
        // On a thread of the CPU pool: each op splits its work from there
        // instead of waking the pool and sleeping (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let sequence = self.forward(input.clone())?;
            let [batch, _, hidden] = sequence.dims();
            let pooled = sequence
                .clone()
                .slice([0..batch, 0..2])
                .mean_dim(1)
                .reshape([batch, hidden]);
            Ok(Embeddings::dense(pooled, sequence))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with the AST fixture's `config.json` (10 bands × 12 frames)
    /// and `preprocessor` as its `preprocessor_config.json` (none: `None`).
    fn folder(label: &str, preprocessor: Option<&str>) -> std::path::PathBuf {
        let fixture = polymodal_core::testing::encoder_fixture("ast");
        let config = std::fs::read_to_string(fixture.join("config.json")).unwrap();
        let dir = polymodal_core::testing::config_folder(&format!("ast-{label}"), Some(&config));
        if let Some(text) = preprocessor {
            std::fs::write(dir.join(PREPROCESSOR), text).unwrap();
        }
        dir
    }

    #[test]
    fn without_a_preprocessor_file_the_extractor_defaults_fit_the_model() {
        let features = AstFeatureConfig::from_dir(folder("none", None)).unwrap();
        let expected = AstFeatureConfig {
            num_mel_bins: 10,
            max_length: 12,
            ..AstFeatureConfig::default()
        };
        assert_eq!(features, expected);
        assert_eq!(
            features.normalization(),
            Some((-4.267_739_3, 2.0 * 4.568_997_4))
        );
        // 400-sample frames every 160: the 12th starts at 11 · 160.
        assert_eq!(features.clip_samples(), 400 + 11 * 160);
        let mel = MelSpectrogram::new(features.mel()).unwrap();
        assert_eq!(mel.frames_for(features.clip_samples()), 12);
        assert_eq!(mel.frames_for(features.clip_samples() - 1), 11);
        // An absurd frame count saturates (the training features refuse it
        // by name) rather than overflowing.
        let absurd = AstFeatureConfig {
            max_length: usize::MAX,
            ..features
        };
        assert_eq!(absurd.clip_samples(), usize::MAX);
    }

    #[test]
    fn the_preprocessor_file_decides_and_must_fit_the_model() {
        let file = r#"{"feature_extractor_type": "ASTFeatureExtractor", "num_mel_bins": 10,
            "max_length": 12, "mean": -6.5, "std": 5.5, "do_normalize": true}"#;
        let features = AstFeatureConfig::from_dir(folder("file", Some(file))).unwrap();
        assert_eq!(features.normalization(), Some((-6.5, 11.0)));
        let off = |text: &str| {
            AstFeatureConfig::from_dir(folder("off", Some(text)))
                .unwrap_err()
                .to_string()
        };
        let error = off(r#"{"num_mel_bins": 128, "max_length": 12}"#);
        assert!(
            error.contains("128 mel bins × 12 frames")
                && error.contains("10 mel bins × 12 frames")
                && error.contains(PREPROCESSOR)
                && error.contains("config.json"),
            "{error}"
        );
        let error = off(r#"{"feature_extractor_type": "WhisperFeatureExtractor"}"#);
        assert!(error.contains("WhisperFeatureExtractor"), "{error}");
        let error = off(r#"{"num_mel_bins": 10, "max_length": 12, "std": 0.0}"#);
        assert!(error.contains("std"), "{error}");
        let error = off(r#"{"num_mel_bins": 10, "max_length": 12, "sampling_rate": 0}"#);
        assert!(error.contains("sampling_rate"), "{error}");
    }
}
