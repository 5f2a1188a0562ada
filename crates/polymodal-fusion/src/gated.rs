//! Feature-level (early) fusion with a gated multimodal unit (GMU,
//! Arevalo et al. 2017), generalised to any number of modalities.

use burn::nn::{Dropout, Linear, LinearConfig};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, Result};

use crate::inputs::{
    check_config, check_pooled, check_positive, masked_pooled, masked_softmax, presence,
};
use crate::registry::RegisteredFusion;

/// Settings of [`GatedFusion`].
#[derive(Config, Debug)]
pub struct GatedFusionConfig {
    /// Width of each input modality's pooled embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Width of the fused representation.
    #[config(default = 128)]
    pub hidden: usize,
    /// Dropout on the fused representation.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl GatedFusionConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<GatedFusion> {
        check_config("GatedFusion", &self.input_dims, 1)?;
        check_positive("GatedFusion", "hidden", self.hidden)?;
        let total: usize = self.input_dims.iter().sum();
        Ok(GatedFusion {
            transforms: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.hidden).init(device))
                .collect(),
            gate: LinearConfig::new(total, self.hidden * self.input_dims.len()).init(device),
            dropout: crate::dropout(self.dropout)?,
            input_dims: self.input_dims.clone(),
            hidden: self.hidden,
        })
    }
}

/// Each modality gives a candidate `h_m = tanh(W_m x_m)`; gates computed from
/// all modalities together pick, per hidden unit, how much of each candidate
/// to keep: `h = Σ_m z_m ⊙ h_m` with `z = softmax_m(W_z [x_1; …; x_M])`.
/// With two modalities this is the GMU's `z h_1 + (1 − z) h_2`. Absent
/// modalities get zero gate, so the present ones share the whole weight.
#[derive(Module, Debug)]
pub struct GatedFusion {
    transforms: Vec<Linear>,
    gate: Linear,
    dropout: Dropout,
    input_dims: Vec<usize>,
    hidden: usize,
}

impl GatedFusion {
    /// The gates `[batch, modalities, hidden]` (they sum to one over the present modalities).
    pub fn gates(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<3>> {
        let (scores, present) = self.scores(inputs)?;
        Ok(masked_softmax(scores, present))
    }

    /// The gate logits `[batch, modalities, hidden]` and the presence
    /// `[batch, modalities]` (1 or 0).
    fn scores(&self, inputs: &[ModalityEmbeddings]) -> Result<(Tensor<3>, Tensor<2>)> {
        check_pooled("GatedFusion", inputs, &self.input_dims)?;
        let joined = Tensor::cat(inputs.iter().map(masked_pooled).collect(), 1);
        let batch = joined.dims()[0];
        let scores = self
            .gate
            .forward(joined)
            .reshape([batch, inputs.len(), self.hidden]);
        let present = Tensor::cat(inputs.iter().map(presence).collect(), 1);
        Ok((scores, present))
    }
}

/// `Σ_m softmax_m(scores)·tanh(candidates)` over the present modalities:
/// with the `wgpu` feature one fused kernel (forward and backward) on wgpu
/// devices, else Burn's ops.
fn combine(scores: Tensor<3>, candidates: Tensor<3>, present: Tensor<2>) -> Result<Tensor<2>> {
    #[cfg(feature = "wgpu")]
    return crate::kernel::gated_unit_best(scores, candidates, present);
    #[cfg(not(feature = "wgpu"))]
    Ok((masked_softmax(scores, present) * candidates.tanh())
        .sum_dim(1)
        .squeeze_dim::<2>(1))
}

impl Fusion for GatedFusion {
    fn output_dim(&self) -> usize {
        self.hidden
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        let (scores, present) = self.scores(inputs)?;
        // Candidates before their tanh, which `combine` applies.
        let candidates = inputs
            .iter()
            .zip(&self.transforms)
            .map(|(input, transform)| transform.forward(masked_pooled(input)))
            .collect();
        let candidates = Tensor::stack::<3>(candidates, 1);
        let fused = combine(scores, candidates, present)?;
        Ok(self.dropout.forward(fused))
    }
}

/// The gated units are `2 × dim` wide.
impl RegisteredFusion for GatedFusion {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        GatedFusionConfig::new(dims)
            .with_hidden(2 * dim)
            .init(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::testing::part;
    use polymodal_core::Modality;

    #[test]
    fn gates_sum_to_one_over_present_modalities() {
        let device = Device::flex();
        let inputs = [
            part(Modality::Image, 4, 2, &[true, true], &device),
            part(Modality::Audio, 6, 2, &[true, false], &device),
        ];
        let fusion = GatedFusionConfig::new(vec![4, 6])
            .with_hidden(3)
            .init(&device)
            .unwrap();
        let gates = fusion.gates(&inputs).unwrap();
        let sums = gates.clone().sum_dim(1).try_into_vec_as::<f32>().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        let absent = gates
            .slice([1..2, 1..2, 0..3])
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(absent, vec![0.0; 3]);
    }
}
