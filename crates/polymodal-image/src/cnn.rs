//! A small convolutional image encoder (for small images such as 32x32).

use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;

use polymodal_core::{ConvBlock, Embeddings, Encoder, GridPool, Modality, Result};

/// Settings of [`ConvEncoder`].
#[derive(Config, Debug)]
pub struct ConvEncoderConfig {
    /// Input channels (1 for grey, 3 for RGB).
    pub in_channels: usize,
    /// Output embedding width.
    #[config(default = 64)]
    pub dim: usize,
    /// Channels of the two convolution blocks.
    #[config(default = "[16, 32]")]
    pub channels: [usize; 2],
}

impl ConvEncoderConfig {
    /// Builds the encoder on `device`.
    pub fn init(&self, device: &Device) -> ConvEncoder {
        ConvEncoder {
            block1: ConvBlock::new(self.in_channels, self.channels[0], device),
            block2: ConvBlock::new(self.channels[0], self.channels[1], device),
            activation: Relu::new(),
            project: LinearConfig::new(self.channels[1], self.dim).init(device),
            pool: GridPool::new(self.channels[1], [4, 4], self.dim, device),
            dim: self.dim,
        }
    }
}

/// Two convolution blocks; each cell of the final feature map is a token,
/// and the pooled vector keeps the map's layout on a 4×4 grid ([`GridPool`]).
#[derive(Module, Debug)]
pub struct ConvEncoder {
    block1: ConvBlock,
    block2: ConvBlock,
    activation: Relu,
    project: Linear,
    pool: GridPool,
    dim: usize,
}

impl ConvEncoder {
    /// Feature map `[batch, channels, height / 4, width / 4]` of images `[batch, c, h, w]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        self.block2.forward(self.block1.forward(images))
    }
}

impl Encoder for ConvEncoder {
    type Input = Tensor<4>;

    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, images: &Tensor<4>) -> Result<Embeddings> {
        let features = self.features(images.clone());
        let [batch, channels, height, width] = features.dims();
        let pooled = self.pool.forward(features.clone());
        let tokens = features
            .reshape([batch, channels, height * width])
            .swap_dims(1, 2);
        let sequence = self.activation.forward(self.project.forward(tokens));
        Ok(Embeddings::dense(pooled, sequence))
    }
}
