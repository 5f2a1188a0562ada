//! The CPU implementation of [`LogMelOps`] on Burn's Flex backend: this
//! crate's own [`MelSpectrogram`] (checked against librosa), the reference
//! the wgpu kernel is tested against.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;

use polymodal_wgpu::extension::flex_tensor;

use super::{ElementLog, LogMelOps, LogMelShape};
use crate::{LogScale, MelConfig, MelSpectrogram};

impl LogMelOps for Flex {
    fn log_mel(
        signal: FlexTensor,
        _window: FlexTensor,
        _twiddles: FlexTensor,
        _dft_cos: FlexTensor,
        _dft_sin: FlexTensor,
        _filters: FlexTensor,
        _bands: FlexTensor,
        shape: LogMelShape,
    ) -> FlexTensor {
        let signal = signal.to_contiguous();
        let values = signal.as_slice::<f32>().expect("a contiguous f32 signal");
        let samples = signal.layout().shape()[1];
        let mel = MelSpectrogram::new(MelConfig {
            log: LogScale::Power,
            ..shape.config.clone()
        })
        .expect("checked by LogMel::new");
        let batch = values.len() / samples.max(1);
        let mut out = Vec::with_capacity(batch * shape.n_mels * shape.frames);
        for row in values.chunks_exact(samples) {
            // LogMel::forward has checked the length and finiteness.
            let (power, _) = mel.mel_power(row).expect("checked by LogMel::forward");
            out.extend(power.into_iter().map(|x| compress(x, shape.log)));
        }
        flex_tensor(out, &[batch, shape.n_mels, shape.frames])
    }
}

fn compress(x: f32, log: ElementLog) -> f32 {
    match log {
        ElementLog::Power => x,
        ElementLog::Natural { offset } => (x + offset).ln(),
        ElementLog::Decibel => 10.0 * x.max(1e-10).log10(),
        ElementLog::Log10 => x.max(1e-10).log10(),
    }
}
