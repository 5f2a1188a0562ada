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

    /// Applies the block through the CPU fast paths of [`crate::cpu`] where
    /// they apply. The ReLU runs after the pooling, on a quarter of the
    /// values: max pooling and ReLU commute (a rising function keeps each
    /// window's maximum in place, so values and gradients are the same).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = crate::cpu::conv2d_norm(&self.conv, &self.norm, input, false);
        self.activation
            .forward(crate::cpu::max_pool2d(&self.pool, x))
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;

    /// Multiples of 1/64 from a fixed pattern: sums of their products are
    /// exact in f32, so values that differ differ by far more than
    /// rounding and both sides pool the same maxima.
    fn pattern<const D: usize>(shape: [usize; D], step: usize, device: &Device) -> Tensor<D> {
        let n = shape.iter().product::<usize>();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * step) % 257) as f32 / 64.0 - 2.0)
            .collect();
        Tensor::<1>::from_floats(values.as_slice(), device).reshape(shape)
    }

    #[test]
    fn conv_block_is_burns_conv_norm_relu_pool() {
        let device = Device::flex().autodiff();
        let mut ours = ConvBlock::new(3, 4, &device);
        ours.conv.weight = Param::from_tensor(pattern([4, 3, 3, 3], 7919, &device));
        let burn = ours.clone().fork(&device);
        let x = pattern([2, 3, 9, 10], 104_729, &device).require_grad();
        let ours_out = ours.forward(x.clone());
        let burn_out = {
            let y = burn.norm.forward(burn.conv.forward(x.clone()));
            burn.pool.forward(burn.activation.forward(y))
        };
        let close = |a: Tensor<4>, b: Tensor<4>, what: &str| {
            let diff = (a - b).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-4, "{what}: max difference {diff}");
        };
        close(ours_out.clone(), burn_out.clone(), "output");
        let weighting = pattern(burn_out.dims(), 31, &device);
        let ours_grads = (ours_out * weighting.clone()).sum().backward();
        let burn_grads = (burn_out * weighting).sum().backward();
        let grad = |t: &Tensor<4>, grads| t.grad(grads).expect("tracked");
        close(grad(&x, &ours_grads), grad(&x, &burn_grads), "x grad");
        let (w_ours, w_burn) = (ours.conv.weight.val(), burn.conv.weight.val());
        close(
            grad(&w_ours, &ours_grads),
            grad(&w_burn, &burn_grads),
            "weight grad",
        );
    }
}
