//! Joint fusion: a cross-modal Transformer in the style of MulT (Tsai et al.
//! 2019). Every modality's tokens attend to every other modality's tokens
//! through pairwise cross-attention, then to themselves. Beside each
//! modality's cross-modal stream, its own pooled tokens skip the attention
//! (`unimodal_skip`), so one modality's evidence reaches the head even when
//! another's is misleading.

use burn::module::Param;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::transformer::{
    PositionWiseFeedForward, PositionWiseFeedForwardConfig, TransformerEncoder,
    TransformerEncoderInput,
};
use burn::nn::{Dropout, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, Result, masked_mean, pre_norm_transformer};

use crate::inputs::{check_config, check_positive, check_sequence, presence, token_mask};
use crate::registry::RegisteredFusion;

/// Settings of [`CrossModalTransformer`].
#[derive(Config, Debug)]
pub struct CrossModalTransformerConfig {
    /// Width of each input modality's sequence embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Width of the shared token space.
    #[config(default = 64)]
    pub dim: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Cross-attention layers per ordered pair of modalities.
    #[config(default = 1)]
    pub cross_layers: usize,
    /// Self-attention layers per modality after the cross-attention.
    #[config(default = 1)]
    pub self_layers: usize,
    /// Dropout inside the blocks.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Whether each modality's own mean-pooled tokens (after the projection,
    /// before any attention) are output beside its cross-modal stream. In
    /// the streams every modality's tokens have gathered the others', so a
    /// modality that misleads (a voice unlike any heard in training) spoils
    /// them all; the skip keeps an untouched copy of each for the head. Off
    /// gives MulT's output alone.
    #[config(default = true)]
    pub unimodal_skip: bool,
}

impl CrossModalTransformerConfig {
    /// Width of the fused representation: `dim` per modality, twice that
    /// with `unimodal_skip`.
    pub fn output_dim(&self) -> usize {
        fused_width(self.dim, self.input_dims.len(), self.unimodal_skip)
    }

    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<CrossModalTransformer> {
        let layer = "CrossModalTransformer";
        check_config(layer, &self.input_dims, 2)?;
        check_positive(layer, "cross_layers", self.cross_layers)?;
        check_positive(layer, "self_layers", self.self_layers)?;
        crate::check_heads(layer, self.dim, self.heads)?;
        crate::dropout(self.dropout)?;
        let m = self.input_dims.len();
        Ok(CrossModalTransformer {
            projections: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.dim).init(device))
                .collect(),
            cross: (0..m * (m - 1) * self.cross_layers)
                .map(|_| CrossAttentionBlock::new(self.dim, self.heads, self.dropout, device))
                .collect(),
            merge: (0..m)
                .map(|_| LinearConfig::new(self.dim * (m - 1), self.dim).init(device))
                .collect(),
            self_attention: (0..m)
                .map(|_| {
                    pre_norm_transformer(
                        self.dim,
                        self.heads,
                        self.self_layers,
                        self.dropout,
                        device,
                    )
                })
                .collect(),
            input_dims: self.input_dims.clone(),
            dim: self.dim,
            cross_layers: self.cross_layers,
            unimodal_skip: self.unimodal_skip,
        })
    }
}

/// `dim` per modality for its stream, as much again for its skip.
fn fused_width(dim: usize, modalities: usize, unimodal_skip: bool) -> usize {
    dim * modalities * if unimodal_skip { 2 } else { 1 }
}

/// One pre-norm cross-attention layer: the target's tokens query the
/// source's tokens, then a position-wise feed-forward layer; both residual.
///
/// A learned null token is appended to every source, projected by the
/// attention's own key and value maps (close to the `add_bias_kv` of
/// PyTorch's and fairseq's attention, which MulT's code offers and which
/// learns the appended key and value directly): a query with nothing to
/// gather attends to it, and a sample whose source is absent attends to it
/// alone. So the target's tokens take the same path through
/// the block whether the source is there or not, and what follows the block
/// sees one kind of input.
#[derive(Module, Debug)]
pub struct CrossAttentionBlock {
    norm_target: LayerNorm,
    norm_source: LayerNorm,
    null: Param<Tensor<2>>,
    attention: MultiHeadAttention,
    norm_ff: LayerNorm,
    ff: PositionWiseFeedForward,
    dropout: Dropout,
}

impl CrossAttentionBlock {
    fn new(dim: usize, heads: usize, dropout: f64, device: &Device) -> Self {
        Self {
            norm_target: LayerNormConfig::new(dim).init(device),
            norm_source: LayerNormConfig::new(dim).init(device),
            null: Param::from_tensor(Tensor::random(
                [1, dim],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            attention: MultiHeadAttentionConfig::new(dim, heads)
                .with_dropout(dropout)
                .init(device),
            norm_ff: LayerNormConfig::new(dim).init(device),
            ff: PositionWiseFeedForwardConfig::new(dim, 2 * dim)
                .with_dropout(dropout)
                .init(device),
            dropout: burn::nn::DropoutConfig::new(dropout).init(),
        }
    }

    /// `target` `[batch, Lt, dim]` attends to `source` `[batch, Ls, dim]`
    /// and the null token; `source_mask` `[batch, Ls]` is true on the
    /// source's real tokens (all false for an absent source).
    fn forward(
        &self,
        target: Tensor<3>,
        source: Tensor<3>,
        source_mask: Tensor<2, Bool>,
    ) -> Tensor<3> {
        let [batch, _, dim] = source.dims();
        let query = self.norm_target.forward(target.clone());
        let null = self.null.val().unsqueeze::<3>().expand([batch, 1, dim]);
        let source = Tensor::cat(vec![self.norm_source.forward(source), null], 1);
        let always = Tensor::<2, Bool>::full([batch, 1], true, &source_mask.device());
        let source_mask = Tensor::cat(vec![source_mask, always], 1);
        let attended = self
            .attention
            .forward(MhaInput::new(query, source.clone(), source).mask_pad(source_mask.bool_not()))
            .context;
        let x = target + self.dropout.forward(attended);
        let ff = self.ff.forward(self.norm_ff.forward(x.clone()));
        x + self.dropout.forward(ff)
    }
}

/// For each target modality `t` and each other modality `s`, a stack of
/// cross-attention layers lets `t`'s tokens gather information from `s`'s
/// tokens. The `M − 1` results for `t` are concatenated, merged to `dim`,
/// passed through a self-attention Transformer over `t`'s tokens, and
/// mean-pooled; the fused vector is the concatenation over targets
/// (`dim · M` wide). With `unimodal_skip` each target's mean-pooled projected
/// tokens come first, the `M` streams after them (`2 · dim · M` wide).
///
/// Masks: a source absent for a sample contributes nothing to its targets
/// (their tokens attend to the block's null token alone), and an absent
/// target's pooled vectors are zero.
#[derive(Module, Debug)]
pub struct CrossModalTransformer {
    projections: Vec<Linear>,
    /// `(target, source, layer)` flattened in that order, source ≠ target.
    cross: Vec<CrossAttentionBlock>,
    merge: Vec<Linear>,
    self_attention: Vec<TransformerEncoder>,
    input_dims: Vec<usize>,
    dim: usize,
    cross_layers: usize,
    unimodal_skip: bool,
}

impl CrossModalTransformer {
    fn attend(
        &self,
        target: usize,
        tokens: &[Tensor<3>],
        masks: &[Tensor<2, Bool>],
        inputs: &[ModalityEmbeddings],
    ) -> Tensor<2> {
        let m = tokens.len();
        let mut gathered = Vec::with_capacity(m - 1);
        let mut block = target * (m - 1) * self.cross_layers;
        for source in (0..m).filter(|&s| s != target) {
            let mut x = tokens[target].clone();
            for _ in 0..self.cross_layers {
                x = self.cross[block].forward(x, tokens[source].clone(), masks[source].clone());
                block += 1;
            }
            gathered.push(x);
        }
        let merged = self.merge[target].forward(Tensor::cat(gathered, 2));
        let mask = masks[target].clone();
        let attended = self.self_attention[target]
            .forward(TransformerEncoderInput::new(merged).mask_pad(mask.clone().bool_not()));
        masked_mean(attended, mask) * presence(&inputs[target])
    }
}

impl Fusion for CrossModalTransformer {
    fn output_dim(&self) -> usize {
        fused_width(self.dim, self.input_dims.len(), self.unimodal_skip)
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        check_sequence("CrossModalTransformer", inputs, &self.input_dims)?;
        let tokens: Vec<Tensor<3>> = inputs
            .iter()
            .zip(&self.projections)
            .map(|(input, projection)| projection.forward(input.embeddings.sequence.clone()))
            .collect();
        let masks: Vec<Tensor<2, Bool>> = inputs.iter().map(token_mask).collect();
        let mut pooled: Vec<Tensor<2>> = Vec::with_capacity(2 * inputs.len());
        if self.unimodal_skip {
            // The token masks are false for absent samples: their means are zero.
            pooled.extend(
                tokens
                    .iter()
                    .zip(&masks)
                    .map(|(t, mask)| masked_mean(t.clone(), mask.clone())),
            );
        }
        pooled.extend((0..inputs.len()).map(|target| self.attend(target, &tokens, &masks, inputs)));
        Ok(Tensor::cat(pooled, 1))
    }
}

/// The attention works at `dim` (the output is `dim` per modality).
impl RegisteredFusion for CrossModalTransformer {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        CrossModalTransformerConfig::new(dims)
            .with_dim(dim)
            .init(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::testing::{max_diff, part};
    use polymodal_core::Modality;

    /// With the skip, the first `dim` columns are the image's own pooled
    /// tokens: another audio input leaves them as they are and moves the
    /// streams (which attend to the audio); without it, the output is the
    /// streams alone and every column moves.
    #[test]
    fn the_unimodal_skip_ignores_the_other_modality() {
        let device = Device::flex();
        let config = CrossModalTransformerConfig::new(vec![8, 6])
            .with_dim(4)
            .with_dropout(0.0);
        let image = part(Modality::Image, 8, 3, &[true, true], &device);
        let audio = part(Modality::Audio, 6, 5, &[true, true], &device);
        let other_audio = part(Modality::Audio, 6, 5, &[true, true], &device);
        let fuse = |layer: &CrossModalTransformer, audio: &ModalityEmbeddings| {
            layer.fuse(&[image.clone(), audio.clone()]).unwrap()
        };

        let layer = config.init(&device).unwrap();
        assert_eq!(layer.output_dim(), 16);
        let (a, b) = (fuse(&layer, &audio), fuse(&layer, &other_audio));
        assert_eq!(a.dims(), [2, 16]);
        let columns = |t: &Tensor<2>, from: usize, to: usize| t.clone().slice([0..2, from..to]);
        assert_eq!(max_diff(columns(&a, 0, 4), columns(&b, 0, 4)), 0.0);
        assert!(max_diff(columns(&a, 4, 8), columns(&b, 4, 8)) > 1e-3);
        assert!(max_diff(columns(&a, 8, 16), columns(&b, 8, 16)) > 1e-3);

        let layer = config.with_unimodal_skip(false).init(&device).unwrap();
        assert_eq!(layer.output_dim(), 8);
        let (a, b) = (fuse(&layer, &audio), fuse(&layer, &other_audio));
        assert_eq!(a.dims(), [2, 8]);
        assert!(max_diff(columns(&a, 0, 4), columns(&b, 0, 4)) > 1e-3);
    }

    /// A sample whose source is absent attends to the block's null token
    /// alone: its output is finite, the same whatever the absent tokens
    /// hold, and trains the null token, which a present source's samples
    /// reach only through their attention to it.
    #[test]
    fn an_absent_source_is_answered_by_the_null_token() {
        let device = Device::flex().autodiff();
        let block = CrossAttentionBlock::new(4, 2, 0.0, &device);
        let target = Tensor::<3>::random(
            [2, 3, 4],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let source = |shift: f32| {
            Tensor::<3>::random([2, 5, 4], burn::tensor::Distribution::Default, &device)
                .add_scalar(shift)
        };
        // Sample 0 has no source; sample 1 has all five tokens.
        let mask = Tensor::<2, Bool>::from_data([[false; 5], [true; 5]], &device);
        let out = block.forward(target.clone(), source(0.0), mask.clone());
        let other = block.forward(target.clone(), source(50.0), mask.clone());
        // Sample i's tokens as a [tokens, dim] matrix.
        let row = |t: &Tensor<3>, i: usize| t.clone().narrow(0, i, 1).flatten::<2>(0, 1);
        assert_eq!(max_diff(row(&out, 0), row(&other, 0)), 0.0);
        assert!(max_diff(row(&out, 1), row(&other, 1)) > 1e-3);

        let grads = out.narrow(0, 0, 1).sum().backward();
        let null = block
            .null
            .val()
            .grad(&grads)
            .expect("the null token trains");
        let size = null.abs().sum().into_scalar::<f32>();
        assert!(size.is_finite() && size > 0.0, "{size}");
    }

    #[test]
    fn needs_two_modalities() {
        assert!(
            CrossModalTransformerConfig::new(vec![8])
                .init(&Device::flex())
                .is_err()
        );
    }
}
