//! Losses beyond Burn's cross-entropy (which the trainer uses, with label
//! smoothing): binary cross-entropy for multi-label targets. The symmetric
//! InfoNCE loss lives with the contrastive layer (`polymodal_fusion::info_nce`).

use burn::prelude::*;

use polymodal_core::{Error, Result};

/// Mean binary cross-entropy of `logits` `[batch, labels]` against `targets`
/// in `[0, 1]` of the same shape (one independent yes/no per label), computed
/// from logits in the stable form `max(x, 0) − x·y + ln(1 + e^(−|x|))`.
pub fn binary_cross_entropy_with_logits(
    logits: Tensor<2>,
    targets: Tensor<2>,
) -> Result<Tensor<1>> {
    if logits.dims() != targets.dims() {
        return Err(Error::Invalid(format!(
            "binary cross-entropy: logits {:?} and targets {:?} differ in shape",
            logits.dims(),
            targets.dims()
        )));
    }
    let softplus = (logits.clone().abs().neg().exp() + 1.0).log();
    let loss = logits.clone().clamp_min(0.0) - logits * targets + softplus;
    Ok(loss.mean())
}

#[cfg(test)]
mod tests {
    use super::*;

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
