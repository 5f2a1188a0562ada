//! Feature-level (early) fusion by tensor fusion (TFN, Zadeh et al. 2017):
//! the outer product of the modalities' features, each with a 1 appended.

use burn::nn::{Dropout, Linear, LinearConfig, Relu};
use burn::prelude::*;

use polymodal_core::{Error, Fusion, ModalityEmbeddings, Result};

use crate::inputs::{check_config, check_pooled, check_positive, masked_pooled};
use crate::registry::RegisteredFusion;

/// Largest outer product accepted (its width feeds one linear layer).
const MAX_PRODUCT: usize = 1 << 20;

/// Settings of [`TensorFusion`].
#[derive(Config, Debug)]
pub struct TensorFusionConfig {
    /// Width of each input modality's pooled embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Each modality is first projected to this width; the outer product has
    /// `(factor_dim + 1)^modalities` entries.
    #[config(default = 16)]
    pub factor_dim: usize,
    /// Width of the fused representation.
    #[config(default = 128)]
    pub hidden: usize,
    /// Dropout on the fused representation.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl TensorFusionConfig {
    /// Width of the outer product.
    pub fn product_dim(&self) -> usize {
        (0..self.input_dims.len()).fold(1usize, |n, _| n.saturating_mul(self.factor_dim + 1))
    }

    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<TensorFusion> {
        check_config("TensorFusion", &self.input_dims, 1)?;
        check_positive("TensorFusion", "factor_dim", self.factor_dim)?;
        check_positive("TensorFusion", "hidden", self.hidden)?;
        if self.product_dim() > MAX_PRODUCT {
            return Err(Error::Config(format!(
                "TensorFusion: (factor_dim + 1)^modalities = {} is over {MAX_PRODUCT}; lower factor_dim",
                self.product_dim()
            )));
        }
        Ok(TensorFusion {
            factors: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.factor_dim).init(device))
                .collect(),
            project: LinearConfig::new(self.product_dim(), self.hidden).init(device),
            activation: Relu::new(),
            dropout: crate::dropout(self.dropout)?,
            input_dims: self.input_dims.clone(),
            hidden: self.hidden,
        })
    }
}

/// `z_m = [relu(W_m x_m); 1]`, `Z = z_1 ⊗ … ⊗ z_M` flattened, output
/// `relu(W Z)`. The appended 1s keep every unimodal and lower-order term in
/// the product, so an absent modality (`z_m = [0; 1]`) leaves the others'
/// terms intact.
#[derive(Module, Debug)]
pub struct TensorFusion {
    factors: Vec<Linear>,
    project: Linear,
    activation: Relu,
    dropout: Dropout,
    input_dims: Vec<usize>,
    hidden: usize,
}

impl Fusion for TensorFusion {
    fn output_dim(&self) -> usize {
        self.hidden
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        check_pooled("TensorFusion", inputs, &self.input_dims)?;
        let mut product: Option<Tensor<2>> = None;
        for (input, factor) in inputs.iter().zip(&self.factors) {
            let x = masked_pooled(input);
            let batch = x.dims()[0];
            let z = self.activation.forward(factor.forward(x));
            let z = Tensor::cat(
                vec![z, Tensor::ones([batch, 1], &input.present.device())],
                1,
            );
            product = Some(match product {
                None => z,
                Some(p) => {
                    let (a, b) = (p.dims()[1], z.dims()[1]);
                    (p.unsqueeze_dim::<3>(2) * z.unsqueeze_dim::<3>(1)).reshape([batch, a * b])
                }
            });
        }
        let product = product.expect("checked: one or more");
        let fused = self.activation.forward(self.project.forward(product));
        Ok(self.dropout.forward(fused))
    }
}

/// The outer product is projected to `2 × dim`.
impl RegisteredFusion for TensorFusion {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        TensorFusionConfig::new(dims)
            .with_hidden(2 * dim)
            .init(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_products_are_refused() {
        let config = TensorFusionConfig::new(vec![8; 6]).with_factor_dim(32);
        assert_eq!(config.product_dim(), 33usize.pow(6));
        assert!(config.init(&Device::flex()).is_err());
    }
}
