//! Feature-level (early) fusion by concatenation.

use burn::nn::{Dropout, Linear, LinearConfig, Relu};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, Result};

use crate::inputs::{check_config, check_pooled, check_positive, masked_pooled};
use crate::registry::RegisteredFusion;

/// Settings of [`ConcatFusion`].
#[derive(Config, Debug)]
pub struct ConcatFusionConfig {
    /// Width of each input modality's pooled embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Width of the fused representation.
    #[config(default = 128)]
    pub hidden: usize,
    /// Dropout on the fused representation.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl ConcatFusionConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<ConcatFusion> {
        check_config("ConcatFusion", &self.input_dims, 1)?;
        check_positive("ConcatFusion", "hidden", self.hidden)?;
        let total: usize = self.input_dims.iter().sum();
        Ok(ConcatFusion {
            project: LinearConfig::new(total, self.hidden).init(device),
            activation: Relu::new(),
            dropout: crate::dropout(self.dropout)?,
            input_dims: self.input_dims.clone(),
            hidden: self.hidden,
        })
    }
}

/// Concatenates the pooled embeddings (zeros for absent modalities), then a
/// linear layer with ReLU: an MLP over the joined features.
#[derive(Module, Debug)]
pub struct ConcatFusion {
    project: Linear,
    activation: Relu,
    dropout: Dropout,
    input_dims: Vec<usize>,
    hidden: usize,
}

impl Fusion for ConcatFusion {
    fn output_dim(&self) -> usize {
        self.hidden
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        check_pooled("ConcatFusion", inputs, &self.input_dims)?;
        let parts = inputs.iter().map(masked_pooled).collect();
        let fused = self.project.forward(Tensor::cat(parts, 1));
        Ok(self.dropout.forward(self.activation.forward(fused)))
    }
}

/// The concatenation is projected to `2 × dim`.
impl RegisteredFusion for ConcatFusion {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        ConcatFusionConfig::new(dims)
            .with_hidden(2 * dim)
            .init(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_errors() {
        let device = Device::flex();
        assert!(ConcatFusionConfig::new(vec![]).init(&device).is_err());
        assert!(ConcatFusionConfig::new(vec![4, 0]).init(&device).is_err());
        assert!(
            ConcatFusionConfig::new(vec![4])
                .with_dropout(1.5)
                .init(&device)
                .is_err()
        );
    }
}
