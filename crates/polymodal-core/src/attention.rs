//! The pieces every pretrained Transformer here shares (BERT, ViT, CLIP,
//! AST, Whisper): multi-head self-attention with separate query, key, value
//! and output projections under the checkpoint's own names, and the
//! feed-forward activations of Hugging Face configs.

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, relu, sigmoid};
use burn::tensor::ops::AttentionModuleOptions;
use serde::{Deserialize, Serialize};

use crate::weights::Init;
use crate::weights::hf_check::multiple;
use crate::{Error, Result};

/// A feed-forward activation, by its Hugging Face `hidden_act` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `gelu`: x·Φ(x) with the exact error function.
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation.
    GeluTanh,
    /// `quick_gelu` (CLIP): x·σ(1.702·x).
    QuickGelu,
    /// `relu`.
    Relu,
}

impl Activation {
    /// The activation named `name` in a Hugging Face config.
    pub fn from_hf(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "quick_gelu" => Ok(Self::QuickGelu),
            "relu" => Ok(Self::Relu),
            _ => Err(Error::Config(format!(
                "activation `{name}` is not supported"
            ))),
        }
    }

    /// Applies it element-wise.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Gelu => crate::cpu::gelu(x),
            Self::GeluTanh => gelu_approximate(x),
            Self::QuickGelu => x.clone() * sigmoid(x * 1.702),
            Self::Relu => relu(x),
        }
    }
}

/// Where the projections of a [`SelfAttention`] are stored in a checkpoint,
/// relative to the layer's scope (see [`Init::pp`]).
#[derive(Debug, Clone, Copy)]
pub struct AttentionNames {
    /// Scope of the four projections within the layer (`attention`,
    /// `self_attn`; `""`: the layer's own).
    pub scope: &'static str,
    /// Query projection (`query`, `q_proj`).
    pub query: &'static str,
    /// Key projection.
    pub key: &'static str,
    /// Value projection.
    pub value: &'static str,
    /// Output projection.
    pub output: &'static str,
    /// Whether the key projection has a bias (Whisper's has none).
    pub key_bias: bool,
}

impl AttentionNames {
    /// `{scope}.{q}`, `{scope}.{k}`, `{scope}.{v}`, `{scope}.{o}`, all biased.
    pub const fn new(scope: &'static str, [query, key, value, output]: [&'static str; 4]) -> Self {
        Self {
            scope,
            query,
            key,
            value,
            output,
            key_bias: true,
        }
    }
}

/// Multi-head scaled dot-product self-attention (separate q, k, v, output
/// projections; PyTorch weight layout when loaded).
#[derive(Module, Debug)]
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    heads: usize,
}

impl SelfAttention {
    /// `heads` heads over width `dim`; the weights from `init` (the layer's
    /// scope) under `names`.
    pub fn build(
        init: &Init,
        names: &AttentionNames,
        dim: usize,
        heads: usize,
        device: &Device,
    ) -> Result<Self> {
        multiple("attention width", dim, "heads", heads)?;
        let init = init.pp(names.scope);
        let linear = |name: &str, bias: bool| init.pp(name).linear_with(dim, dim, bias, device);
        Ok(Self {
            query: linear(names.query, true)?,
            key: linear(names.key, names.key_bias)?,
            value: linear(names.value, true)?,
            output: linear(names.output, true)?,
            heads,
        })
    }

    /// Attends over `x` `[batch, length, dim]`. `padding` `[batch, length]`
    /// is true at keys to ignore; `causal` hides later positions (CLIP's
    /// text tower). Runs as [`crate::cpu::attention_padded`] (on the CPU
    /// backend in inference) or the backend's fused attention (one
    /// pass over the scores instead of matmul, scale, mask, softmax,
    /// matmul); a query whose keys are all hidden gets zeros.
    pub fn forward(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        let [batch, length, dim] = x.dims();
        let head_dim = dim / self.heads;
        let split = |t: Tensor<3>| {
            t.reshape([batch, length, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let options = AttentionModuleOptions {
            is_causal: causal,
            ..Default::default()
        };
        let context = crate::cpu::attention_padded(q, k, v, padding, options)
            .swap_dims(1, 2)
            .reshape([batch, length, dim]);
        self.output.forward(context)
    }
}

/// Where the parts of a [`PreNormBlock`] are stored in a checkpoint,
/// relative to the layer's scope (see [`Init::pp`]).
#[derive(Debug, Clone, Copy)]
pub struct BlockNames {
    /// Layer norm before attention.
    pub norm1: &'static str,
    /// The attention projections.
    pub attention: AttentionNames,
    /// Layer norm before the feed-forward layer.
    pub norm2: &'static str,
    /// Feed-forward expansion.
    pub fc1: &'static str,
    /// Feed-forward projection back.
    pub fc2: &'static str,
}

impl BlockNames {
    /// A layer of a Hugging Face ViT-family model (ViT, AST, DeiT).
    /// Checkpoints saved by transformers 5 name it (under `layers.{i}`)
    /// `attention.q_proj`, `mlp.fc1`, …; older ones (most of the Hub, under
    /// `encoder.layer.{i}`) `attention.attention.query`,
    /// `intermediate.dense`, …. `modern` picks the former.
    pub fn hf_vit(modern: bool) -> Self {
        let (attention, fc1, fc2) = if modern {
            (
                AttentionNames::new("attention", ["q_proj", "k_proj", "v_proj", "o_proj"]),
                "mlp.fc1",
                "mlp.fc2",
            )
        } else {
            (
                AttentionNames::new(
                    "attention",
                    [
                        "attention.query",
                        "attention.key",
                        "attention.value",
                        "output.dense",
                    ],
                ),
                "intermediate.dense",
                "output.dense",
            )
        };
        Self {
            norm1: "layernorm_before",
            attention,
            norm2: "layernorm_after",
            fc1,
            fc2,
        }
    }
}

/// The `count` layers of a Hugging Face ViT-family model (ViT, AST, DeiT)
/// under `init`'s scope, in whichever layout its checkpoint uses (see
/// [`BlockNames::hf_vit`]).
pub fn hf_vit_layers(
    init: &Init,
    count: usize,
    shape: BlockShape,
    device: &Device,
) -> Result<Vec<PreNormBlock>> {
    let modern = init.contains("layers.0.layernorm_before.weight");
    let layers = init.pp(if modern { "layers" } else { "encoder.layer" });
    PreNormBlock::stack(&layers, count, &BlockNames::hf_vit(modern), shape, device)
}

/// A pre-norm Transformer layer (ViT, CLIP, AST, Whisper's encoder):
/// `x + attention(norm1(x))`, then `x + fc2(act(fc1(norm2(x))))`.
#[derive(Module, Debug)]
pub struct PreNormBlock {
    norm1: LayerNorm,
    attention: SelfAttention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    #[module(skip)]
    activation: Activation,
}

/// The sizes of a [`PreNormBlock`].
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    /// Token width.
    pub dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub ff_dim: usize,
    /// Layer norm epsilon.
    pub eps: f64,
    /// Feed-forward activation.
    pub activation: Activation,
}

impl BlockShape {
    /// The shape a Hugging Face config gives: `hidden_size`,
    /// `num_attention_heads`, `intermediate_size`, `layer_norm_eps` and the
    /// activation's name (`hidden_act`, see [`Activation::from_hf`]).
    pub fn from_hf(
        hidden_size: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
        layer_norm_eps: f64,
        hidden_act: &str,
    ) -> Result<Self> {
        Ok(Self {
            dim: hidden_size,
            heads: num_attention_heads,
            ff_dim: intermediate_size,
            eps: layer_norm_eps,
            activation: Activation::from_hf(hidden_act)?,
        })
    }
}

impl PreNormBlock {
    /// The layer of `shape` with weights from `init` (the layer's scope)
    /// under `names`.
    pub fn build(
        init: &Init,
        names: &BlockNames,
        shape: BlockShape,
        device: &Device,
    ) -> Result<Self> {
        let BlockShape {
            dim,
            heads,
            ff_dim,
            eps,
            activation,
        } = shape;
        Ok(Self {
            norm1: init.pp(names.norm1).layer_norm(dim, eps, device)?,
            attention: SelfAttention::build(init, &names.attention, dim, heads, device)?,
            norm2: init.pp(names.norm2).layer_norm(dim, eps, device)?,
            fc1: init.pp(names.fc1).linear(dim, ff_dim, device)?,
            fc2: init.pp(names.fc2).linear(ff_dim, dim, device)?,
            activation,
        })
    }

    /// `count` layers, layer `i` in the scope `i` of `init` (e.g.
    /// `encoder.layers.{i}`), each with `names`.
    pub fn stack(
        init: &Init,
        count: usize,
        names: &BlockNames,
        shape: BlockShape,
        device: &Device,
    ) -> Result<Vec<Self>> {
        (0..count)
            .map(|i| Self::build(&init.pp(i), names, shape, device))
            .collect()
    }

    /// Runs the layer (`padding` and `causal` as in [`SelfAttention::forward`]).
    pub fn forward(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        causal: bool,
    ) -> Tensor<3> {
        let x = x.clone()
            + self
                .attention
                .forward(self.norm1.forward(x), padding, causal);
        let inner = self
            .activation
            .apply(self.fc1.forward(self.norm2.forward(x.clone())));
        x + self.fc2.forward(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_keys_do_not_matter_and_causal_hides_the_future() {
        let device = Device::flex();
        let names = AttentionNames::new("", ["q", "k", "v", "o"]);
        let attention = SelfAttention::build(&Init::random(), &names, 8, 2, &device).unwrap();
        let base: Vec<f32> = (0..24).map(|i| (i as f32 * 0.3).cos()).collect();
        let mut changed = base.clone();
        changed[16..24].fill(9.0); // the third token
        let x = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [1, 3, 8]), &device);
        let padding = Tensor::<2, Bool>::from_data([[false, false, true]], &device);
        let first = |t: Tensor<3>| t.slice([0..1, 0..2]).try_into_vec_as::<f32>().unwrap();
        let a = first(attention.forward(x(base.clone()), Some(padding.clone()), false));
        let b = first(attention.forward(x(changed.clone()), Some(padding), false));
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6));
        let a = first(attention.forward(x(base), None, true));
        let b = first(attention.forward(x(changed), None, true));
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6));
        assert!(SelfAttention::build(&Init::random(), &names, 8, 3, &device).is_err());
        assert!(Activation::from_hf("swish").is_err());
    }
}
