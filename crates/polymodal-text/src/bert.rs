//! BERT (Devlin et al., 2019) as Hugging Face's `BertModel`: token, position
//! and segment embeddings, post-norm Transformer layers, and the optional
//! tanh pooler over `[CLS]`. Weights load by their Hugging Face names from a
//! model folder (`config.json` + `model.safetensors`).

use std::path::Path;

use burn::nn::{Embedding, LayerNorm, Linear};
use burn::prelude::*;
use serde::Deserialize;

use polymodal_core::{
    Activation, AttentionNames, Embeddings, Encoder, Error, Init, LoadReport, Modality, Result,
    SelfAttention, TokenBatch, Weights, masked_mean, read_config,
    weights::{HfTransformer, hf_check},
};

/// The fields of a Hugging Face BERT `config.json` that shape the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// The Transformer layers' sizes (`hidden_size`, `num_hidden_layers`, ...).
    #[serde(flatten)]
    pub transformer: HfTransformer,
    /// Size of the position table (longest input).
    pub max_position_embeddings: usize,
    /// Number of segments (token types).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Only `absolute` position embeddings are supported.
    #[serde(default = "default_positions")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_positions() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        read_config(path, Self::validate)
    }

    /// Checks the sizes and the options this implementation supports.
    pub fn validate(&self) -> Result<()> {
        self.transformer.validate()?;
        hf_check::positive(&[
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ])?;
        if self.position_embedding_type != "absolute" {
            return Err(Error::Config(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            )));
        }
        Ok(())
    }

    /// A randomly initialised model (to train from scratch), pooling with
    /// `pooling`.
    pub fn init(&self, pooling: BertPooling, device: &Device) -> Result<Bert> {
        Bert::build(self, &Init::random(), true, pooling, device)
    }
}

/// How [`Bert`] as an [`Encoder`] turns token vectors into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BertPooling {
    /// Mean over the real tokens (sentence-transformers' default).
    #[default]
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
    /// The pooler: tanh(dense(`[CLS]`)), as `BertModel`'s `pooler_output`.
    Pooler,
}

/// The attention projections of a `BertLayer`.
const ATTENTION: AttentionNames = AttentionNames::new(
    "attention",
    ["self.query", "self.key", "self.value", "output.dense"],
);

/// One post-norm Transformer layer, named as in Hugging Face's `BertLayer`.
#[derive(Module, Debug)]
struct BertLayer {
    attention: SelfAttention,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl BertLayer {
    /// The layer in `init`'s scope (`encoder.layer.{i}`).
    fn build(config: &BertConfig, init: &Init, device: &Device) -> Result<Self> {
        let sizes = &config.transformer;
        let (h, i, eps) = (
            sizes.hidden_size,
            sizes.intermediate_size,
            sizes.layer_norm_eps,
        );
        let heads = sizes.num_attention_heads;
        Ok(Self {
            attention: SelfAttention::build(init, &ATTENTION, h, heads, device)?,
            attention_norm: init
                .pp("attention.output.LayerNorm")
                .layer_norm(h, eps, device)?,
            intermediate: init.pp("intermediate.dense").linear(h, i, device)?,
            output: init.pp("output.dense").linear(i, h, device)?,
            output_norm: init.pp("output.LayerNorm").layer_norm(h, eps, device)?,
        })
    }

    /// `x` `[batch, length, hidden]`; `padding` `[batch, length]` is true at
    /// padding tokens.
    fn forward(&self, x: Tensor<3>, padding: Tensor<2, Bool>, act: Activation) -> Tensor<3> {
        let context = self.attention.forward(x.clone(), Some(padding), false);
        let x = self.attention_norm.forward(context + x);
        let inner = act.apply(self.intermediate.forward(x.clone()));
        self.output_norm.forward(self.output.forward(inner) + x)
    }
}

/// What [`Bert::forward`] returns, as `BertModel`'s output.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// `[batch, length, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// tanh(dense(`[CLS]`)) `[batch, hidden]`, when the model has a pooler.
    pub pooler_output: Option<Tensor<2>>,
}

/// A BERT encoder (Hugging Face `BertModel`).
#[derive(Module, Debug)]
pub struct Bert {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
    pooler: Option<Linear>,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    pooling: BertPooling,
    hidden: usize,
    max_positions: usize,
}

impl Bert {
    /// Loads a Hugging Face model folder: `config.json` and
    /// `model.safetensors` (a `BertModel`, or a `BertFor…` checkpoint whose
    /// encoder is stored under `bert.`). Returns the tensors of the file the
    /// model did not use (e.g. a task head).
    pub fn load(
        dir: impl AsRef<Path>,
        pooling: BertPooling,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let weights = Weights::open(dir.join("model.safetensors"))?;
        Self::from_weights(&config, weights, pooling, device)
    }

    /// Builds the model from `weights` (names as in `BertModel`, optionally
    /// under `bert.`); every missing tensor is named in the error.
    pub fn from_weights(
        config: &BertConfig,
        weights: Weights,
        pooling: BertPooling,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        config.validate()?;
        let weights = weights.with_prefix_of("embeddings.word_embeddings.weight", &["bert.", ""]);
        let has_pooler = weights.contains("pooler.dense.weight");
        if pooling == BertPooling::Pooler && !has_pooler {
            return Err(Error::Weights {
                path: weights.path().into(),
                reason: "pooling `pooler` needs pooler.dense.*, which the file lacks".into(),
            });
        }
        let model = Self::build(config, &Init::from(&weights), has_pooler, pooling, device)?;
        Ok((model, weights.finish()?))
    }

    fn build(
        config: &BertConfig,
        init: &Init,
        pooler: bool,
        pooling: BertPooling,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let sizes = &config.transformer;
        let (h, eps) = (sizes.hidden_size, sizes.layer_norm_eps);
        let embeddings = init.pp("embeddings");
        // A buffer of 0..max_positions that the model recomputes.
        embeddings.skip("position_ids");
        let embedding = |name: &str, count: usize| embeddings.pp(name).embedding(count, h, device);
        let layers = init.pp("encoder.layer");
        Ok(Self {
            word_embeddings: embedding("word_embeddings", config.vocab_size)?,
            position_embeddings: embedding("position_embeddings", config.max_position_embeddings)?,
            token_type_embeddings: embedding("token_type_embeddings", config.type_vocab_size)?,
            embeddings_norm: embeddings.pp("LayerNorm").layer_norm(h, eps, device)?,
            layers: (0..sizes.num_hidden_layers)
                .map(|i| BertLayer::build(config, &layers.pp(i), device))
                .collect::<Result<_>>()?,
            pooler: pooler
                .then(|| init.pp("pooler.dense").linear(h, h, device))
                .transpose()?,
            activation: Activation::from_hf(&sizes.hidden_act)?,
            pooling,
            hidden: h,
            max_positions: config.max_position_embeddings,
        })
    }

    /// Runs the model on token `ids` `[batch, length]` with `mask` (true at
    /// real tokens) and segment ids (`None`: all 0). Inputs longer than the
    /// position table are an error.
    pub fn forward(
        &self,
        ids: Tensor<2, Int>,
        type_ids: Option<Tensor<2, Int>>,
        mask: Tensor<2, Bool>,
    ) -> Result<BertOutput> {
        let [batch, length] = ids.dims();
        if length > self.max_positions {
            return Err(Error::Invalid(format!(
                "{length} tokens exceed BERT's {} positions: truncate the input",
                self.max_positions
            )));
        }
        if mask.dims() != [batch, length] {
            return Err(Error::Invalid(format!(
                "mask {:?} does not match ids {:?}",
                mask.dims(),
                [batch, length]
            )));
        }
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..length as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, length]);
        let type_ids = type_ids.unwrap_or_else(|| Tensor::zeros([batch, length], &device));
        let x = self.word_embeddings.forward(ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(type_ids);
        let mut x = self.embeddings_norm.forward(x);
        let padding = mask.bool_not();
        for layer in &self.layers {
            x = layer.forward(x, padding.clone(), self.activation);
        }
        let pooler_output = self.pooler.as_ref().map(|dense| {
            let cls = x
                .clone()
                .slice([0..batch, 0..1])
                .reshape([batch, self.hidden]);
            dense.forward(cls).tanh()
        });
        Ok(BertOutput {
            last_hidden_state: x,
            pooler_output,
        })
    }
}

impl Encoder for Bert {
    type Input = TokenBatch;

    fn modality(&self) -> Modality {
        Modality::Text
    }

    fn dim(&self) -> usize {
        self.hidden
    }

    /// Tokens beyond the position table are cut (tokenizers truncate first);
    /// the pooled vector follows the model's [`BertPooling`].
    fn encode(&self, input: &TokenBatch) -> Result<Embeddings> {
        // On a thread of the CPU pool: each op splits its work from there
        // instead of waking the pool and sleeping (`cpu::on_pool`).
        polymodal_core::cpu::on_pool(|| {
            let [batch, length] = input.ids.dims();
            let length = length.min(self.max_positions);
            let ids = input.ids.clone().slice([0..batch, 0..length]);
            let mask = input.mask.clone().slice([0..batch, 0..length]);
            let out = self.forward(ids, None, mask.clone())?;
            let sequence = out.last_hidden_state;
            let cls = || {
                sequence
                    .clone()
                    .slice([0..batch, 0..1])
                    .reshape([batch, self.hidden])
            };
            let pooled = match (self.pooling, out.pooler_output) {
                (BertPooling::Mean, _) => masked_mean(sequence.clone(), mask.clone()),
                (BertPooling::Pooler, Some(p)) => p,
                (BertPooling::Cls | BertPooling::Pooler, _) => cls(),
            };
            Ok(Embeddings {
                pooled,
                sequence,
                mask,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> BertConfig {
        BertConfig {
            vocab_size: 20,
            transformer: HfTransformer {
                hidden_size: 8,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                intermediate_size: 16,
                hidden_act: "gelu".into(),
                layer_norm_eps: 1e-12,
            },
            max_position_embeddings: 6,
            type_vocab_size: 2,
            position_embedding_type: "absolute".into(),
        }
    }

    #[test]
    fn padding_does_not_change_the_real_tokens() {
        let device = Device::flex();
        let model = tiny().init(BertPooling::Mean, &device).unwrap();
        let short = TokenBatch {
            ids: Tensor::from_data([[1, 5, 7]], &device),
            mask: Tensor::from_data([[true, true, true]], &device),
        };
        let padded = TokenBatch {
            ids: Tensor::from_data([[1, 5, 7, 0, 0]], &device),
            mask: Tensor::from_data([[true, true, true, false, false]], &device),
        };
        let a = model
            .encode(&short)
            .unwrap()
            .pooled
            .try_into_vec_as::<f32>()
            .unwrap();
        let b = model
            .encode(&padded)
            .unwrap()
            .pooled
            .try_into_vec_as::<f32>()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
        let long = Tensor::<2, Int>::zeros([1, 7], &device);
        let mask = Tensor::<2>::ones([1, 7], &device).equal_elem(1.0);
        assert!(model.forward(long, None, mask).is_err());
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut config = tiny();
        config.transformer.num_attention_heads = 3;
        assert!(config.validate().is_err());
        let mut config = tiny();
        config.transformer.hidden_act = "swish".into();
        assert!(config.validate().is_err());
        let mut config = tiny();
        config.position_embedding_type = "relative_key".into();
        assert!(config.validate().is_err());
    }
}
