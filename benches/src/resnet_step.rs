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
