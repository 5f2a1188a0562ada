//! Losses beyond Burn's cross-entropy (which the trainer uses, with label
//! smoothing): binary cross-entropy for multi-label targets, and the loss of
//! a subset of a batch's samples (the unimodal auxiliary heads train only on
//! the samples that have their modality). The symmetric InfoNCE loss lives
//! with the contrastive layer (`polymodal_fusion::info_nce`).

use burn::prelude::*;

use polymodal_core::{Error, Result, Targets};

/// Mean binary cross-entropy of `logits` `[batch, labels]` against `targets`
/// in `[0, 1]` of the same shape (one independent yes/no per label), computed
/// from logits in the stable form `max(x, 0) − x·y + ln(1 + e^(−|x|))`.
pub fn binary_cross_entropy_with_logits(
    logits: Tensor<2>,
    targets: Tensor<2>,
) -> Result<Tensor<1>> {
    Ok(binary_cross_entropy_terms(logits, targets)?.mean())
}

/// Each label's binary cross-entropy, `[batch, labels]`.
fn binary_cross_entropy_terms(logits: Tensor<2>, targets: Tensor<2>) -> Result<Tensor<2>> {
    if logits.dims() != targets.dims() {
        return Err(Error::Invalid(format!(
            "binary cross-entropy: logits {:?} and targets {:?} differ in shape",
            logits.dims(),
            targets.dims()
        )));
    }
    let softplus = (logits.clone().abs().neg().exp() + 1.0).log();
    Ok(logits.clone().clamp_min(0.0) - logits * targets + softplus)
}

/// The mean loss of `logits` `[batch, classes]` over the samples where
/// `keep` `[batch]` is true: cross-entropy against class indices, or the
/// binary cross-entropy averaged over the labels of multi-hot targets. No
/// sample kept gives 0 (and no gradient), not NaN.
pub(crate) fn masked_loss(
    logits: Tensor<2>,
    targets: &Targets,
    keep: Tensor<1, Bool>,
) -> Result<Tensor<1>> {
    let [batch, _] = logits.dims();
    let per_sample = match targets {
        Targets::Classes(indices) => {
            if indices.dims() != [batch] {
                return Err(Error::Invalid(format!(
                    "masked loss: {batch} samples but {:?} class indices",
                    indices.dims()
                )));
            }
            let picked = burn::tensor::activation::log_softmax(logits, 1)
                .gather(1, indices.clone().unsqueeze_dim(1));
            picked.neg().reshape([batch])
        }
        Targets::MultiHot(targets) => binary_cross_entropy_terms(logits, targets.clone())?
            .mean_dim(1)
            .reshape([batch]),
    };
    if keep.dims() != [batch] {
        return Err(Error::Invalid(format!(
            "masked loss: {batch} samples but a mask of shape {:?}",
            keep.dims()
        )));
    }
    let weights = keep.float();
    let count = weights.clone().sum().clamp_min(1.0);
    Ok((per_sample * weights).sum() / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `masked_loss` is the loss of the kept samples alone: Burn's
    /// cross-entropy (or `binary_cross_entropy_with_logits`) over those
    /// rows; nothing kept gives 0; a mask of the wrong length is an error.
    #[test]
    fn masked_loss_counts_only_the_kept_samples() {
        // Holds the generator so a seeded run on another test thread is
        // not changed by this test's draws.
        let _rng = crate::RngGuard::hold();
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(
            [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 1.0]],
            &device,
        );
        let classes = Tensor::<1, Int>::from_data([0, 2, 1], &device);
        let keep = |mask: [bool; 3]| Tensor::<1, Bool>::from_data(TensorData::from(mask), &device);
        let kept = Tensor::<1, Int>::from_data([0, 2], &device);
        let targets = Targets::Classes(classes.clone());
        let ours = masked_loss(logits.clone(), &targets, keep([true, false, true]))
            .unwrap()
            .into_scalar::<f32>();
        let burn = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(&device)
            .forward(
                logits.clone().select(0, kept.clone()),
                classes.select(0, kept.clone()),
            )
            .into_scalar::<f32>();
        assert!((ours - burn).abs() < 1e-6, "{ours} vs {burn}");

        let hot =
            Tensor::<2>::from_data([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], &device);
        let ours = masked_loss(
            logits.clone(),
            &Targets::MultiHot(hot.clone()),
            keep([true, false, true]),
        )
        .unwrap()
        .into_scalar::<f32>();
        let whole = binary_cross_entropy_with_logits(
            logits.clone().select(0, kept.clone()),
            hot.select(0, kept),
        )
        .unwrap()
        .into_scalar::<f32>();
        assert!((ours - whole).abs() < 1e-6, "{ours} vs {whole}");

        let none = masked_loss(logits.clone(), &targets, keep([false; 3]))
            .unwrap()
            .into_scalar::<f32>();
        assert_eq!(none, 0.0);
        let short = Tensor::<1, Bool>::from_data(TensorData::from([true, false]), &device);
        let two_classes = Targets::Classes(Tensor::from_data([0, 1], &device));
        assert!(masked_loss(logits.clone(), &two_classes, keep([true; 3])).is_err());
        assert!(masked_loss(logits, &targets, short).is_err());
    }

    #[test]
    fn matches_the_definition_and_stays_finite() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data([[0.0, 2.0], [-3.0, 100.0]], &device);
        let targets = Tensor::<2>::from_data([[1.0, 0.0], [0.0, 1.0]], &device);
        let loss = binary_cross_entropy_with_logits(logits, targets)
            .unwrap()
            .into_scalar::<f32>();
        // −ln σ(0), −ln(1 − σ(2)), −ln(1 − σ(−3)), −ln σ(100), by hand.
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let expected = (-(sigmoid(0.0)).ln()
            - (1.0 - sigmoid(2.0)).ln()
            - (1.0 - sigmoid(-3.0)).ln()
            - sigmoid(100.0).ln())
            / 4.0;
        assert!(
            (loss as f64 - expected).abs() < 1e-6,
            "{loss} vs {expected}"
        );
        let huge = Tensor::<2>::from_data([[-1e4, 1e4]], &device);
        let wrong = Tensor::<2>::from_data([[1.0, 0.0]], &device);
        let value = binary_cross_entropy_with_logits(huge, wrong)
            .unwrap()
            .into_scalar::<f32>();
        assert!((value - 1e4).abs() < 1.0, "{value}");
        let mismatched = Tensor::<2>::zeros([1, 3], &device);
        assert!(
            binary_cross_entropy_with_logits(mismatched, Tensor::zeros([1, 2], &device)).is_err()
        );
    }
}
