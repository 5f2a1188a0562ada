//! Feature-level (early) fusion by concatenation.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings};

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
    pub fn init(&self, device: &Device) -> ConcatFusion {
        let total: usize = self.input_dims.iter().sum();
        ConcatFusion {
            project: LinearConfig::new(total, self.hidden).init(device),
            activation: Relu::new(),
            dropout: DropoutConfig::new(self.dropout).init(),
            input_dims: self.input_dims.clone(),
            hidden: self.hidden,
        }
    }
}

/// Concatenates the pooled embeddings (zeros for absent modalities), then a
/// linear layer with ReLU.
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

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Tensor<2> {
        let dims: Vec<usize> = inputs
            .iter()
            .map(|m| m.embeddings.pooled.dims()[1])
            .collect();
        assert_eq!(
            dims, self.input_dims,
            "ConcatFusion built for other input widths"
        );
        let parts = inputs
            .iter()
            .map(|m| m.embeddings.pooled.clone() * m.present.clone().float().unsqueeze_dim::<2>(1))
            .collect();
        let fused = self.project.forward(Tensor::cat(parts, 1));
        self.dropout.forward(self.activation.forward(fused))
    }
}
