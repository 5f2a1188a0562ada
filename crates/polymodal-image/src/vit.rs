//! The Vision Transformer (Dosovitskiy et al., 2021) as Hugging Face's
//! `ViTModel`: patch embedding by a strided convolution, a class token,
//! learned positions, pre-norm Transformer layers, a final layer norm and
//! the optional tanh pooler. Weights load by their Hugging Face names.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use serde::Deserialize;

use polymodal_core::{
    Embeddings, Encoder, Error, Init, LoadReport, Modality, PreNormBlock, Result, Weights,
    hf_vit_layers, read_config,
    weights::{HfTransformer, hf_check},
};

/// The fields of a Hugging Face ViT `config.json` that shape the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VitConfig {
    /// The Transformer layers' sizes (`hidden_size`, `num_hidden_layers`, ...).
    #[serde(flatten)]
    pub transformer: HfTransformer,
    /// Input side in pixels (square images).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "polymodal_core::weights::hf_default::channels")]
    pub num_channels: usize,
}

impl VitConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, Self::validate)
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        hf_check::multiple("image_size", self.image_size, "patch_size", self.patch_size)?;
        self.transformer.validate()
    }

    /// Patches per image.
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// A randomly initialised model (with a pooler).
    pub fn init(&self, device: &Device) -> Result<Vit> {
        Vit::build(self, &Init::random(), true, device)
    }
}

/// What [`Vit::forward`] returns, as `ViTModel`'s output.
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// `[batch, 1 + patches, hidden]` (class token first), after the final
    /// layer norm.
    pub last_hidden_state: Tensor<3>,
    /// tanh(dense(class token)) `[batch, hidden]`, when the model has a pooler.
    pub pooler_output: Option<Tensor<2>>,
}

/// A Vision Transformer (Hugging Face `ViTModel`).
#[derive(Module, Debug)]
pub struct Vit {
    patch_embedding: Conv2d,
    cls_token: Param<Tensor<3>>,
    positions: Param<Tensor<3>>,
    layers: Vec<PreNormBlock>,
    norm: LayerNorm,
    pooler: Option<Linear>,
    hidden: usize,
    image_size: usize,
}

impl Vit {
    /// Loads a Hugging Face model folder (`config.json` + `model.safetensors`;
    /// a `ViTFor…` checkpoint's encoder under `vit.` is found too).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = VitConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        let weights = weights.with_prefix_of("embeddings.cls_token", &["", "vit."]);
        let pooler = weights.contains("pooler.dense.weight");
        let model = Self::build(&config, &Init::from(&weights), pooler, device)?;
        Ok((model, weights.finish()?))
    }

    /// Builds the model from `init` (names as in `ViTModel`, relative to
    /// `init`'s scope), with the pooler when `pooler`.
    pub fn build(config: &VitConfig, init: &Init, pooler: bool, device: &Device) -> Result<Self> {
        config.validate()?;
        let (h, p, eps) = (
            config.transformer.hidden_size,
            config.patch_size,
            config.transformer.layer_norm_eps,
        );
        let sizes = &config.transformer;
        let layers = hf_vit_layers(init, sizes.num_hidden_layers, sizes.block_shape()?, device)?;
        let embeddings = init.pp("embeddings");
        let tokens = |name: &str, length: usize| embeddings.token_table(name, length, h, device);
        Ok(Self {
            patch_embedding: embeddings.pp("patch_embeddings.projection").conv2d(
                &Conv2dConfig::new([config.num_channels, h], [p, p]).with_stride([p, p]),
                device,
            )?,
            cls_token: tokens("cls_token", 1)?,
            positions: tokens("position_embeddings", config.patches() + 1)?,
            layers,
            norm: init.pp("layernorm").layer_norm(h, eps, device)?,
            pooler: pooler
                .then(|| init.pp("pooler.dense").linear(h, h, device))
                .transpose()?,
            hidden: h,
            image_size: config.image_size,
        })
    }

    /// Runs the model on normalised images `[batch, channels, size, size]`
    /// (the configured size: position embeddings are not interpolated).
    pub fn forward(&self, images: Tensor<4>) -> Result<VitOutput> {
        let [batch, _, height, width] = images.dims();
        if height != self.image_size || width != self.image_size {
            return Err(Error::Invalid(format!(
                "ViT expects {0}×{0} images, got {height}×{width}",
                self.image_size
            )));
        }
        let patches = self.patch_embedding.forward(images); // [b, h, gh, gw]
        let [_, hidden, gh, gw] = patches.dims();
        let patches = patches.reshape([batch, hidden, gh * gw]).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([batch, 1, hidden]);
        let mut x = Tensor::cat(vec![cls, patches], 1) + self.positions.val();
        for layer in &self.layers {
            x = layer.forward(x, None, false);
        }
        let x = self.norm.forward(x);
        let pooler_output = self.pooler.as_ref().map(|dense| {
            let cls = x.clone().slice([0..batch, 0..1]).reshape([batch, hidden]);
            dense.forward(cls).tanh()
        });
        Ok(VitOutput {
            last_hidden_state: x,
            pooler_output,
        })
    }
}

impl Encoder for Vit {
    type Input = Tensor<4>;

    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn dim(&self) -> usize {
        self.hidden
    }

    /// The pooled vector is the class token (as `ViTForImageClassification`
    /// reads it); the sequence is every token. Images must have the
    /// configured size (preprocess with `ImagePreprocess::vit`).
    fn encode(&self, images: &Tensor<4>) -> Result<Embeddings> {
        // On a thread of the CPU pool: each op splits its work from there
        // instead of waking the pool and sleeping (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let out = self.forward(images.clone())?;
            let sequence = out.last_hidden_state;
            let [batch, _, hidden] = sequence.dims();
            let pooled = sequence
                .clone()
                .slice([0..batch, 0..1])
                .reshape([batch, hidden]);
            Ok(Embeddings::dense(pooled, sequence))
        })
    }
}
