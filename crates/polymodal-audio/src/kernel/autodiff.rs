//! [`LogMelOps`] under autodiff: the spectrogram is a constant (features
//! are not differentiated).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::{Autodiff, Backend, tensor::FloatTensor};

use polymodal_wgpu::extension::untracked;

use super::{LogMelOps, LogMelShape};

impl<B: Backend + LogMelOps, C: CheckpointStrategy> LogMelOps for Autodiff<B, C> {
    fn log_mel(
        signal: FloatTensor<Self>,
        window: FloatTensor<Self>,
        twiddles: FloatTensor<Self>,
        dft_cos: FloatTensor<Self>,
        dft_sin: FloatTensor<Self>,
        filters: FloatTensor<Self>,
        bands: FloatTensor<Self>,
        shape: LogMelShape,
    ) -> FloatTensor<Self> {
        let out = B::log_mel(
            signal.primitive().clone(),
            window.into_primitive(),
            twiddles.into_primitive(),
            dft_cos.into_primitive(),
            dft_sin.into_primitive(),
            filters.into_primitive(),
            bands.into_primitive(),
            shape,
        );
        untracked::<B, C>(&signal, out)
    }
}
