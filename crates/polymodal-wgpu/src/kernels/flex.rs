//! The CPU implementations of [`KernelOps`](super::KernelOps) on Burn's
//! Flex backend: the references the wgpu kernels are tested against, built
//! on the modality crates' own CPU code (which is itself checked against
//! librosa, Pillow and PyTorch).

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Bytes, DType, Flex};

use polymodal_audio::{LogScale, MelConfig, MelSpectrogram};

use super::{ElementLog, LogMelShape};

impl super::KernelOps for Flex {
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
        let mut out =
            Vec::with_capacity(values.len() / samples.max(1) * shape.n_mels * shape.frames);
        for row in values.chunks_exact(samples) {
            // LogMel::forward has checked the length and finiteness.
            let (power, _) = mel.mel_power(row).expect("checked by LogMel::forward");
            out.extend(power.into_iter().map(|x| compress(x, shape.log)));
        }
        let batch = values.len() / samples.max(1);
        FlexTensor::new(
            Bytes::from_elems(out),
            Layout::contiguous([batch, shape.n_mels, shape.frames].into()),
            DType::F32,
        )
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
