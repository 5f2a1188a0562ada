//! The encoder half of Whisper (Radford et al., 2022) as Hugging Face's
//! `WhisperModel.encoder`: two convolutions over the log-mel input (the
//! second halves the frame rate), stored sinusoidal positions, pre-norm
//! Transformer layers (the key projection has no bias) and a final layer
//! norm. Its input is [`crate::WhisperFeatures`]' `[n_mels, 3000]`.

use std::path::Path;

use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{LayerNorm, PaddingConfig1d};
use burn::prelude::*;
use polymodal_core::cpu::gelu;
use serde::Deserialize;

use polymodal_core::{
    Activation, AttentionNames, BlockNames, BlockShape, Embeddings, Encoder, Error, Init,
    LoadReport, Modality, PreNormBlock, Result, Weights, read_config, weights::hf_check,
};

/// The encoder fields of a Hugging Face Whisper `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhisperEncoderConfig {
    /// Token width.
    pub d_model: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Encoder attention heads.
    pub encoder_attention_heads: usize,
    /// Encoder feed-forward width.
    pub encoder_ffn_dim: usize,
    /// Mel bands of the input.
    pub num_mel_bins: usize,
    /// Positions after the strided convolution (1500: 30 s).
    pub max_source_positions: usize,
    /// Activation.
    #[serde(default = "polymodal_core::weights::hf_default::gelu")]
    pub activation_function: String,
}

impl WhisperEncoderConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, Self::validate)
    }

    /// Checks the sizes and the activation.
    pub fn validate(&self) -> Result<()> {
        hf_check::multiple(
            "d_model",
            self.d_model,
            "encoder_attention_heads",
            self.encoder_attention_heads,
        )?;
        hf_check::activation(&self.activation_function)
    }

    /// Frames of the input: twice the positions.
    pub fn frames(&self) -> usize {
        self.max_source_positions * 2
    }

    /// A randomly initialised encoder.
    pub fn init(&self, device: &Device) -> Result<WhisperEncoder> {
        WhisperEncoder::build(self, &Init::random(), device)
    }
}

/// Where an encoder layer's parts are stored (under `layers.{i}`); the key
/// projection has no bias.
const LAYER: BlockNames = BlockNames {
    norm1: "self_attn_layer_norm",
    attention: AttentionNames {
        key_bias: false,
        ..AttentionNames::new("self_attn", ["q_proj", "k_proj", "v_proj", "out_proj"])
    },
    norm2: "final_layer_norm",
    fc1: "fc1",
    fc2: "fc2",
};

/// Whisper's audio encoder.
#[derive(Module, Debug)]
pub struct WhisperEncoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor<2>,
    layers: Vec<PreNormBlock>,
    norm: LayerNorm,
    d_model: usize,
    frames: usize,
    mel_bins: usize,
}

impl WhisperEncoder {
    /// Loads the encoder from a Hugging Face Whisper folder (`config.json` +
    /// `model.safetensors`, tensors under `encoder.` or `model.encoder.`).
    /// The decoder's tensors are reported as unused.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = WhisperEncoderConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        let weights = weights.with_prefix_of("conv1.weight", &["encoder.", "model.encoder."]);
        let model = Self::build(&config, &Init::from(&weights), device)?;
        Ok((model, weights.finish()?))
    }

    /// The encoder in `init`'s scope (`model.encoder`).
    pub(crate) fn build(
        config: &WhisperEncoderConfig,
        init: &Init,
        device: &Device,
    ) -> Result<Self> {
        let d = config.d_model;
        let shape = BlockShape {
            dim: d,
            heads: config.encoder_attention_heads,
            ff_dim: config.encoder_ffn_dim,
            eps: 1e-5,
            activation: Activation::from_hf(&config.activation_function)?,
        };
        let layers = PreNormBlock::stack(
            &init.pp("layers"),
            config.encoder_layers,
            &LAYER,
            shape,
            device,
        )?;
        let conv = |name: &str, c_in: usize, stride: usize| {
            init.pp(name).conv1d(
                &Conv1dConfig::new(c_in, d, 3)
                    .with_stride(stride)
                    .with_padding(PaddingConfig1d::Explicit(1, 1)),
                device,
            )
        };
        let positions = if init.is_random() {
            sinusoids(config.max_source_positions, d, device)
        } else {
            init.pp("embed_positions")
                .tensor("weight", [config.max_source_positions, d], device)?
        };
        Ok(Self {
            conv1: conv("conv1", config.num_mel_bins, 1)?,
            conv2: conv("conv2", d, 2)?,
            positions,
            layers,
            norm: init.pp("layer_norm").layer_norm(d, 1e-5, device)?,
            d_model: d,
            frames: config.frames(),
            mel_bins: config.num_mel_bins,
        })
    }

    /// Last hidden state `[batch, frames / 2, d_model]` of log-mel features
    /// `[batch, n_mels, frames]`.
    pub fn forward(&self, features: Tensor<3>) -> Result<Tensor<3>> {
        let [batch, bins, frames] = features.dims();
        if bins != self.mel_bins || frames != self.frames {
            return Err(Error::Invalid(format!(
                "the Whisper encoder expects {} mel bins × {} frames, got {bins} × {frames}",
                self.mel_bins, self.frames
            )));
        }
        let x = gelu(self.conv1.forward(features));
        let x = gelu(self.conv2.forward(x)).swap_dims(1, 2); // [batch, positions, d]
        let length = x.dims()[1];
        let positions = self
            .positions
            .clone()
            .narrow(0, 0, length)
            .unsqueeze::<3>()
            .expand([batch, length, self.d_model]);
        let mut x = x + positions;
        for layer in &self.layers {
            x = layer.forward(x, None, false);
        }
        Ok(self.norm.forward(x))
    }
}

/// Whisper's sinusoidal position table (used when training from scratch;
/// checkpoints store theirs).
fn sinusoids(length: usize, dim: usize, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let step = (10_000f64).ln() / (half.max(2) - 1) as f64;
    let mut values = Vec::with_capacity(length * dim);
    for t in 0..length {
        let angle = |i: usize| t as f64 * (-(step * i as f64)).exp();
        values.extend((0..half).map(|i| angle(i).sin() as f32));
        values.extend((0..dim - half).map(|i| angle(i).cos() as f32));
    }
    Tensor::from_data(TensorData::new(values, [length, dim]), device)
}

impl Encoder for WhisperEncoder {
    type Input = Tensor<3>;

    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn dim(&self) -> usize {
        self.d_model
    }

    /// Pooled: the mean over positions; sequence: every position.
    fn encode(&self, features: &Tensor<3>) -> Result<Embeddings> {
        Ok(Embeddings::dense_mean(self.forward(features.clone())?))
    }
}
