//! Joint fusion: a single-stream Transformer whose self-attention runs over
//! the tokens of every modality at once, so each token attends across
//! modalities (as in VisualBERT or UNITER).

use burn::module::Param;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderInput};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, Result, masked_mean, pre_norm_transformer};

use crate::inputs::{check_config, check_positive, check_sequence, token_mask};
use crate::registry::RegisteredFusion;

/// Settings of [`SingleStreamTransformer`].
#[derive(Config, Debug)]
pub struct SingleStreamTransformerConfig {
    /// Width of each input modality's sequence embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Width of the shared token space.
    #[config(default = 64)]
    pub dim: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Transformer layers.
    #[config(default = 1)]
    pub layers: usize,
    /// Dropout inside the Transformer.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl SingleStreamTransformerConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<SingleStreamTransformer> {
        let layer = "SingleStreamTransformer";
        check_config(layer, &self.input_dims, 1)?;
        check_positive(layer, "layers", self.layers)?;
        crate::check_heads(layer, self.dim, self.heads)?;
        crate::dropout(self.dropout)?;
        let modalities = self.input_dims.len();
        Ok(SingleStreamTransformer {
            projections: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.dim).init(device))
                .collect(),
            modality_embedding: Param::from_tensor(Tensor::random(
                [modalities, self.dim],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            transformer: pre_norm_transformer(
                self.dim,
                self.heads,
                self.layers,
                self.dropout,
                device,
            ),
            input_dims: self.input_dims.clone(),
            dim: self.dim,
        })
    }
}

/// Projects each modality's tokens into one space, adds a learned
/// modality-type embedding, runs self-attention over all tokens together
/// (absent modalities and padding masked out) and mean-pools the result.
#[derive(Module, Debug)]
pub struct SingleStreamTransformer {
    projections: Vec<Linear>,
    modality_embedding: Param<Tensor<2>>,
    transformer: TransformerEncoder,
    input_dims: Vec<usize>,
    dim: usize,
}

impl Fusion for SingleStreamTransformer {
    fn output_dim(&self) -> usize {
        self.dim
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        check_sequence("SingleStreamTransformer", inputs, &self.input_dims)?;
        let type_table = self.modality_embedding.val();
        let mut tokens = Vec::with_capacity(inputs.len());
        let mut masks = Vec::with_capacity(inputs.len());
        for (index, (input, projection)) in inputs.iter().zip(&self.projections).enumerate() {
            let type_vector = type_table.clone().narrow(0, index, 1).unsqueeze::<3>();
            tokens.push(projection.forward(input.embeddings.sequence.clone()) + type_vector);
            masks.push(token_mask(input));
        }
        let tokens = Tensor::cat(tokens, 1);
        let mask = Tensor::cat(masks, 1);
        let attended = self
            .transformer
            .forward(TransformerEncoderInput::new(tokens).mask_pad(mask.clone().bool_not()));
        Ok(masked_mean(attended, mask))
    }
}

/// The Transformer works at `dim`.
impl RegisteredFusion for SingleStreamTransformer {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        SingleStreamTransformerConfig::new(dims)
            .with_dim(dim)
            .init(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_must_divide_the_width() {
        let config = SingleStreamTransformerConfig::new(vec![8])
            .with_dim(10)
            .with_heads(4);
        assert!(config.init(&Device::flex()).is_err());
    }
}
