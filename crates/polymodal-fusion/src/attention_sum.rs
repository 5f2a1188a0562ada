//! Feature-level (early) fusion by an attention-weighted sum of the
//! modalities' embeddings.

use burn::nn::{Dropout, Linear, LinearConfig};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, Result};

use crate::inputs::{
    check_config, check_pooled, check_positive, masked_pooled, masked_softmax, presence,
};
use crate::registry::RegisteredFusion;

/// Settings of [`AttentionSum`].
#[derive(Config, Debug)]
pub struct AttentionSumConfig {
    /// Width of each input modality's pooled embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Width of the shared space and of the fused representation.
    #[config(default = 128)]
    pub dim: usize,
    /// Dropout on the fused representation.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl AttentionSumConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<AttentionSum> {
        check_config("AttentionSum", &self.input_dims, 1)?;
        check_positive("AttentionSum", "dim", self.dim)?;
        Ok(AttentionSum {
            projections: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.dim).init(device))
                .collect(),
            score_hidden: LinearConfig::new(self.dim, self.dim).init(device),
            score: LinearConfig::new(self.dim, 1).init(device),
            dropout: crate::dropout(self.dropout)?,
            input_dims: self.input_dims.clone(),
            dim: self.dim,
        })
    }
}

/// Projects each modality to a shared space, `p_m = tanh(W_m x_m)`, scores it,
/// `s_m = v · tanh(U p_m)`, and returns `Σ_m softmax(s)_m p_m` over the
/// present modalities. The weights say per sample which modality the model
/// relied on ([`AttentionSum::weights`]).
#[derive(Module, Debug)]
pub struct AttentionSum {
    projections: Vec<Linear>,
    score_hidden: Linear,
    score: Linear,
    dropout: Dropout,
    input_dims: Vec<usize>,
    dim: usize,
}

impl AttentionSum {
    fn projected(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<3>> {
        check_pooled("AttentionSum", inputs, &self.input_dims)?;
        let parts = inputs
            .iter()
            .zip(&self.projections)
            .map(|(input, projection)| projection.forward(masked_pooled(input)).tanh())
            .collect();
        Ok(Tensor::stack(parts, 1))
    }

    fn weights_of(&self, projected: Tensor<3>, inputs: &[ModalityEmbeddings]) -> Tensor<2> {
        let scores = self
            .score
            .forward(self.score_hidden.forward(projected).tanh())
            .squeeze_dim::<2>(2);
        let present = Tensor::cat(inputs.iter().map(presence).collect(), 1);
        masked_softmax(scores, present)
    }

    /// The attention weights `[batch, modalities]`.
    pub fn weights(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        let projected = self.projected(inputs)?;
        Ok(self.weights_of(projected, inputs))
    }
}

impl Fusion for AttentionSum {
    fn output_dim(&self) -> usize {
        self.dim
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        let projected = self.projected(inputs)?;
        let weights = self.weights_of(projected.clone(), inputs);
        let fused = (projected * weights.unsqueeze_dim::<3>(2))
            .sum_dim(1)
            .squeeze_dim::<2>(1);
        Ok(self.dropout.forward(fused))
    }
}

/// The modalities are projected to `dim` and summed.
impl RegisteredFusion for AttentionSum {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        AttentionSumConfig::new(dims).with_dim(dim).init(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::testing::part;
    use polymodal_core::Modality;

    #[test]
    fn an_absent_modality_gets_no_weight() {
        let device = Device::flex();
        let inputs = [
            part(Modality::Image, 4, 1, &[true, false], &device),
            part(Modality::Audio, 6, 1, &[true, true], &device),
        ];
        let fusion = AttentionSumConfig::new(vec![4, 6]).init(&device).unwrap();
        let weights = fusion
            .weights(&inputs)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!((weights[0] + weights[1] - 1.0).abs() < 1e-5);
        assert_eq!(weights[2], 0.0);
        assert!((weights[3] - 1.0).abs() < 1e-6);
    }
}
