//! Modality dropout: during training, whole modalities are hidden from some
//! samples, so the model learns to predict from any subset and degrades
//! gracefully when a modality is missing at inference.

use burn::prelude::*;

use polymodal_core::{Error, ModalityEmbeddings, Result};

/// Hides each present modality of each sample with probability `prob`, but
/// never all of a sample's modalities: a sample that would lose every one
/// keeps its original set. Acts only on an autodiff device (training), like
/// Burn's `Dropout`; at inference the embeddings pass unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModalityDropout {
    prob: f64,
}

impl ModalityDropout {
    /// Modality dropout with probability `prob` in `[0, 1)`.
    pub fn new(prob: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&prob) {
            return Err(Error::Config(format!(
                "modality dropout must be in [0, 1), got {prob}"
            )));
        }
        Ok(Self { prob })
    }

    /// The probability.
    pub fn prob(&self) -> f64 {
        self.prob
    }

    /// Clears `present` of the hidden modalities (in training only).
    pub fn apply(&self, inputs: &mut [ModalityEmbeddings]) {
        let Some(first) = inputs.first() else {
            return;
        };
        let device = first.present.device();
        if self.prob == 0.0 || !device.is_autodiff() {
            return;
        }
        self.apply_always(inputs);
    }

    /// Clears `present` of the hidden modalities, on any device.
    pub fn apply_always(&self, inputs: &mut [ModalityEmbeddings]) {
        let Some(first) = inputs.first() else {
            return;
        };
        let batch = first.present.dims()[0];
        let device = first.present.device();
        let present: Vec<Tensor<1>> = inputs.iter().map(|m| m.present.clone().float()).collect();
        let present = Tensor::stack::<2>(present, 1); // [batch, modalities]
        let keep = Tensor::<2>::random(
            [batch, inputs.len()],
            burn::tensor::Distribution::Bernoulli(1.0 - self.prob),
            &device,
        );
        let kept = present.clone() * keep;
        let none_left = kept.clone().sum_dim(1).equal_elem(0.0).float(); // [batch, 1]
        let result = kept.clone() + (present - kept) * none_left;
        for (index, input) in inputs.iter_mut().enumerate() {
            input.present = result
                .clone()
                .narrow(1, index, 1)
                .squeeze_dim::<1>(1)
                .equal_elem(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::testing::part;
    use polymodal_core::Modality;

    fn flags(m: &ModalityEmbeddings) -> Vec<bool> {
        m.present.clone().into_data().try_to_vec::<bool>().unwrap()
    }

    #[test]
    fn hides_modalities_but_never_all_and_never_absent_ones() {
        let device = Device::flex();
        device.seed(11);
        let n = 2000;
        let audio_present: Vec<bool> = (0..n).map(|i| i % 4 != 0).collect();
        let mut inputs = vec![
            part(Modality::Image, 2, 1, &vec![true; n], &device),
            part(Modality::Audio, 2, 1, &audio_present, &device),
        ];
        ModalityDropout::new(0.3).unwrap().apply_always(&mut inputs);
        let (image, audio) = (flags(&inputs[0]), flags(&inputs[1]));
        assert!(
            (0..n).all(|i| image[i] || audio[i]),
            "a sample lost everything"
        );
        assert!(
            (0..n).all(|i| audio_present[i] || !audio[i]),
            "an absent modality came back"
        );
        let hidden = image.iter().filter(|&&p| !p).count() as f64 / n as f64;
        // Expected: image hidden (0.3) while audio is present (0.75) and kept (0.7) = 0.1575.
        assert!((0.12..0.20).contains(&hidden), "{hidden}");
    }

    #[test]
    fn inference_is_unchanged_and_bad_probabilities_are_errors() {
        let device = Device::flex();
        let mut inputs = vec![part(Modality::Image, 2, 1, &[true; 8], &device)];
        ModalityDropout::new(0.9).unwrap().apply(&mut inputs);
        assert_eq!(flags(&inputs[0]), vec![true; 8]);
        assert!(ModalityDropout::new(1.0).is_err());
        assert!(ModalityDropout::new(-0.1).is_err());
    }
}
