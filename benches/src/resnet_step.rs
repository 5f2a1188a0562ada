//! The ResNet-18 training step that `bench encoders` times and the
//! `train_step_phases` example splits by phase: torchvision's `resnet18`
//! (backbone + 1,000-class linear head), cross-entropy, Adam.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use polymodal_core::Encoder;
use polymodal_image::{ResNet, ResNetConfig};

use crate::error;

/// torchvision's `resnet18` classifies into 1,000 classes.
const CLASSES: usize = 1000;

/// ResNet-18 with torchvision's classification head.
#[derive(Module, Debug)]
pub struct ResNetClassifier {
    backbone: ResNet,
    /// The classification head (its bias, read back, waits for a step on
    /// an asynchronous device).
    pub head: Linear,
}

impl ResNetClassifier {
    /// Random weights on `device`.
    pub fn new(device: &Device) -> Result<Self, String> {
        let backbone = ResNetConfig::resnet18().init(device).map_err(error)?;
        let head = LinearConfig::new(backbone.dim(), CLASSES).init(device);
        Ok(Self { backbone, head })
    }

    /// The cross-entropy of `images` against `labels` (the forward pass).
    pub fn loss(&self, images: &Tensor<4>, labels: &Tensor<1, Int>) -> Result<Tensor<1>, String> {
        let pooled = self.backbone.encode(images).map_err(error)?.pooled;
        let logits = self.head.forward(pooled);
        Ok(CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits, labels.clone()))
    }

    /// One training step on `images` and `labels`: the updated model.
    pub fn step(
        self,
        optimizer: &mut ModuleOptimizer,
        images: &Tensor<4>,
        labels: &Tensor<1, Int>,
    ) -> Result<Self, String> {
        let grads = GradientsParams::from_grads(self.loss(images, labels)?.backward(), &self);
        Ok(optimizer.step(1e-3, self, grads))
    }
}

/// One convolution shape of ResNet-18 on 224×224 images and how many
/// layers have it (the `conv_layers` example times each alone).
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    /// Where it sits in the network.
    pub name: &'static str,
    /// Input channels, output channels.
    pub channels: [usize; 2],
    /// Input height (= width).
    pub size: usize,
    /// Kernel height (= width).
    pub kernel: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Padding on every side.
    pub padding: usize,
    /// Layers of this shape.
    pub count: usize,
}

impl ConvShape {
    /// The convolution on a batch of `batch` samples.
    pub fn geometry(&self, batch: usize) -> polymodal_core::cpu::ConvGeometry {
        let [in_channels, out_channels] = self.channels;
        polymodal_core::cpu::ConvGeometry {
            batch,
            in_channels,
            out_channels,
            input: [self.size; 2],
            kernel: [self.kernel; 2],
            stride: [self.stride; 2],
            padding: [[self.padding; 2]; 2],
            dilation: [1, 1],
        }
    }
}

/// Every convolution shape of torchvision's `resnet18` on 224×224 images.
pub const RESNET18_CONVS: [ConvShape; 11] = {
    const fn conv(
        name: &'static str,
        channels: [usize; 2],
        size: usize,
        kernel: usize,
        stride: usize,
        count: usize,
    ) -> ConvShape {
        ConvShape {
            name,
            channels,
            size,
            kernel,
            stride,
            padding: kernel / 2,
            count,
        }
    }
    [
        conv("stem 7×7/2 3→64", [3, 64], 224, 7, 2, 1),
        conv("layer1 3×3 64", [64, 64], 56, 3, 1, 4),
        conv("layer2 3×3/2 64→128", [64, 128], 56, 3, 2, 1),
        conv("layer2 3×3 128", [128, 128], 28, 3, 1, 3),
        conv("layer2 1×1/2 64→128", [64, 128], 56, 1, 2, 1),
        conv("layer3 3×3/2 128→256", [128, 256], 28, 3, 2, 1),
        conv("layer3 3×3 256", [256, 256], 14, 3, 1, 3),
        conv("layer3 1×1/2 128→256", [128, 256], 28, 1, 2, 1),
        conv("layer4 3×3/2 256→512", [256, 512], 14, 3, 2, 1),
        conv("layer4 3×3 512", [512, 512], 7, 3, 1, 3),
        conv("layer4 1×1/2 256→512", [256, 512], 14, 1, 2, 1),
    ]
};
