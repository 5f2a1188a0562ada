//! Embedding noise: during training, Gaussian noise on embeddings computed
//! ahead by frozen encoders. Such embeddings are computed once per file
//! and cached, so the media cannot be augmented per epoch; noise in the
//! embedding space stands in for that variation and keeps the fusion layer
//! from trusting the fine detail of one modality's vectors, which may not
//! hold on new data (an unheard voice, say: docs/fusion.md).

use burn::prelude::*;
use burn::tensor::Distribution;

use polymodal_core::{Error, ModalityEmbeddings, Result, masked_mean};

/// Shifts each sample's embeddings by Gaussian noise of standard deviation
/// `std` × the root mean square of its vector, so the strength does not
/// depend on the encoder's scale: the pooled vector by one draw, and every
/// real token of the sample by one shared draw (the same one when the widths
/// match), scaled by the RMS of the tokens' mean; padded tokens and vectors
/// of zeros stay as they are. Sharing the draw over the tokens is what makes
/// the noise reach the layers that pool or attend over tokens: independent
/// noise per token would average out over a clip's `L` tokens (by `√L`),
/// whereas a shared shift moves the tokens' mean exactly as it moves the
/// pooled vector, so every fusion method sees the same strength. Acts only
/// on an autodiff device (training), like Burn's `Dropout`; at inference the
/// embeddings pass unchanged.
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
        let [batch, width] = e.pooled.dims();
        let [_, length, token_width] = e.sequence.dims();
        let draw = |width| {
            Tensor::<2>::random(
                [batch, width],
                Distribution::Normal(0.0, self.std),
                &e.pooled.device(),
            )
        };
        let pooled_draw = draw(width);
        let token_draw = if token_width == width {
            pooled_draw.clone()
        } else {
            draw(token_width)
        };
        e.pooled = e.pooled.clone() + pooled_draw * rms(e.pooled.clone());
        let real = e.mask.clone().float().unsqueeze_dim::<3>(2); // [batch, length, 1]
        let mean = masked_mean(e.sequence.clone(), e.mask.clone());
        let shift = (token_draw * rms(mean)).unsqueeze_dim::<3>(1); // [batch, 1, width]
        e.sequence = e.sequence.clone() + shift.expand([batch, length, token_width]) * real;
    }
}

/// The root mean square of each row, `[batch, 1]`; a constant to the
/// gradient.
fn rms(x: Tensor<2>) -> Tensor<2> {
    x.detach().powf_scalar(2.0).mean_dim(1).sqrt()
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

    /// Every real token of a sample moves by one shared vector, padded
    /// tokens stay, and the mean of the noisy tokens is the noisy pooled
    /// vector when the pooled vector was their mean (the noise reaches a
    /// layer that pools tokens as strongly as one that reads the pooled
    /// vector).
    #[test]
    fn real_tokens_share_the_pooled_vectors_shift() {
        let device = Device::flex();
        device.seed(7);
        let (batch, length, dim) = (3, 5, 16);
        let sequence = Tensor::<3>::random(
            [batch, length, dim],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        // Sample 0 has 5 real tokens, sample 1 has 2, sample 2 has 1.
        let real = [5usize, 2, 1];
        let flags: Vec<bool> = real
            .iter()
            .flat_map(|&n| (0..length).map(move |i| i < n))
            .collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(flags, [batch, length]), &device);
        let mut input = part(Modality::Audio, dim, length, &[true; 3], &device);
        input.embeddings = polymodal_core::Embeddings::from_sequence(sequence, mask);
        let before = values(input.embeddings.sequence.clone());
        EmbeddingNoise::new(0.5).unwrap().apply_always(&mut input);
        let after = values(input.embeddings.sequence.clone());
        for (b, &n) in real.iter().enumerate() {
            let shift = |t: usize| -> Vec<f32> {
                let at = (b * length + t) * dim;
                (at..at + dim).map(|i| after[i] - before[i]).collect()
            };
            let first = shift(0);
            assert!(first.iter().any(|v| v.abs() > 1e-3), "sample {b}: no shift");
            for t in 1..length {
                let s = shift(t);
                if t < n {
                    let gap = s.iter().zip(&first).map(|(a, b)| (a - b).abs());
                    assert!(gap.fold(0.0, f32::max) < 1e-5, "sample {b} token {t}");
                } else {
                    assert!(
                        s.iter().all(|&v| v == 0.0),
                        "padded token {t} of sample {b} moved"
                    );
                }
            }
        }
        let mean = masked_mean(
            input.embeddings.sequence.clone(),
            input.embeddings.mask.clone(),
        );
        let gap = (mean - input.embeddings.pooled.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(
            gap < 1e-5,
            "the tokens' mean is {gap} off the pooled vector"
        );
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
