use burn::prelude::*;

use crate::Modality;

/// What every encoder produces.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// One vector per sample, `[batch, dim]`.
    pub pooled: Tensor<2>,
    /// One vector per token (time step, patch, frame), `[batch, length, dim]`.
    pub sequence: Tensor<3>,
    /// `true` where `sequence` holds a real token, `[batch, length]`.
    pub mask: Tensor<2, Bool>,
}

impl Embeddings {
    /// Embeddings in which every token is real (images, fixed-length audio).
    pub fn dense(pooled: Tensor<2>, sequence: Tensor<3>) -> Self {
        let [batch, length, _] = sequence.dims();
        let mask = Tensor::<2>::ones([batch, length], &sequence.device()).equal_elem(1.0);
        Self {
            pooled,
            sequence,
            mask,
        }
    }

    /// Every token real, pooled by the mean over tokens.
    pub fn dense_mean(sequence: Tensor<3>) -> Self {
        let [batch, _, dim] = sequence.dims();
        let pooled = sequence.clone().mean_dim(1).reshape([batch, dim]);
        Self::dense(pooled, sequence)
    }

    /// Embeddings whose pooled vector is the mean over the valid tokens.
    pub fn from_sequence(sequence: Tensor<3>, mask: Tensor<2, Bool>) -> Self {
        let pooled = masked_mean(sequence.clone(), mask.clone());
        Self {
            pooled,
            sequence,
            mask,
        }
    }
}

/// One modality's embeddings inside a multimodal batch.
#[derive(Debug, Clone)]
pub struct ModalityEmbeddings {
    /// The modality.
    pub modality: Modality,
    /// Its embeddings.
    pub embeddings: Embeddings,
    /// Presence per sample, `[batch]`.
    pub present: Tensor<1, Bool>,
}

/// Mean of `sequence` `[batch, length, dim]` over the positions where `mask`
/// `[batch, length]` is true. A row with no valid position gives zeros.
pub fn masked_mean(sequence: Tensor<3>, mask: Tensor<2, Bool>) -> Tensor<2> {
    let weights = mask.float().unsqueeze_dim::<3>(2); // [batch, length, 1]
    let count = weights.clone().sum_dim(1).clamp_min(1.0); // [batch, 1, 1]
    (sequence * weights)
        .sum_dim(1)
        .div(count)
        .squeeze_dim::<2>(1)
}

/// Rows `[batch, dim]` divided by their L2 norm (at least 1e-12, as
/// PyTorch's `normalize`: zero rows stay zero). Computed in f32 whatever the
/// input's float type (in f16 the squares overflow past a norm of 256 and
/// 1e-12 rounds to 0) and returned in it.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let dtype = x.dtype();
    let x = x.cast(burn::tensor::DType::F32);
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    (x / norm).cast(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_mean_ignores_padding() {
        let device = Device::flex();
        let sequence = Tensor::<3>::from_data([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], &device);
        let mask = Tensor::<2, Bool>::from_data([[true, true, false]], &device);
        let mean = masked_mean(sequence, mask)
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(mean, vec![2.0, 3.0]);
    }

    #[test]
    fn all_padding_gives_zeros() {
        let device = Device::flex();
        let sequence = Tensor::<3>::ones([1, 2, 3], &device);
        let mask = Tensor::<2, Bool>::from_data([[false, false]], &device);
        let mean = masked_mean(sequence, mask)
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(mean, vec![0.0; 3]);
    }

    #[test]
    fn l2_normalize_is_safe_in_f16() {
        use burn::tensor::DType;
        let device = Device::flex();
        let x = Tensor::<2>::from_data([[300.0f32, 400.0], [0.0, 0.0]], &device);
        for dtype in [DType::F32, DType::F16] {
            let y = l2_normalize(x.clone().cast(dtype));
            assert_eq!(y.dtype(), dtype);
            let values = y.try_into_vec_as::<f32>().unwrap();
            let expected = [0.6f32, 0.8, 0.0, 0.0];
            for (v, e) in values.iter().zip(expected) {
                assert!((v - e).abs() < 1e-3, "{dtype:?}: {values:?}");
            }
        }
    }
}
