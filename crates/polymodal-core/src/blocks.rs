//! Small layers shared by several encoders.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

/// 3×3 convolution (same padding) → batch norm → ReLU → 2×2 max pooling:
/// `[batch, in, h, w]` → `[batch, out, h / 2, w / 2]`.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
    activation: Relu,
    pool: MaxPool2d,
}

impl ConvBlock {
    /// A block from `in_channels` to `out_channels` on `device`.
    pub fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([in_channels, out_channels], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            norm: BatchNormConfig::new(out_channels).init(device),
            activation: Relu::new(),
            pool: MaxPool2dConfig::new([2, 2]).init(),
        }
    }

    /// Applies the block (the convolution and batch norm through the CPU
    /// fast paths of [`crate::cpu`] where they apply).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = crate::cpu::batch_norm(&self.norm, crate::cpu::conv2d(&self.conv, input));
        crate::cpu::max_pool2d(&self.pool, self.activation.forward(x))
    }
}

/// A pre-norm Transformer encoder of width `dim` with a feed-forward width of
/// `2 * dim` (pre-norm trains stably without warm-up on small models).
pub fn pre_norm_transformer(
    dim: usize,
    heads: usize,
    layers: usize,
    dropout: f64,
    device: &Device,
) -> TransformerEncoder {
    TransformerEncoderConfig::new(dim, dim * 2, heads, layers)
        .with_dropout(dropout)
        .with_norm_first(true)
        .init(device)
}

/// A pooled vector from a feature map that keeps its layout: the map is
/// averaged onto a fixed `grid` (any input size), flattened, and projected:
/// `[batch, channels, h, w]` → `[batch, dim]`. Global averaging would lose
/// where things are (a stroke's place in a digit, a formant's time).
#[derive(Module, Debug)]
pub struct GridPool {
    project: Linear,
    activation: Relu,
    grid: [usize; 2],
}

impl GridPool {
    /// Pools `channels` maps onto `grid` cells and projects to `dim`.
    pub fn new(channels: usize, grid: [usize; 2], dim: usize, device: &Device) -> Self {
        Self {
            project: LinearConfig::new(channels * grid[0] * grid[1], dim).init(device),
            activation: Relu::new(),
            grid,
        }
    }

    /// Applies the pooling.
    pub fn forward(&self, map: Tensor<4>) -> Tensor<2> {
        let pooled = burn::tensor::module::adaptive_avg_pool2d(map, self.grid);
        let [batch, channels, h, w] = pooled.dims();
        let flat = pooled.reshape([batch, channels * h * w]);
        self.activation.forward(self.project.forward(flat))
    }
}
