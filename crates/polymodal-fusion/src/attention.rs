//! Joint fusion: one Transformer whose self-attention runs over the tokens of
//! every modality at once, so each token attends across modalities.

use burn::module::Param;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderInput};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, masked_mean, pre_norm_transformer};

/// Settings of [`CrossModalAttention`].
#[derive(Config, Debug)]
pub struct CrossModalAttentionConfig {
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

impl CrossModalAttentionConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> CrossModalAttention {
        let modalities = self.input_dims.len();
        CrossModalAttention {
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
            dim: self.dim,
        }
    }
}

/// Projects each modality's tokens into one space, tags them with a learned
/// modality embedding, runs self-attention over all tokens together (absent
/// modalities and padding masked out) and mean-pools the result.
#[derive(Module, Debug)]
pub struct CrossModalAttention {
    projections: Vec<Linear>,
    modality_embedding: Param<Tensor<2>>,
    transformer: TransformerEncoder,
    dim: usize,
}

impl Fusion for CrossModalAttention {
    fn output_dim(&self) -> usize {
        self.dim
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Tensor<2> {
        assert_eq!(
            inputs.len(),
            self.projections.len(),
            "CrossModalAttention built for another modality count"
        );
        let type_table = self.modality_embedding.val();
        let mut tokens = Vec::with_capacity(inputs.len());
        let mut masks = Vec::with_capacity(inputs.len());
        for (index, (input, projection)) in inputs.iter().zip(&self.projections).enumerate() {
            let type_vector = type_table
                .clone()
                .slice([index..index + 1, 0..self.dim])
                .unsqueeze::<3>();
            tokens.push(projection.forward(input.embeddings.sequence.clone()) + type_vector);
            let present = input.present.clone().unsqueeze_dim::<2>(1);
            let [batch, length] = input.embeddings.mask.dims();
            masks.push(
                input
                    .embeddings
                    .mask
                    .clone()
                    .bool_and(present.expand([batch, length])),
            );
        }
        let tokens = Tensor::cat(tokens, 1);
        let mask = Tensor::cat(masks, 1);
        let attended = self
            .transformer
            .forward(TransformerEncoderInput::new(tokens).mask_pad(mask.clone().bool_not()));
        masked_mean(attended, mask)
    }
}
