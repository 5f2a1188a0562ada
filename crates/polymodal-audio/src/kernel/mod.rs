//! The log-mel spectrogram of raw audio already on the device (framing,
//! window, power spectrum, mel projection, log) in one kernel: [`LogMel`],
//! the same values as [`MelSpectrogram::compute`] for every row of a batch.
//!
//! A Burn backend extension ([`LogMelOps`]): the CubeCL kernel for wgpu
//! devices (`cube`), the CPU reference on Flex that is this crate's own
//! spectrogram, checked against librosa (`cpu`), and the autodiff part that
//! treats features as constants (`autodiff`). Behind the `wgpu` feature.
//!
//! ```
//! use burn::prelude::*;
//! use polymodal_audio::kernel::LogMel;
//!
//! // On the CPU here; on a `polymodal_wgpu::wgpu_device(..)?` the fused kernel runs.
//! let device = Device::flex();
//! let log_mel = LogMel::new(polymodal_audio::MelConfig::whisper())?;
//! let audio = Tensor::<2>::random([2, 16_000], burn::tensor::Distribution::Uniform(-0.5, 0.5), &device);
//! let features = log_mel.forward(audio)?;
//! assert_eq!(features.dims(), [2, 80, 101]);
//! # Ok::<(), polymodal_core::Error>(())
//! ```

mod autodiff;
mod cpu;
mod cube;

use std::sync::Mutex;

use burn::backend::{
    Backend, Dispatch, DispatchAutodiffContext, backend_extension, tensor::FloatTensor,
};
use burn::prelude::*;
use burn::tensor::DType;

use polymodal_core::{Error, Result};
use polymodal_wgpu::extension::float_dtype;

use crate::{LogScale, MelConfig, MelSpectrogram, PadMode, reflect_indices};

/// The log-mel spectrogram as a backend operation; call it through
/// [`LogMel`].
#[allow(clippy::too_many_arguments)]
#[backend_extension(Flex, Cube, Autodiff)]
pub trait LogMelOps: Backend {
    /// `signal` `[batch, samples]` → `[batch, n_mels, frames]`, compressed
    /// element-wise (`shape.log`); `window` `[n_fft]`, `twiddles` `[2·n_fft]`
    /// (cos and −sin of 2πj/n_fft), `dft_cos` and `dft_sin` `[n_fft, bins]`
    /// (the same at j = k·n), `filters` `[n_mels, bins]`, `bands`
    /// `[n_mels, 2]` (each filter's first and past-the-end non-zero bin).
    fn log_mel(
        signal: FloatTensor<Self>,
        window: FloatTensor<Self>,
        twiddles: FloatTensor<Self>,
        dft_cos: FloatTensor<Self>,
        dft_sin: FloatTensor<Self>,
        filters: FloatTensor<Self>,
        bands: FloatTensor<Self>,
        shape: LogMelShape,
    ) -> FloatTensor<Self>;
}

/// The element-wise part of a [`LogScale`]; the part that needs the
/// spectrogram's maximum (top_db, Whisper's floor) is applied afterwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ElementLog {
    /// Power, uncompressed.
    Power,
    /// `ln(x + offset)`.
    Natural {
        /// Added before the logarithm.
        offset: f32,
    },
    /// `10·log10(max(x, 1e-10))`.
    Decibel,
    /// `log10(max(x, 1e-10))` (Whisper).
    Log10,
}

/// The element-wise part of `log`; an error for the scales the kernel
/// lacks.
fn element_log(log: LogScale) -> Result<ElementLog> {
    Ok(match log {
        LogScale::Power => ElementLog::Power,
        LogScale::Natural { offset } => ElementLog::Natural { offset },
        LogScale::Decibel { .. } => ElementLog::Decibel,
        LogScale::Whisper => ElementLog::Log10,
        LogScale::NaturalFloor { .. } => {
            return Err(Error::Config(
                "the log-mel kernel has no floored natural log (Kaldi's): use MelSpectrogram"
                    .into(),
            ));
        }
    })
}

/// The sizes of one log-mel launch, and the config for the CPU reference.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMelShape {
    /// The full settings.
    pub config: MelConfig,
    /// FFT size.
    pub n_fft: usize,
    /// Samples between frames.
    pub hop: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Frames per signal.
    pub frames: usize,
    /// Centring padding on each side (`n_fft / 2` or 0).
    pub pad: usize,
    /// Whether the padding mirrors the signal (else zeros).
    pub reflect: bool,
    /// Element-wise compression.
    pub log: ElementLog,
}

/// The largest FFT the fused kernel takes: a frame and its power spectrum
/// stay in shared memory, (n_fft + n_fft/2 + 1)·4 bytes, within WebGPU's
/// guaranteed 16 KiB.
pub const MAX_FUSED_N_FFT: usize = 2048;

/// Tables uploaded once per device.
#[derive(Clone)]
struct Tables {
    device: Device,
    window: Tensor<1>,
    /// `[2·n_fft]`: cos and −sin of 2πj/n_fft.
    twiddles: Tensor<1>,
    filters: Tensor<2>,
    /// `[n_mels, 2]`: each filter's first and past-the-end non-zero bin.
    bands: Tensor<2>,
    /// `[n_fft, bins]`: cos and −sin of 2π·kn/n_fft.
    dft_cos: Tensor<2>,
    dft_sin: Tensor<2>,
}

/// A log-mel spectrogram on the device: the same values as
/// [`MelSpectrogram::compute`] for every row of a batch.
pub struct LogMel {
    config: MelConfig,
    mel: MelSpectrogram,
    tables: Mutex<Vec<Tables>>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("config", &self.config)
            .finish()
    }
}

impl LogMel {
    /// Builds the tables for `config` (checked like `MelSpectrogram::new`).
    pub fn new(config: MelConfig) -> Result<Self> {
        let mel = MelSpectrogram::new(config.clone())?;
        element_log(config.log)?;
        if config.frame_length.is_some() || config.remove_dc || config.preemphasis.is_some() {
            return Err(Error::Config(
                "the log-mel kernel frames n_fft samples as they are: Kaldi's framing \
                 (frame_length, remove_dc, preemphasis) is MelSpectrogram's only"
                    .into(),
            ));
        }
        Ok(Self {
            config,
            mel,
            tables: Mutex::new(Vec::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &MelConfig {
        &self.config
    }

    /// `signal` `[batch, samples]` (one mono signal per row, on any
    /// device) → `[batch, n_mels, frames]`: the fused kernel on wgpu, the
    /// CPU reference on the CPU backend. Computed in f32 whatever the
    /// signal's dtype; returned in the device's float dtype (f16 on a device
    /// configured for it). Non-finite samples are an error.
    pub fn forward(&self, signal: Tensor<2>) -> Result<Tensor<3>> {
        let shape = self.check(&signal)?;
        let signal = signal.cast(DType::F32);
        let samples = signal.dims()[1];
        if shape.reflect && samples <= shape.pad {
            // The kernel mirrors once; numpy folds again (forward_unfused does).
            return Err(Error::Invalid(format!(
                "the fused kernel's reflect padding of {} needs more than {} samples, got {samples}; use forward_unfused",
                shape.pad, shape.pad
            )));
        }
        if self.config.n_fft > MAX_FUSED_N_FFT {
            return Err(Error::Invalid(format!(
                "the fused log-mel kernel takes n_fft up to {MAX_FUSED_N_FFT}, got {}; use forward_unfused",
                self.config.n_fft
            )));
        }
        let tables = self.tables(&signal.device());
        let out = <Dispatch as LogMelOps>::log_mel(
            signal.into_dispatch(),
            tables.window.into_dispatch(),
            tables.twiddles.into_dispatch(),
            tables.dft_cos.into_dispatch(),
            tables.dft_sin.into_dispatch(),
            tables.filters.into_dispatch(),
            tables.bands.into_dispatch(),
            shape,
        );
        let out = self.finish(Tensor::from_dispatch(out));
        Ok(out.cast(float_dtype(&tables.device)))
    }

    /// The same with Burn's own ops (pad, unfold, window, DFT as two matrix
    /// products, power, mel matrix product, log), on any device: the
    /// baseline the fused kernel is measured against.
    pub fn forward_unfused(&self, signal: Tensor<2>) -> Result<Tensor<3>> {
        let shape = self.check(&signal)?;
        let signal = signal.cast(DType::F32);
        let tables = self.tables(&signal.device());
        let [batch, samples] = signal.dims();
        let signal = match (shape.pad, shape.reflect) {
            (0, _) => signal,
            (pad, true) => {
                let indices: Vec<i64> = reflect_indices(samples, pad)
                    .into_iter()
                    .map(|i| i as i64)
                    .collect();
                signal.select(1, Tensor::from_data(indices.as_slice(), &tables.device))
            }
            (pad, false) => {
                let zeros = Tensor::<2>::zeros([batch, pad], (&tables.device, DType::F32));
                Tensor::cat(vec![zeros.clone(), signal, zeros], 1)
            }
        };
        let n_fft = shape.n_fft;
        let frames: Tensor<3> = signal.unfold(1, n_fft, shape.hop);
        let frames = frames * tables.window.clone().reshape([1, 1, n_fft]);
        let re = frames.clone().matmul(tables.dft_cos.clone().unsqueeze());
        let im = frames.matmul(tables.dft_sin.clone().unsqueeze());
        let power = re.clone() * re + im.clone() * im;
        let energy = power
            .matmul(tables.filters.clone().transpose().unsqueeze())
            .swap_dims(1, 2);
        let value = match shape.log {
            ElementLog::Power => energy,
            ElementLog::Natural { offset } => (energy + offset).log(),
            ElementLog::Decibel => energy.clamp_min(1e-10).log() * (10.0 / std::f64::consts::LN_10),
            ElementLog::Log10 => energy.clamp_min(1e-10).log() / std::f64::consts::LN_10,
        };
        Ok(self.finish(value).cast(float_dtype(&tables.device)))
    }

    /// Checks the input and works out the launch sizes.
    fn check(&self, signal: &Tensor<2>) -> Result<LogMelShape> {
        let [batch, samples] = signal.dims();
        let n_fft = self.config.n_fft;
        let frames = self.mel.frames_for(samples);
        let pad = if self.config.center { n_fft / 2 } else { 0 };
        let reflect = self.config.center && self.config.pad_mode == PadMode::Reflect;
        if batch == 0 || frames == 0 {
            return Err(Error::Invalid(format!(
                "log-mel needs at least one signal of n_fft = {n_fft} samples (without centring), got [{batch}, {samples}]"
            )));
        }
        if signal.clone().into_dispatch().autodiff != DispatchAutodiffContext::Disabled {
            return Err(Error::Invalid(
                "log-mel features are not differentiated: pass a tensor from a device without autodiff"
                    .into(),
            ));
        }
        let finite = signal
            .clone()
            .is_nan()
            .bool_or(signal.clone().is_inf())
            .any();
        if finite.into_scalar::<bool>() {
            return Err(Error::Invalid(
                "audio samples contain NaN or infinity".into(),
            ));
        }
        let log = element_log(self.config.log)?;
        Ok(LogMelShape {
            config: self.config.clone(),
            n_fft,
            hop: self.config.hop_length,
            n_mels: self.config.n_mels,
            frames,
            pad,
            reflect,
            log,
        })
    }

    /// The part of the compression that needs each spectrogram's maximum.
    fn finish(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, n_mels, frames] = x.dims();
        let floor = |x: Tensor<3>, below: f64| {
            let max = x.clone().reshape([batch, n_mels * frames]).max_dim(1);
            let floor = (max - below)
                .reshape([batch, 1, 1])
                .expand([batch, n_mels, frames]);
            x.max_pair(floor)
        };
        match self.config.log {
            LogScale::Decibel { top_db: Some(top) } => floor(x, top as f64),
            LogScale::Whisper => (floor(x, 8.0) + 4.0) / 4.0,
            _ => x,
        }
    }

    fn tables(&self, device: &Device) -> Tables {
        let mut cache = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.iter().find(|t| &t.device == device) {
            return t.clone();
        }
        let n_fft = self.config.n_fft;
        let bins = n_fft / 2 + 1;
        let angle = |j: usize| 2.0 * std::f64::consts::PI * j as f64 / n_fft as f64;
        let twiddles: Vec<f32> = (0..n_fft)
            .map(|j| angle(j).cos() as f32)
            .chain((0..n_fft).map(|j| -angle(j).sin() as f32))
            .collect();
        let bands: Vec<f32> = self
            .mel
            .supports()
            .iter()
            .flat_map(|band| [band.start as f32, band.end as f32])
            .collect();
        let dft = |f: fn(f64) -> f64| -> Vec<f32> {
            (0..n_fft)
                .flat_map(|n| (0..bins).map(move |k| f(angle((k * n) % n_fft)) as f32))
                .collect()
        };
        // f32 whatever the device's default: the kernels read f32.
        fn f32_tensor<const D: usize>(
            values: Vec<f32>,
            shape: Vec<usize>,
            device: &Device,
        ) -> Tensor<D> {
            Tensor::from_data(TensorData::new(values, shape), (device, DType::F32))
        }
        let tables = Tables {
            device: device.clone(),
            window: f32_tensor(self.mel.window().to_vec(), vec![n_fft], device),
            twiddles: f32_tensor(twiddles, vec![2 * n_fft], device),
            filters: f32_tensor(
                self.mel.filters().to_vec(),
                vec![self.config.n_mels, bins],
                device,
            ),
            bands: f32_tensor(bands, vec![self.config.n_mels, 2], device),
            dft_cos: f32_tensor(dft(f64::cos), vec![n_fft, bins], device),
            dft_sin: f32_tensor(dft(|a| -a.sin()), vec![n_fft, bins], device),
        };
        cache.push(tables.clone());
        tables
    }
}
