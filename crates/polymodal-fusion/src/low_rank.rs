//! Feature-level (early) fusion by low-rank multimodal fusion (LMF, Liu et
//! al. 2018): the tensor-fusion product with a rank-`r` factorised weight.

use burn::module::Param;
use burn::nn::{Dropout, Linear, LinearConfig};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, Result};

use crate::inputs::{check_config, check_pooled, check_positive, masked_pooled};
use crate::registry::RegisteredFusion;

/// Settings of [`LowRankFusion`].
#[derive(Config, Debug)]
pub struct LowRankFusionConfig {
    /// Width of each input modality's pooled embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Rank of the factorisation.
    #[config(default = 4)]
    pub rank: usize,
    /// Width of the fused representation.
    #[config(default = 128)]
    pub hidden: usize,
    /// Dropout on the fused representation.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl LowRankFusionConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<LowRankFusion> {
        check_config("LowRankFusion", &self.input_dims, 1)?;
        check_positive("LowRankFusion", "rank", self.rank)?;
        check_positive("LowRankFusion", "hidden", self.hidden)?;
        Ok(LowRankFusion {
            factors: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.rank * self.hidden).init(device))
                .collect(),
            rank_weights: Param::from_tensor(Tensor::full(
                [self.rank],
                1.0 / self.rank as f32,
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([self.hidden], device)),
            dropout: crate::dropout(self.dropout)?,
            input_dims: self.input_dims.clone(),
            rank: self.rank,
            hidden: self.hidden,
        })
    }
}

/// `h = Σ_i w_i Π_m (W_m^(i) [x_m; 1]) + b`: the same function class as
/// [`TensorFusion`](crate::TensorFusion)'s linear layer on the outer product,
/// with parameters linear instead of exponential in the number of modalities.
/// A linear layer with bias is `W [x; 1]`; an absent modality (`x_m = 0`)
/// contributes only its bias factor.
#[derive(Module, Debug)]
pub struct LowRankFusion {
    factors: Vec<Linear>,
    rank_weights: Param<Tensor<1>>,
    bias: Param<Tensor<1>>,
    dropout: Dropout,
    input_dims: Vec<usize>,
    rank: usize,
    hidden: usize,
}

impl Fusion for LowRankFusion {
    fn output_dim(&self) -> usize {
        self.hidden
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        check_pooled("LowRankFusion", inputs, &self.input_dims)?;
        let mut product: Option<Tensor<3>> = None;
        for (input, factor) in inputs.iter().zip(&self.factors) {
            let x = masked_pooled(input);
            let batch = x.dims()[0];
            let f = factor.forward(x).reshape([batch, self.rank, self.hidden]);
            product = Some(product.map_or(f.clone(), |p| p * f));
        }
        let product = product.expect("checked: one or more");
        let weights = self.rank_weights.val().reshape([1, self.rank, 1]);
        let fused =
            (product * weights).sum_dim(1).squeeze_dim::<2>(1) + self.bias.val().unsqueeze::<2>();
        Ok(self.dropout.forward(fused))
    }
}

/// The fused representation is `2 × dim` wide.
impl RegisteredFusion for LowRankFusion {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        LowRankFusionConfig::new(dims)
            .with_hidden(2 * dim)
            .init(device)
    }
}
