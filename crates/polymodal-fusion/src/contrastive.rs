//! Joint learning by contrastive alignment (CLIP, Radford et al. 2021):
//! each modality is projected into one space where matching pairs are close.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use polymodal_core::{Error, Fusion, ModalityEmbeddings, Result, l2_normalize};

use crate::inputs::{check_config, check_pooled, check_positive, masked_pooled, presence};
use crate::registry::RegisteredFusion;

/// Settings of [`ContrastiveAlignment`].
#[derive(Config, Debug)]
pub struct ContrastiveAlignmentConfig {
    /// Width of each input modality's pooled embedding, in input order.
    pub input_dims: Vec<usize>,
    /// Width of the shared embedding space.
    #[config(default = 64)]
    pub dim: usize,
    /// Initial temperature τ (CLIP: 0.07); the logit scale `1/τ` is learned.
    #[config(default = 0.07)]
    pub temperature: f64,
    /// Largest logit scale (CLIP clamps at 100 for stability).
    #[config(default = 100.0)]
    pub max_scale: f64,
}

impl ContrastiveAlignmentConfig {
    /// Builds the module on `device`.
    pub fn init(&self, device: &Device) -> Result<ContrastiveAlignment> {
        check_config("ContrastiveAlignment", &self.input_dims, 2)?;
        check_positive("ContrastiveAlignment", "dim", self.dim)?;
        if !(self.temperature > 0.0 && self.max_scale >= 1.0 / self.temperature) {
            return Err(Error::Config(format!(
                "ContrastiveAlignment: need temperature > 0 and max_scale >= 1/temperature, got {} and {}",
                self.temperature, self.max_scale
            )));
        }
        Ok(ContrastiveAlignment {
            projections: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.dim).init(device))
                .collect(),
            log_scale: Param::from_tensor(Tensor::from_data(
                [(1.0 / self.temperature).ln() as f32],
                device,
            )),
            max_log_scale: self.max_scale.ln(),
            input_dims: self.input_dims.clone(),
            dim: self.dim,
        })
    }
}

/// Linear projections of each modality's pooled embedding into a shared,
/// L2-normalised space, and a learned logit scale (inverse temperature).
///
/// - [`ContrastiveAlignment::loss`]: the symmetric InfoNCE loss over every
///   pair of modalities, the pairs of a batch being the positives;
/// - [`ContrastiveAlignment::similarity`]: scaled cosine similarities for
///   retrieval;
/// - as a [`Fusion`], the concatenated normalised embeddings (zeros where a
///   modality is absent), so a classifier head can be trained on the aligned
///   space with the InfoNCE loss added.
#[derive(Module, Debug)]
pub struct ContrastiveAlignment {
    projections: Vec<Linear>,
    log_scale: Param<Tensor<1>>,
    max_log_scale: f64,
    input_dims: Vec<usize>,
    dim: usize,
}

impl ContrastiveAlignment {
    /// The normalised embeddings `[batch, dim]` of each modality.
    pub fn embed(&self, inputs: &[ModalityEmbeddings]) -> Result<Vec<Tensor<2>>> {
        check_pooled("ContrastiveAlignment", inputs, &self.input_dims)?;
        Ok(inputs
            .iter()
            .zip(&self.projections)
            .map(|(input, projection)| l2_normalize(projection.forward(masked_pooled(input))))
            .collect())
    }

    /// The current logit scale `1/τ`, clamped to `max_scale`.
    pub fn scale(&self) -> Tensor<1> {
        self.log_scale.val().clamp_max(self.max_log_scale).exp()
    }

    /// Scaled cosine similarities `[queries, gallery]` of normalised embeddings.
    pub fn similarity(&self, queries: Tensor<2>, gallery: Tensor<2>) -> Tensor<2> {
        queries.matmul(gallery.transpose()) * self.scale().unsqueeze::<2>()
    }

    /// Mean symmetric InfoNCE loss over every pair of modalities. Samples
    /// missing either modality of a pair take no part in that pair's loss.
    pub fn loss(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<1>> {
        let embeddings = self.embed(inputs)?;
        let mut total: Option<Tensor<1>> = None;
        for a in 0..inputs.len() {
            for b in a + 1..inputs.len() {
                let both = inputs[a]
                    .present
                    .clone()
                    .bool_and(inputs[b].present.clone());
                let logits = self.similarity(embeddings[a].clone(), embeddings[b].clone());
                let loss = info_nce(logits, both);
                total = Some(total.map_or(loss.clone(), |t| t + loss));
            }
        }
        let pairs = inputs.len() * (inputs.len() - 1) / 2;
        Ok(total.expect("checked: two or more") / pairs as f32)
    }
}

impl Fusion for ContrastiveAlignment {
    fn output_dim(&self) -> usize {
        self.dim * self.input_dims.len()
    }

    fn fuse(&self, inputs: &[ModalityEmbeddings]) -> Result<Tensor<2>> {
        let embeddings = self.embed(inputs)?;
        let parts = embeddings
            .into_iter()
            .zip(inputs)
            .map(|(e, input)| e * presence(input))
            .collect();
        Ok(Tensor::cat(parts, 1))
    }

    /// The symmetric InfoNCE loss ([`ContrastiveAlignment::loss`]).
    fn auxiliary_loss(&self, inputs: &[ModalityEmbeddings]) -> Result<Option<Tensor<1>>> {
        self.loss(inputs).map(Some)
    }
}

/// The shared space is `dim` wide (the output is `dim` per modality).
impl RegisteredFusion for ContrastiveAlignment {
    fn build(dims: Vec<usize>, dim: usize, device: &Device) -> Result<Self> {
        ContrastiveAlignmentConfig::new(dims)
            .with_dim(dim)
            .init(device)
    }
}

/// Symmetric InfoNCE (the CLIP loss) on `logits` `[n, n]` whose diagonal holds
/// the matching pairs: the mean of the cross-entropy of each row over its
/// columns and of each column over its rows. Only samples with `valid[i]`
/// (`[n]`) take part, as queries and as candidates; with fewer than two valid
/// samples the loss is zero (there is nothing to contrast).
pub fn info_nce(logits: Tensor<2>, valid: Tensor<1, Bool>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let device = logits.device();
    let valid = valid.float();
    // Invalid candidates get a very low score; invalid queries get no weight.
    let candidates = valid.clone().neg().add_scalar(1.0).mul_scalar(-1e4);
    let eye = Tensor::<2>::eye(n, &device);
    let directional = |logits: Tensor<2>| {
        let log_p = log_softmax(logits + candidates.clone().unsqueeze::<2>(), 1);
        (log_p * eye.clone()).sum_dim(1).squeeze_dim::<1>(1).neg()
    };
    let per_sample = (directional(logits.clone()) + directional(logits.transpose())) / 2.0;
    let count = valid.clone().sum();
    let enough = count.clone().greater_equal_elem(2.0).float();
    (per_sample * valid).sum() / count.clamp_min(1.0) * enough
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::testing::part;
    use polymodal_core::Modality;

    #[test]
    fn info_nce_is_low_for_matching_pairs_and_ignores_invalid_samples() {
        let device = Device::flex();
        let valid = Tensor::<1, Bool>::from_data([true, true, true], &device);
        let aligned = Tensor::<2>::eye(3, &device) * 20.0;
        let shuffled = Tensor::<2>::from_data(
            [[0.0, 20.0, 0.0], [0.0, 0.0, 20.0], [20.0, 0.0, 0.0]],
            &device,
        );
        let low = info_nce(aligned.clone(), valid.clone()).into_scalar::<f32>();
        let high = info_nce(shuffled, valid).into_scalar::<f32>();
        assert!(low < 1e-4 && high > 10.0, "{low} {high}");
        // log(3) for uniform logits, computed by hand.
        let uniform = info_nce(
            Tensor::zeros([3, 3], &device),
            Tensor::from_data([true; 3], &device),
        );
        assert!((uniform.into_scalar::<f32>() - 3f32.ln()).abs() < 1e-5);
        // Sample 2 invalid: its row and column are out, so two aligned pairs remain.
        let mut corrupted = aligned.clone();
        corrupted = corrupted.slice_assign([0..2, 2..3], Tensor::full([2, 1], 50.0, &device));
        let valid = Tensor::<1, Bool>::from_data([true, true, false], &device);
        assert!(info_nce(corrupted, valid).into_scalar::<f32>() < 1e-4);
        let one = Tensor::<1, Bool>::from_data([true, false, false], &device);
        assert_eq!(info_nce(aligned, one).into_scalar::<f32>(), 0.0);
    }

    #[test]
    fn training_aligns_pairs_for_retrieval() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let n = 16;
        let present = vec![true; n];
        let a = part(Modality::Image, 8, 1, &present, &device);
        // The second modality is a fixed random linear map of the first plus noise.
        let map = Tensor::<2>::random(
            [8, 6],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut b = part(Modality::Audio, 6, 1, &present, &device);
        b.embeddings.pooled =
            a.embeddings.pooled.clone().matmul(map) + b.embeddings.pooled.clone() * 0.05;
        let mut model = ContrastiveAlignmentConfig::new(vec![8, 6])
            .with_dim(8)
            .init(&device)
            .unwrap();
        let mut optimizer = burn::optim::AdamConfig::new().init();
        let inputs = [a, b];
        let first = model.loss(&inputs).unwrap().into_scalar::<f32>();
        for _ in 0..150 {
            let loss = model.loss(&inputs).unwrap();
            let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(0.01, model, grads);
        }
        let last = model.loss(&inputs).unwrap().into_scalar::<f32>();
        assert!(last < first / 4.0, "{first} -> {last}");
        let e = model.embed(&inputs).unwrap();
        let retrieved = model
            .similarity(e[0].clone(), e[1].clone())
            .argmax(1)
            .try_into_vec_as::<i64>()
            .unwrap();
        let hits = retrieved
            .iter()
            .enumerate()
            .filter(|&(i, &j)| i as i64 == j)
            .count();
        assert!(hits >= 14, "{hits}/16 pairs retrieved");
    }
}
