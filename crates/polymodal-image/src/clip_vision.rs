//! CLIP's vision tower (Hugging Face `CLIPVisionModel`, the `vision_model`
//! of a `CLIPModel`): a Vision Transformer with a class embedding, a
//! pre-norm before the layers and a post-norm on the class token, which is
//! the pooled vector. `polymodal_text::Clip` pairs it with the text tower;
//! alone it is the `clip` kind of the image registry.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, LayerNorm};
use burn::prelude::*;
use serde::Deserialize;

use polymodal_core::{
    AttentionNames, BlockNames, BlockShape, Embeddings, Encoder, Error, Init, LoadReport, Modality,
    PreNormBlock, Result, Weights,
    weights::{hf_check, read_config_part},
};

/// `vision_config` of a Hugging Face CLIP `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    /// Token width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "polymodal_core::weights::hf_default::channels")]
    pub num_channels: usize,
    /// Activation.
    #[serde(default = "polymodal_core::weights::hf_default::quick_gelu")]
    pub hidden_act: String,
    /// Layer norm epsilon.
    #[serde(default = "polymodal_core::weights::hf_default::clip_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

/// The Transformer layers of a CLIP tower (`init`: `text_model` or
/// `vision_model`), with CLIP's tensor names.
pub fn clip_layers(
    init: &Init,
    count: usize,
    shape: BlockShape,
    device: &Device,
) -> Result<Vec<PreNormBlock>> {
    let names = BlockNames {
        norm1: "layer_norm1",
        attention: AttentionNames::new("self_attn", ["q_proj", "k_proj", "v_proj", "out_proj"]),
        norm2: "layer_norm2",
        fc1: "mlp.fc1",
        fc2: "mlp.fc2",
    };
    PreNormBlock::stack(&init.pp("encoder.layers"), count, &names, shape, device)
}

/// CLIP's vision tower.
#[derive(Module, Debug)]
pub struct ClipVision {
    patch_embedding: Conv2d,
    class_embedding: Param<Tensor<1>>,
    positions: Embedding,
    pre_norm: LayerNorm,
    layers: Vec<PreNormBlock>,
    post_norm: LayerNorm,
    image_size: usize,
}

impl ClipVision {
    /// The tower in `init`'s scope (`vision_model`); random with
    /// [`Init::random`].
    pub fn build(config: &ClipVisionConfig, init: &Init, device: &Device) -> Result<Self> {
        let (h, p, eps) = (config.hidden_size, config.patch_size, config.layer_norm_eps);
        let patches = (config.image_size / p).pow(2);
        let shape = BlockShape::from_hf(
            h,
            config.num_attention_heads,
            config.intermediate_size,
            eps,
            &config.hidden_act,
        )?;
        let embeddings = init.pp("embeddings");
        embeddings.skip("position_ids");
        Ok(Self {
            patch_embedding: embeddings.pp("patch_embedding").conv2d(
                &Conv2dConfig::new([config.num_channels, h], [p, p])
                    .with_stride([p, p])
                    .with_bias(false),
                device,
            )?,
            class_embedding: Param::from_tensor(embeddings.tensor(
                "class_embedding",
                [h],
                device,
            )?),
            positions: embeddings
                .pp("position_embedding")
                .embedding(patches + 1, h, device)?,
            // "pre_layrnorm" is Hugging Face's spelling.
            pre_norm: init.pp("pre_layrnorm").layer_norm(h, eps, device)?,
            layers: clip_layers(init, config.num_hidden_layers, shape, device)?,
            post_norm: init.pp("post_layernorm").layer_norm(h, eps, device)?,
            image_size: config.image_size,
        })
    }

    /// Last hidden state `[batch, 1 + patches, hidden]` and the pooled
    /// (post-norm class token) vector `[batch, hidden]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<(Tensor<3>, Tensor<2>)> {
        let [batch, _, height, width] = pixels.dims();
        if height != self.image_size || width != self.image_size {
            return Err(Error::Invalid(format!(
                "CLIP expects {0}×{0} images, got {height}×{width}",
                self.image_size
            )));
        }
        let patches = self.patch_embedding.forward(pixels);
        let [_, hidden, gh, gw] = patches.dims();
        let patches = patches.reshape([batch, hidden, gh * gw]).swap_dims(1, 2);
        let class = self
            .class_embedding
            .val()
            .reshape([1, 1, hidden])
            .expand([batch, 1, hidden]);
        let length = gh * gw + 1;
        let positions = Tensor::<1, Int>::arange(0..length as i64, &patches.device())
            .unsqueeze::<2>()
            .expand([batch, length]);
        let x = Tensor::cat(vec![class, patches], 1) + self.positions.forward(positions);
        let mut x = self.pre_norm.forward(x);
        for layer in &self.layers {
            x = layer.forward(x, None, false);
        }
        let cls = x.clone().slice([0..batch, 0..1]).reshape([batch, hidden]);
        Ok((x, self.post_norm.forward(cls)))
    }
}

impl ClipVisionConfig {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        hf_check::multiple("image_size", self.image_size, "patch_size", self.patch_size)?;
        hf_check::activation(&self.hidden_act)
    }

    /// The vision tower's settings of a Hugging Face folder's `config.json`:
    /// a `CLIPModel`'s `vision_config`, or a `CLIPVisionModel`'s own fields.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config_part(path, "vision_config", Self::validate)
    }
}

impl ClipVision {
    /// Loads the vision tower of a Hugging Face folder (`config.json` +
    /// `model.safetensors`: a `CLIPModel`, whose text tower is reported
    /// unused, or a `CLIPVisionModel`).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = ClipVisionConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        let model = Self::build(&config, &Init::from(&weights).pp("vision_model"), device)?;
        Ok((model, weights.finish()?))
    }

    /// The input side in pixels.
    pub fn image_size(&self) -> usize {
        self.image_size
    }
}

impl Encoder for ClipVision {
    type Input = Tensor<4>;

    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn dim(&self) -> usize {
        self.post_norm.gamma.dims()[0]
    }

    /// Pooled: the post-norm class token (`CLIPVisionModel`'s
    /// `pooler_output`, before the projection); sequence: every token
    /// (`last_hidden_state`). Images must have the configured size
    /// (preprocess with `ImagePreprocess::clip`).
    fn encode(&self, pixels: &Tensor<4>) -> Result<Embeddings> {
        // On a thread of the CPU pool: each op splits its work from there
        // instead of waking the pool and sleeping (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let (sequence, pooled) = self.forward(pixels.clone())?;
            Ok(Embeddings::dense(pooled, sequence))
        })
    }
}
