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

    /// Pooled: the mean over the positions that hold audio; sequence: every
    /// position, masked to those ([`audio_positions`]). Whisper pads every
    /// input to 30 s, and a mean over the padding drowns a short clip (on
    /// FSDD's digits, logistic regression on unseen speakers reaches 0.999
    /// with the mean over the audio, 0.63 over all 1,500 positions).
    fn encode(&self, features: &Tensor<3>) -> Result<Embeddings> {
        // On a thread of the CPU pool: each op splits its work from there
        // instead of waking the pool and sleeping (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let sequence = self.forward(features.clone())?;
            let positions = sequence.dims()[1];
            let mask = audio_positions(features.clone(), positions);
            Ok(Embeddings::from_sequence(sequence, mask))
        })
    }
}

/// Which of the encoder's `positions` hold audio, `[batch, positions]`, from
/// its log-mel input `[batch, mels, frames]`: the zeros Whisper pads with
/// all sit at the log scale's floor, the smallest value of the
/// spectrogram; a frame holds audio when any band is above it, and a
/// position (the second convolution's stride: `frames / positions` frames)
/// when any of its frames does. A row without such a frame (silence, or an
/// input scaled otherwise) keeps every position.
pub fn audio_positions(features: Tensor<3>, positions: usize) -> Tensor<2, Bool> {
    let [batch, mels, frames] = features.dims();
    let stride = (frames / positions.max(1)).max(1);
    let floor = features
        .clone()
        .min_dim(2)
        .min_dim(1)
        .expand([batch, mels, frames]);
    let above = features.greater(floor + 1e-6).int().sum_dim(1); // [batch, 1, frames]
    let used = positions * stride;
    let real = above
        .reshape([batch, frames])
        .slice([0..batch, 0..used.min(frames)])
        .reshape([batch, positions, stride])
        .sum_dim(2)
        .reshape([batch, positions])
        .greater_elem(0);
    let any = real.clone().int().sum_dim(1).greater_elem(0); // [batch, 1]
    real.bool_or(any.bool_not().expand([batch, positions]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clip whose second half is Whisper's padding (the log floor): only
    /// the first half's positions hold audio, and the pooled vector is
    /// their mean, not the mean over every position.
    #[test]
    fn the_pooled_vector_is_the_mean_over_the_positions_that_hold_audio() {
        let device = Device::flex();
        let dir = polymodal_core::testing::encoder_fixture("whisper");
        let (model, _) = WhisperEncoder::load(&dir, &device).unwrap();
        let (mels, frames) = (model.mel_bins, model.frames);
        let floor = -0.75f32;
        let values: Vec<f32> = (0..mels * frames)
            .map(|i| {
                let frame = i % frames;
                if frame < frames / 2 {
                    floor + 0.5 + (i as f32 * 0.37).sin().abs()
                } else {
                    floor
                }
            })
            .collect();
        let features = Tensor::<3>::from_data(TensorData::new(values, [1, mels, frames]), &device);
        let positions = frames / 2;
        let mask = audio_positions(features.clone(), positions)
            .into_data()
            .try_to_vec::<bool>()
            .unwrap();
        let want: Vec<bool> = (0..positions).map(|p| p < positions / 2).collect();
        assert_eq!(mask, want);
        let embeddings = model.encode(&features).unwrap();
        let sequence = model.forward(features.clone()).unwrap();
        let dim = sequence.dims()[2];
        let audio = sequence.clone().slice([0..1, 0..positions / 2]).mean_dim(1);
        let audio = audio.reshape([1, dim]).try_into_vec_as::<f32>().unwrap();
        let pooled = embeddings.pooled.try_into_vec_as::<f32>().unwrap();
        assert!(polymodal_core::testing::max_abs_diff(&pooled, &audio) < 1e-5);
        let everywhere = sequence
            .mean_dim(1)
            .reshape([1, dim])
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(polymodal_core::testing::max_abs_diff(&pooled, &everywhere) > 1e-4);
        // All at the floor (silence): every position.
        let silence = Tensor::<3>::full([1, mels, frames], floor, &device);
        let mask = audio_positions(silence, positions)
            .into_data()
            .try_to_vec::<bool>()
            .unwrap();
        assert!(mask.iter().all(|&m| m));
    }
}
