//! [`FramePreprocessOps`] under autodiff: model input is a constant (pixels
//! are not differentiated).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::{
    Autodiff, Backend,
    tensor::{FloatTensor, IntTensor},
};

use polymodal_wgpu::extension::untracked;

use super::{FramePreprocessOps, FrameShape};

impl<B: Backend + FramePreprocessOps, C: CheckpointStrategy> FramePreprocessOps for Autodiff<B, C> {
    fn preprocess_frames(
        pixels: IntTensor<Self>,
        horizontal_start: IntTensor<Self>,
        horizontal_len: IntTensor<Self>,
        horizontal_weights: IntTensor<Self>,
        vertical_start: IntTensor<Self>,
        vertical_len: IntTensor<Self>,
        vertical_weights: IntTensor<Self>,
        norm: FloatTensor<Self>,
        shape: FrameShape,
    ) -> FloatTensor<Self> {
        let out = B::preprocess_frames(
            pixels,
            horizontal_start,
            horizontal_len,
            horizontal_weights,
            vertical_start,
            vertical_len,
            vertical_weights,
            norm.primitive().clone(),
            shape,
        );
        untracked::<B, C>(&norm, out)
    }
}
