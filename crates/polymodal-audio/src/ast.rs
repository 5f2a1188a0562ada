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
        let sequence = self.forward(input.clone())?;
        let [batch, _, hidden] = sequence.dims();
        let pooled = sequence
            .clone()
            .slice([0..batch, 0..2])
            .mean_dim(1)
            .reshape([batch, hidden]);
        Ok(Embeddings::dense(pooled, sequence))
    }
}
