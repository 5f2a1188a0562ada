//! A convolutional encoder over log-mel spectrograms; tokens are time steps.

use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;

use polymodal_core::{ConvBlock, Embeddings, Encoder, GridPool, Modality, Result};

/// Settings of [`SpectrogramEncoder`].
#[derive(Config, Debug)]
pub struct SpectrogramEncoderConfig {
    /// Output embedding width.
    #[config(default = 64)]
    pub dim: usize,
    /// Channels of the two convolution blocks.
    #[config(default = "[16, 32]")]
    pub channels: [usize; 2],
}

impl SpectrogramEncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> SpectrogramEncoder {
        SpectrogramEncoder {
            block1: ConvBlock::new(1, self.channels[0], device),
            block2: ConvBlock::new(self.channels[0], self.channels[1], device),
            activation: Relu::new(),
            project: LinearConfig::new(self.channels[1] * FREQUENCY_BANDS, self.dim).init(device),
            pool: GridPool::new(self.channels[1], [4, 4], self.dim, device),
            dim: self.dim,
        }
    }
}

/// Frequency bands each time-step token keeps.
const FREQUENCY_BANDS: usize = 4;

/// Two convolution blocks over `[batch, 1, mels, frames]`; the frequency
/// axis is averaged into 4 bands so each remaining time step is a token that
/// still sees the spectral shape, and the pooled vector keeps the map's
/// layout on a 4×4 (frequency × time) grid ([`GridPool`]).
#[derive(Module, Debug)]
pub struct SpectrogramEncoder {
    block1: ConvBlock,
    block2: ConvBlock,
    activation: Relu,
    project: Linear,
    pool: GridPool,
    dim: usize,
}

impl Encoder for SpectrogramEncoder {
    type Input = Tensor<4>;

    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, spectrograms: &Tensor<4>) -> Result<Embeddings> {
        let x = self
            .block2
            .forward(self.block1.forward(spectrograms.clone()));
        let [batch, channels, _, steps] = x.dims();
        let pooled = self.pool.forward(x.clone());
        let bands = burn::tensor::module::adaptive_avg_pool2d(x, [FREQUENCY_BANDS, steps]);
        let tokens = bands
            .reshape([batch, channels * FREQUENCY_BANDS, steps])
            .swap_dims(1, 2); // [batch, steps, channels × bands]
        let sequence = self.activation.forward(self.project.forward(tokens));
        Ok(Embeddings::dense(pooled, sequence))
    }
}
