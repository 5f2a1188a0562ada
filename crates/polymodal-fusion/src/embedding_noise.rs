//! Embedding noise: during training, Gaussian noise on embeddings computed
//! ahead by frozen encoders. Such embeddings are computed once per file
//! and cached, so the media cannot be augmented per epoch; noise in the
//! embedding space stands in for that variation and keeps the fusion layer
//! from trusting the fine detail of one modality's vectors, which may not
//! hold on new data (an unheard voice, say: docs/fusion.md).

use burn::prelude::*;

use polymodal_core::{Error, ModalityEmbeddings, Result};

/// Adds to each vector (the pooled one and every token) independent
/// Gaussian noise of standard deviation `std` × the vector's root mean
/// square, so the strength does not depend on the encoder's scale; a
/// vector of zeros (a padded token) stays zero. Acts only on an autodiff
/// device (training), like Burn's `Dropout`; at inference the embeddings
/// pass unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbeddingNoise {
    std: f64,
}

impl EmbeddingNoise {
    /// Noise of relative standard deviation `std` (finite, non-negative).
    pub fn new(std: f64) -> Result<Self> {
        if !(std >= 0.0 && std.is_finite()) {
            return Err(Error::Config(format!(
                "embedding noise must be finite and non-negative, got {std}"
            )));
        }
        Ok(Self { std })
    }

    /// The relative standard deviation.
    pub fn std(&self) -> f64 {
        self.std
    }

    /// Adds the noise to `input` (in training only).
    pub fn apply(&self, input: &mut ModalityEmbeddings) {
        if self.std > 0.0 && input.present.device().is_autodiff() {
            self.apply_always(input);
        }
    }

    /// Adds the noise to `input`, on any device.
    pub fn apply_always(&self, input: &mut ModalityEmbeddings) {
        let e = &mut input.embeddings;
        e.pooled = noisy(e.pooled.clone(), self.std);
        e.sequence = noisy(e.sequence.clone(), self.std);
    }
}

/// `x` plus noise scaled by the root mean square of each vector (the last
/// axis); the scale is a constant to the gradient.
fn noisy<const D: usize>(x: Tensor<D>, std: f64) -> Tensor<D> {
    let rms = x.clone().detach().powf_scalar(2.0).mean_dim(D - 1).sqrt();
    let noise = Tensor::<D>::random(
        x.dims(),
        burn::tensor::Distribution::Normal(0.0, std),
        &x.device(),
    );
    x + noise * rms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::testing::part;
    use polymodal_core::Modality;

    fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Rows of constant value (root mean square = that value), one of them
    /// zero: the added noise has mean 0 and standard deviation `std` × the
    /// row's value, and the zero row stays zero.
    #[test]
    fn noise_scales_with_each_vector_and_spares_zero_vectors() {
        let device = Device::flex();
        device.seed(5);
        let dim = 4000;
        let scales = [2.0f32, 0.5, 0.0];
        let rows: Vec<f32> = scales.iter().flat_map(|&s| vec![s; dim]).collect();
        let pooled = Tensor::<2>::from_data(TensorData::new(rows, [3, dim]), &device);
        let mut input = part(Modality::Audio, dim, 2, &[true; 3], &device);
        input.embeddings.pooled = pooled;
        let sequence_before = values(input.embeddings.sequence.clone());
        EmbeddingNoise::new(0.3).unwrap().apply_always(&mut input);
        let noisy = values(input.embeddings.pooled.clone());
        for (row, &scale) in scales.iter().enumerate() {
            let diff: Vec<f64> = noisy[row * dim..(row + 1) * dim]
                .iter()
                .map(|&v| f64::from(v - scale))
                .collect();
            let mean = diff.iter().sum::<f64>() / dim as f64;
            let sd = (diff.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / dim as f64).sqrt();
            let want = 0.3 * f64::from(scale);
            assert!(mean.abs() < 0.1 * want + 1e-9, "row {row}: mean {mean}");
            assert!(
                (sd - want).abs() < 0.1 * want + 1e-9,
                "row {row}: sd {sd} vs {want}"
            );
        }
        let sequence = values(input.embeddings.sequence);
        let moved = sequence
            .iter()
            .zip(&sequence_before)
            .filter(|(a, b)| a != b);
        assert!(moved.count() > 0, "the tokens got no noise");
    }

    #[test]
    fn inference_is_unchanged_and_bad_settings_are_errors() {
        let device = Device::flex();
        let mut input = part(Modality::Image, 3, 2, &[true; 4], &device);
        let before = values(input.embeddings.pooled.clone());
        EmbeddingNoise::new(1.0).unwrap().apply(&mut input);
        assert_eq!(values(input.embeddings.pooled), before);
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            assert!(EmbeddingNoise::new(bad).is_err(), "{bad}");
        }
    }
}
