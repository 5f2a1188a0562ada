//! A convolutional encoder over log-mel spectrograms; tokens are time steps.

use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;

use polymodal_core::{ConvBlock, Embeddings, Encoder, Modality};

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
            project: LinearConfig::new(self.channels[1], self.dim).init(device),
            dim: self.dim,
        }
    }
}

/// Two convolution blocks over `[batch, 1, mels, frames]`, then the
/// frequency axis is averaged so each remaining time step is a token.
#[derive(Module, Debug)]
pub struct SpectrogramEncoder {
    block1: ConvBlock,
    block2: ConvBlock,
    activation: Relu,
    project: Linear,
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

    fn encode(&self, spectrograms: &Tensor<4>) -> Embeddings {
        let x = self
            .block2
            .forward(self.block1.forward(spectrograms.clone()));
        let [batch, _, _, steps] = x.dims();
        let tokens = x.mean_dim(2).squeeze_dim::<3>(2).swap_dims(1, 2); // [batch, steps, channels]
        let sequence = self.activation.forward(self.project.forward(tokens));
        let mask = Tensor::<2>::ones([batch, steps], &sequence.device()).equal_elem(1.0);
        Embeddings::from_sequence(sequence, mask)
    }
}
