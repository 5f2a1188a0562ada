//! CLIP (Radford et al., 2021) as Hugging Face's `CLIPModel`: a causal text
//! Transformer and a Vision Transformer, each projected into one space where
//! matching captions and images have high cosine similarity, scaled by a
//! learned temperature. The vision tower is polymodal-image's
//! [`ClipVision`] (it reads pixels preprocessed with
//! `ImagePreprocess::clip`); the text tower, alone, is the `clip` kind of
//! this crate's registry.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::prelude::*;
use serde::Deserialize;

use polymodal_core::{
    BlockShape, Embeddings, Encoder, Error, Init, LoadReport, Modality, PreNormBlock, Result,
    TokenBatch, Weights, read_config, weights::read_config_part,
};
use polymodal_image::clip_layers;

use crate::TextTokenizer;
pub use polymodal_image::{ClipVision, ClipVisionConfig};

use polymodal_core::l2_normalize;

/// `text_config` of a Hugging Face CLIP `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Token width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Longest input.
    pub max_position_embeddings: usize,
    /// Activation (`quick_gelu` in OpenAI's models).
    #[serde(default = "polymodal_core::weights::hf_default::quick_gelu")]
    pub hidden_act: String,
    /// Layer norm epsilon.
    #[serde(default = "polymodal_core::weights::hf_default::clip_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// End-of-text token. With the legacy value 2 the pooled token is the one
    /// with the highest id (the original CLIP vocabulary puts end-of-text
    /// last), as `transformers` does.
    #[serde(default = "legacy_eos")]
    pub eos_token_id: i64,
}

/// A Hugging Face CLIP `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipConfig {
    /// The text tower.
    pub text_config: ClipTextConfig,
    /// The vision tower.
    pub vision_config: ClipVisionConfig,
    /// Width of the shared space.
    pub projection_dim: usize,
    /// Initial log temperature (when training from scratch).
    #[serde(default = "logit_scale_init")]
    pub logit_scale_init_value: f32,
}

fn legacy_eos() -> i64 {
    2
}
fn logit_scale_init() -> f32 {
    2.6592
}

impl ClipConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, Self::validate)
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        self.vision_config.validate()
    }

    /// A randomly initialised model.
    pub fn init(&self, device: &Device) -> Result<Clip> {
        Clip::build(self, &Init::random(), device)
    }
}

/// CLIP's text tower.
#[derive(Module, Debug)]
pub struct ClipText {
    tokens: Embedding,
    positions: Embedding,
    layers: Vec<PreNormBlock>,
    norm: LayerNorm,
    eos_token_id: i64,
    max_positions: usize,
}

impl ClipText {
    /// The tower in `init`'s scope (`text_model`).
    fn build(config: &ClipTextConfig, init: &Init, device: &Device) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
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
            tokens: embeddings
                .pp("token_embedding")
                .embedding(config.vocab_size, h, device)?,
            positions: embeddings.pp("position_embedding").embedding(
                config.max_position_embeddings,
                h,
                device,
            )?,
            layers: clip_layers(init, config.num_hidden_layers, shape, device)?,
            norm: init.pp("final_layer_norm").layer_norm(h, eps, device)?,
            eos_token_id: config.eos_token_id,
            max_positions: config.max_position_embeddings,
        })
    }

    /// Last hidden state `[batch, length, hidden]` and the pooled
    /// end-of-text vector `[batch, hidden]`.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask: Tensor<2, Bool>,
    ) -> Result<(Tensor<3>, Tensor<2>)> {
        let [batch, length] = ids.dims();
        if length > self.max_positions || length == 0 {
            return Err(Error::Invalid(format!(
                "CLIP's text tower takes 1 to {} tokens, got {length}",
                self.max_positions
            )));
        }
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..length as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, length]);
        let mut x = self.tokens.forward(ids.clone()) + self.positions.forward(positions);
        let padding = mask.bool_not();
        for layer in &self.layers {
            x = layer.forward(x, Some(padding.clone()), true);
        }
        let x = self.norm.forward(x);
        // The end-of-text position of each row (see `eos_token_id`).
        let eos = if self.eos_token_id == 2 {
            ids.argmax(1)
        } else {
            ids.equal_elem(self.eos_token_id).int().argmax(1)
        }; // [batch, 1]
        let hidden = x.dims()[2];
        let index = eos.reshape([batch, 1, 1]).expand([batch, 1, hidden]);
        let pooled = x.clone().gather(1, index).reshape([batch, hidden]);
        Ok((x, pooled))
    }
}

impl ClipTextConfig {
    /// The text tower's settings of a Hugging Face folder's `config.json`:
    /// a `CLIPModel`'s `text_config`, or a `CLIPTextModel`'s own fields.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config_part(path, "text_config", |_: &Self| Ok(()))
    }
}

impl ClipText {
    /// Loads the text tower of a Hugging Face folder (`config.json` +
    /// `model.safetensors`: a `CLIPModel`, whose vision tower is reported
    /// unused, or a `CLIPTextModel`).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = ClipTextConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        let model = Self::build(&config, &Init::from(&weights).pp("text_model"), device)?;
        Ok((model, weights.finish()?))
    }
}

impl Encoder for ClipText {
    type Input = TokenBatch;

    fn modality(&self) -> Modality {
        Modality::Text
    }

    fn dim(&self) -> usize {
        self.norm.gamma.dims()[0]
    }

    /// Pooled: the end-of-text token's vector (`CLIPTextModel`'s
    /// `pooler_output`, before the projection); sequence: every token with
    /// the batch's mask.
    fn encode(&self, batch: &TokenBatch) -> Result<Embeddings> {
        // On a thread of the CPU pool: each op splits its work from there
        // instead of waking the pool and sleeping (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let (sequence, pooled) = self.forward(batch.ids.clone(), batch.mask.clone())?;
            Ok(Embeddings {
                pooled,
                sequence,
                mask: batch.mask.clone(),
            })
        })
    }
}

/// What [`Clip::forward`] returns, as `CLIPModel`'s output.
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// `[texts, images]`: scaled cosine similarities.
    pub logits_per_text: Tensor<2>,
    /// `[images, texts]`.
    pub logits_per_image: Tensor<2>,
    /// L2-normalised text embeddings `[texts, projection_dim]`.
    pub text_embeds: Tensor<2>,
    /// L2-normalised image embeddings `[images, projection_dim]`.
    pub image_embeds: Tensor<2>,
}

/// CLIP: both towers, their projections and the logit scale.
#[derive(Module, Debug)]
pub struct Clip {
    text: ClipText,
    vision: ClipVision,
    text_projection: Linear,
    visual_projection: Linear,
    logit_scale: Param<Tensor<1>>,
}

impl Clip {
    /// Loads a Hugging Face folder (`config.json` + `model.safetensors`).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = ClipConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        let model = Self::build(&config, &Init::from(&weights), device)?;
        Ok((model, weights.finish()?))
    }

    fn build(config: &ClipConfig, init: &Init, device: &Device) -> Result<Self> {
        let projection = |name: &str, width: usize| {
            init.pp(name)
                .linear_with(width, config.projection_dim, false, device)
        };
        let scale = init.scalar("logit_scale", config.logit_scale_init_value)?;
        Ok(Self {
            text: ClipText::build(&config.text_config, &init.pp("text_model"), device)?,
            vision: ClipVision::build(&config.vision_config, &init.pp("vision_model"), device)?,
            text_projection: projection("text_projection", config.text_config.hidden_size)?,
            visual_projection: projection("visual_projection", config.vision_config.hidden_size)?,
            logit_scale: Param::from_tensor(Tensor::from_data([scale], device)),
        })
    }

    /// Normalised text embeddings of token `ids` (with `mask`).
    pub fn text_embeds(&self, ids: Tensor<2, Int>, mask: Tensor<2, Bool>) -> Result<Tensor<2>> {
        let (_, pooled) = self.text.forward(ids, mask)?;
        Ok(l2_normalize(self.text_projection.forward(pooled)))
    }

    /// Normalised image embeddings of preprocessed `pixels`.
    pub fn image_embeds(&self, pixels: Tensor<4>) -> Result<Tensor<2>> {
        let (_, pooled) = self.vision.forward(pixels)?;
        Ok(l2_normalize(self.visual_projection.forward(pooled)))
    }

    /// Similarities of every text with every image.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        mask: Tensor<2, Bool>,
        pixels: Tensor<4>,
    ) -> Result<ClipOutput> {
        let text_embeds = self.text_embeds(ids, mask)?;
        let image_embeds = self.image_embeds(pixels)?;
        let scale = self.logit_scale.val().exp().reshape([1, 1]);
        let logits_per_text = text_embeds.clone().matmul(image_embeds.clone().transpose()) * scale;
        Ok(ClipOutput {
            logits_per_image: logits_per_text.clone().transpose(),
            logits_per_text,
            text_embeds,
            image_embeds,
        })
    }

    /// Zero-shot classification: the probability of each label for each
    /// image of `pixels` (preprocessed, `[images, 3, side, side]`), as
    /// `[images, labels]` rows that sum to 1. Each label's text embedding
    /// is the mean of its prompts' normalised embeddings, normalised again
    /// (CLIP's prompt ensembling); each prompt is a template with `{}`
    /// replaced by the label. The logits are the cosine similarities scaled
    /// by the model's logit scale, as `CLIPModel`'s `logits_per_image`.
    pub fn zero_shot(
        &self,
        tokenizer: &TextTokenizer,
        pixels: Tensor<4>,
        labels: &[String],
        templates: &[String],
    ) -> Result<Tensor<2>> {
        if labels.is_empty() || templates.is_empty() {
            return Err(Error::Config(
                "zero-shot classification needs labels and prompt templates".into(),
            ));
        }
        if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
            return Err(Error::Config(format!(
                "prompt template `{t}` has no `{{}}` for the label"
            )));
        }
        let device = pixels.device();
        let mut classes = Vec::with_capacity(labels.len());
        for label in labels {
            let prompts: Vec<String> = templates.iter().map(|t| t.replace("{}", label)).collect();
            let batch = tokenizer.encode_batch(&prompts)?.to_tensors(&device)?;
            let embeds = self.text_embeds(batch.ids, batch.mask)?; // [prompts, dim]
            classes.push(embeds.mean_dim(0)); // [1, dim]
        }
        let classes = l2_normalize(Tensor::cat(classes, 0)); // [labels, dim]
        let images = self.image_embeds(pixels)?; // [images, dim]
        let scale = self.logit_scale.val().exp().reshape([1, 1]);
        let logits = images.matmul(classes.transpose()) * scale;
        Ok(burn::tensor::activation::softmax(logits, 1))
    }

    /// The text tower.
    pub fn text_model(&self) -> &ClipText {
        &self.text
    }

    /// The vision tower.
    pub fn vision_model(&self) -> &ClipVision {
        &self.vision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        polymodal_core::testing::encoder_fixture("clip")
    }

    /// With one prompt per label, zero-shot probabilities are the softmax
    /// of `CLIPModel`'s `logits_per_image` (the parity-tested output of
    /// [`Clip::forward`]) for those prompts; an ensemble of prompts still
    /// gives rows that sum to 1, and differs.
    #[test]
    fn zero_shot_is_the_softmax_of_the_image_logits() {
        let device = Device::flex();
        let (clip, _) = Clip::load(fixture(), &device).unwrap();
        let labels = vec![
            "red car".to_string(),
            "blue sky".to_string(),
            "dog".to_string(),
        ];
        let corpus = ["a photo of a red car", "a blue sky", "a dog", "an image of"];
        let tokenizer = TextTokenizer::train_wordpiece(corpus.iter(), 60, 16).unwrap();
        assert!(tokenizer.vocab_size() <= 99, "the fixture's vocabulary");
        let side = clip.vision_model().image_size();
        let pixels = Tensor::<4>::random(
            [2, 3, side, side],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let one = vec!["a photo of a {}".to_string()];
        let ours = clip
            .zero_shot(&tokenizer, pixels.clone(), &labels, &one)
            .unwrap();
        let prompts: Vec<String> = labels.iter().map(|l| format!("a photo of a {l}")).collect();
        let batch = tokenizer
            .encode_batch(&prompts)
            .unwrap()
            .to_tensors(&device)
            .unwrap();
        let logits = clip
            .forward(batch.ids, batch.mask, pixels.clone())
            .unwrap()
            .logits_per_image;
        let want = burn::tensor::activation::softmax(logits, 1);
        let (ours, want) = (
            ours.try_into_vec_as::<f32>().unwrap(),
            want.try_into_vec_as::<f32>().unwrap(),
        );
        let diff = polymodal_core::testing::max_abs_diff(&ours, &want);
        assert!(diff < 1e-5, "{diff}");
        let two = vec!["a photo of a {}".to_string(), "an image of {}".to_string()];
        let ensemble = clip
            .zero_shot(&tokenizer, pixels.clone(), &labels, &two)
            .unwrap();
        let ensemble = ensemble.try_into_vec_as::<f32>().unwrap();
        for row in ensemble.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
        }
        assert!(polymodal_core::testing::max_abs_diff(&ensemble, &ours) > 1e-6);
        let error = clip.zero_shot(&tokenizer, pixels, &labels, &["no slot".into()]);
        assert!(error.unwrap_err().to_string().contains("no slot"));
    }
}
