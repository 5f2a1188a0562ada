//! Feature-level (early) fusion by FiLM conditioning (Perez et al. 2018):
//! one modality's features are scaled and shifted by the others.

use burn::nn::{Dropout, Linear, LinearConfig, Relu};
use burn::prelude::*;

use polymodal_core::{Fusion, ModalityEmbeddings, Result};

use crate::inputs::{check_config, check_pooled, check_positive, masked_pooled, presence};
use crate::registry::RegisteredFusion;

/// Settings of [`FilmFusion`]. The first input is the modulated modality,
/// the others condition it.
#[derive(Config, Debug)]
pub struct FilmFusionConfig {
    /// Width of each input modality's pooled embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Width of the fused representation.
    #[config(default = 128)]
    pub hidden: usize,
    /// Dropout on the fused representation.
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl FilmFusionConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<FilmFusion> {
        check_config("FilmFusion", &self.input_dims, 2)?;
        check_positive("FilmFusion", "hidden", self.hidden)?;
        let conditioning: usize = self.input_dims[1..].iter().sum();
        Ok(FilmFusion {
            features: LinearConfig::new(self.input_dims[0], self.hidden).init(device),
            film: LinearConfig::new(conditioning, 2 * self.hidden).init(device),
            project: LinearConfig::new(self.hidden, self.hidden).init(device),
            activation: Relu::new(),
            dropout: crate::dropout(self.dropout)?,
            input_dims: self.input_dims.clone(),
            hidden: self.hidden,
        })
    }
}

/// `h = relu(W x_1)`, `[γ; β] = W_c [x_2; …; x_M]`, output
/// `relu(W_o ((1 + γ) ⊙ h + β))`. The `1 +` makes a zero γ the identity, so a
/// sample without any conditioning modality passes its features unchanged; a
/// sample without the modulated modality keeps the conditioning shift β.
#[derive(Module, Debug)]
pub struct FilmFusion {
    features: Linear,
    film: Linear,
    project: Linear,
    activation: Relu,
    dropout: Dropout,
    input_dims: Vec<usize>,
    hidden: usize,
}

impl Fusion for FilmFusion {
    fn output_dim(&self) -> usize {
        self.hidden
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        check_pooled("FilmFusion", inputs, &self.input_dims)?;
        let (target, conditions) = inputs.split_first().expect("checked: two or more");
        let h = self
            .activation
            .forward(self.features.forward(masked_pooled(target)))
            * presence(target);
        let conditioning = Tensor::cat(conditions.iter().map(masked_pooled).collect(), 1);
        // 1 where at least one conditioning modality is present.
        let conditioned = Tensor::cat(conditions.iter().map(presence).collect(), 1).max_dim(1);
        let film = self.film.forward(conditioning) * conditioned;
        let gamma = film.clone().narrow(1, 0, self.hidden);
        let beta = film.narrow(1, self.hidden, self.hidden);
        let modulated = h.clone() + gamma * h + beta;
        let fused = self.activation.forward(self.project.forward(modulated));
        Ok(self.dropout.forward(fused))
    }
}

/// The modulated features are `2 × dim` wide.
impl RegisteredFusion for FilmFusion {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        FilmFusionConfig::new(dims)
            .with_hidden(2 * dim)
            .init(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_a_conditioning_modality() {
        assert!(
            FilmFusionConfig::new(vec![8])
                .init(&Device::flex())
                .is_err()
        );
    }
}
