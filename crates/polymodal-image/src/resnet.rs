//! ResNet-18/34/50 (He et al., 2016) in torchvision's layout and weight
//! names (`conv1`, `bn1`, `layer1.0.conv1`, …, `downsample.0`; Bottleneck
//! blocks stride in their 3×3 convolution, "ResNet v1.5"). As an encoder it
//! drops the classifier `fc`: each cell of the last feature map is a token,
//! the pooled vector is their mean (torchvision's `avgpool`).

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use polymodal_core::cpu::{conv2d_norm, max_pool2d};
use polymodal_core::{Embeddings, Encoder, Error, Init, LoadReport, Modality, Result, Weights};

/// torchvision's batch norm epsilon.
const BN_EPS: f64 = 1e-5;

/// The shape of a ResNet: blocks per stage, block kind, and the width of
/// the first stage (64 in every torchvision model; smaller for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Residual blocks in each of the four stages.
    pub blocks: [usize; 4],
    /// Bottleneck blocks (1×1, 3×3, 1×1; ×4 expansion) instead of basic ones.
    pub bottleneck: bool,
    /// Channels of the stem and the first stage (doubling per stage).
    pub base_width: usize,
}

impl ResNetConfig {
    /// torchvision's `resnet18`: basic blocks [2, 2, 2, 2], 512-d.
    pub fn resnet18() -> Self {
        Self {
            blocks: [2, 2, 2, 2],
            bottleneck: false,
            base_width: 64,
        }
    }

    /// torchvision's `resnet34`: basic blocks [3, 4, 6, 3], 512-d.
    pub fn resnet34() -> Self {
        Self {
            blocks: [3, 4, 6, 3],
            ..Self::resnet18()
        }
    }

    /// torchvision's `resnet50`: bottleneck blocks [3, 4, 6, 3], 2048-d.
    pub fn resnet50() -> Self {
        Self {
            bottleneck: true,
            ..Self::resnet34()
        }
    }

    fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    /// Width of the output features.
    pub fn dim(&self) -> usize {
        self.base_width * 8 * self.expansion()
    }

    /// A randomly initialised backbone.
    pub fn init(&self, device: &Device) -> Result<ResNet> {
        ResNet::build(self, &Init::random(), device)
    }
}

impl std::str::FromStr for ResNetConfig {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "resnet18" => Ok(Self::resnet18()),
            "resnet34" => Ok(Self::resnet34()),
            "resnet50" => Ok(Self::resnet50()),
            _ => Err(Error::Config(format!(
                "unknown ResNet `{s}` (resnet18, resnet34, resnet50)"
            ))),
        }
    }
}

/// A bias-free, "same"-padded convolution in `init`'s scope.
fn conv(
    init: &Init,
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    device: &Device,
) -> Result<Conv2d> {
    let pad = kernel / 2;
    let config = Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false);
    init.conv2d(&config, device)
}

/// A residual block: two 3×3 convolutions (basic) or 1×1, 3×3, 1×1
/// (bottleneck), with a 1×1 projection on the shortcut when the shape changes.
#[derive(Module, Debug)]
struct Block {
    convs: Vec<Conv2d>,
    norms: Vec<BatchNorm>,
    downsample: Option<Downsample>,
}

/// The shortcut's 1×1 projection (`downsample.0`, `downsample.1`).
#[derive(Module, Debug)]
struct Downsample {
    conv: Conv2d,
    norm: BatchNorm,
}

impl Block {
    /// The block in `init`'s scope (`layer{i}.{j}`).
    fn build(
        init: &Init,
        in_channels: usize,
        width: usize,
        stride: usize,
        bottleneck: bool,
        device: &Device,
    ) -> Result<Self> {
        let out_channels = if bottleneck { width * 4 } else { width };
        // (input channels, output channels, kernel, stride) per convolution.
        let shapes: Vec<(usize, usize, usize, usize)> = if bottleneck {
            vec![
                (in_channels, width, 1, 1),
                (width, width, 3, stride),
                (width, out_channels, 1, 1),
            ]
        } else {
            vec![(in_channels, width, 3, stride), (width, width, 3, 1)]
        };
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for (i, &(c_in, c_out, k, s)) in shapes.iter().enumerate() {
            let n = i + 1;
            let (conv_init, norm_init) = (init.pp(format!("conv{n}")), init.pp(format!("bn{n}")));
            convs.push(conv(&conv_init, [c_in, c_out], k, s, device)?);
            norms.push(norm_init.batch_norm(c_out, BN_EPS, device)?);
        }
        let downsample = if stride != 1 || in_channels != out_channels {
            let down = init.pp("downsample");
            Some(Downsample {
                conv: conv(&down.pp(0), [in_channels, out_channels], 1, stride, device)?,
                norm: down.pp(1).batch_norm(out_channels, BN_EPS, device)?,
            })
        } else {
            None
        };
        Ok(Self {
            convs,
            norms,
            downsample,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(d) => conv2d_norm(&d.conv, &d.norm, x.clone(), false),
            None => x.clone(),
        };
        let last = self.convs.len() - 1;
        let mut y = x;
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            y = conv2d_norm(conv, norm, y, i < last);
        }
        relu(y + shortcut)
    }
}

/// A ResNet backbone (torchvision `resnet18` / `resnet34` / `resnet50`
/// without `fc`). Build one with [`ResNetConfig::init`] or [`ResNet::load`].
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    pool: MaxPool2d,
    layers: Vec<Vec<Block>>,
    dim: usize,
}

impl ResNet {
    /// Loads torchvision weights (a `resnet18` state dict saved as
    /// safetensors, or any file with torchvision's names). The classifier
    /// `fc.*` is reported in the [`LoadReport`] as unused.
    pub fn load(
        config: &ResNetConfig,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let weights = Weights::open(path)?;
        let model = Self::build(config, &Init::from(&weights), device)?;
        Ok((model, weights.finish()?))
    }

    fn build(config: &ResNetConfig, init: &Init, device: &Device) -> Result<Self> {
        if config.base_width == 0 || config.blocks.contains(&0) {
            return Err(Error::Config(format!(
                "ResNet needs a positive width and at least one block per stage: {config:?}"
            )));
        }
        let base = config.base_width;
        let mut layers = Vec::new();
        let mut channels = base;
        for (i, &count) in config.blocks.iter().enumerate() {
            let width = base << i;
            let mut blocks = Vec::new();
            for j in 0..count {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                blocks.push(Block::build(
                    &init.pp(format!("layer{}", i + 1)).pp(j),
                    channels,
                    width,
                    stride,
                    config.bottleneck,
                    device,
                )?);
                channels = width * config.expansion();
            }
            layers.push(blocks);
        }
        Ok(Self {
            conv1: conv(&init.pp("conv1"), [3, base], 7, 2, device)?,
            bn1: init.pp("bn1").batch_norm(base, BN_EPS, device)?,
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layers,
            dim: config.dim(),
        })
    }

    /// The last feature map `[batch, dim, h / 32, w / 32]` of normalised
    /// images `[batch, 3, h, w]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        // Through the CPU fast paths where they apply (Flex, f32).
        let stem = conv2d_norm(&self.conv1, &self.bn1, images, true);
        let mut x = max_pool2d(&self.pool, stem);
        for block in self.layers.iter().flatten() {
            x = block.forward(x);
        }
        x
    }
}

impl Encoder for ResNet {
    type Input = Tensor<4>;

    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, images: &Tensor<4>) -> Result<Embeddings> {
        // On a thread of the CPU pool: each op splits its work from there
        // instead of waking the pool and sleeping (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let map = self.features(images.clone());
            let [batch, channels, h, w] = map.dims();
            let sequence = map.reshape([batch, channels, h * w]).swap_dims(1, 2);
            Ok(Embeddings::dense_mean(sequence))
        })
    }
}
