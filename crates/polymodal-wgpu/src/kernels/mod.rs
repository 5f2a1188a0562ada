//! The project's own compute kernels, as a Burn backend extension
//! ([`KernelOps`]): a CubeCL implementation for the wgpu device (the same
//! code for Vulkan, Metal and DX12: no vendor-specific paths) and a CPU
//! implementation on Burn's Flex backend that serves as the reference.
//!
//! - [`LogMel`]: the log-mel spectrogram of raw audio on the device (framing,
//!   window, power spectrum, mel projection, log) in one kernel;
//! - [`FramePreprocess`]: video frames (u8 RGB) to model input (resized,
//!   cropped, normalised CHW; computed in f32, bit-identical to Pillow), in
//!   two passes;
//! - [`gated_unit`]: the gated multimodal unit's combining step (masked
//!   softmax gates, tanh candidates, weighted sum) in one kernel, with its
//!   backward pass, so models with gated fusion train through it.
//!
//! Each kernel has an unfused twin made of Burn tensor ops (e.g.
//! [`LogMel::forward_unfused`]) that runs on any device; `cargo xtask bench
//! kernels` times the two on the same device.

mod autodiff;
mod cube;
mod flex;
mod frames;
mod frames_cube;
mod gated;
mod log_mel;

pub use frames::{FramePreprocess, FrameShape};

use std::sync::Mutex;

use burn::backend::{
    Backend, Dispatch, backend_extension,
    tensor::{FloatTensor, IntTensor},
};
use burn::backend::{DispatchAutodiffContext, DispatchTensorKind};
use burn::prelude::*;
use burn::tensor::DType;

use polymodal_audio::{LogScale, MelConfig, MelSpectrogram, PadMode, reflect_indices};
use polymodal_core::{Error, Result};

/// The custom operations; call them through the wrappers ([`LogMel`]).
#[allow(clippy::too_many_arguments)]
#[backend_extension(Flex, Cube, Autodiff)]
pub trait KernelOps: Backend {
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

    /// Frames `pixels` `[frames, height·width]` (i32, `r | g << 8 | b << 16`)
    /// → `[frames, channels, out_height, out_width]`: Pillow's two passes
    /// (start, length and weights of each, i32) and the normalisation
    /// (`norm`: three scales, three shifts).
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
    ) -> FloatTensor<Self>;

    /// The gated unit's combination: `h[b, j] = Σ_m z[b, m, j]·tanh(u[b, m,
    /// j])`, `z` the softmax of `scores` over the present modalities
    /// (`present` `[batch, modalities]`, 1 or 0). `scores`, `candidates`
    /// `[batch, modalities, hidden]` → `[batch, hidden]`.
    fn gated_unit(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `∂L/∂scores` from `grad` = `∂L/∂h` `[batch, hidden]`.
    fn gated_unit_grad_scores(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `∂L/∂candidates` from `grad` = `∂L/∂h` `[batch, hidden]`.
    fn gated_unit_grad_candidates(
        scores: FloatTensor<Self>,
        candidates: FloatTensor<Self>,
        present: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The gated multimodal unit's combining step in one kernel (forward, and
/// backward under autodiff): `h = Σ_m softmax_m(scores)·tanh(candidates)`
/// over the modalities present in each sample (`present` `[batch,
/// modalities]`, 1 or 0); `scores`, `candidates` `[batch, modalities,
/// hidden]` → `[batch, hidden]`, in f32 or f16 (the dtype of `scores`; the
/// arithmetic is f32). A sample with no modality present gets zeros. Shapes
/// and dtypes are checked.
pub fn gated_unit(
    scores: Tensor<3>,
    candidates: Tensor<3>,
    present: Tensor<2>,
) -> Result<Tensor<2>> {
    check_gated(&scores, &candidates, &present)?;
    let dtype = scores.dtype();
    // The CPU reference reads f32: other precisions go through it in f32.
    let io = if on_wgpu(&scores) { dtype } else { DType::F32 };
    let fused = Tensor::<2>::from_dispatch(<Dispatch as KernelOps>::gated_unit(
        scores.cast(io).into_dispatch(),
        candidates.cast(io).into_dispatch(),
        present.cast(io).into_dispatch(),
    ));
    Ok(fused.cast(dtype))
}

/// [`gated_unit`] on wgpu, [`gated_unit_unfused`] elsewhere: on the CPU
/// the kernel's implementation is a plain-loop reference and Burn's ops are
/// faster (`cargo xtask bench kernels --device cpu`). What
/// `polymodal_fusion::GatedFusion` calls with its `kernels` feature.
pub fn gated_unit_best(
    scores: Tensor<3>,
    candidates: Tensor<3>,
    present: Tensor<2>,
) -> Result<Tensor<2>> {
    if on_wgpu(&scores) {
        gated_unit(scores, candidates, present)
    } else {
        gated_unit_unfused(scores, candidates, present)
    }
}

/// Whether `x` lives on a wgpu (CubeCL) device.
fn on_wgpu<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.clone().into_dispatch().kind, DispatchTensorKind::Cube(_))
}

/// The same with Burn's ops (masked softmax, tanh, product, sum): the
/// baseline [`gated_unit`] is measured against.
pub fn gated_unit_unfused(
    scores: Tensor<3>,
    candidates: Tensor<3>,
    present: Tensor<2>,
) -> Result<Tensor<2>> {
    check_gated(&scores, &candidates, &present)?;
    let [batch, modalities, _] = scores.dims();
    let present: Tensor<3> = present.reshape([batch, modalities, 1]);
    // Absent modalities are pushed to -1e4 before the softmax and their
    // gates zeroed after it (all-absent samples then get zeros).
    let masked = scores + (present.clone().neg() + 1.0) * -1e4;
    let gates = burn::tensor::activation::softmax(masked, 1) * present;
    Ok((gates * candidates.tanh()).sum_dim(1).squeeze_dim(1))
}

fn check_gated(scores: &Tensor<3>, candidates: &Tensor<3>, present: &Tensor<2>) -> Result<()> {
    let [batch, modalities, _] = scores.dims();
    if candidates.dims() != scores.dims() || present.dims() != [batch, modalities] {
        return Err(Error::Invalid(format!(
            "gated unit: scores {:?} and candidates {:?} must match, present must be {:?}, got {:?}",
            scores.dims(),
            candidates.dims(),
            [batch, modalities],
            present.dims()
        )));
    }
    let dtypes = [scores.dtype(), candidates.dtype(), present.dtype()];
    if !matches!(dtypes[0], DType::F32 | DType::F16) || dtypes.iter().any(|d| *d != dtypes[0]) {
        return Err(Error::Invalid(format!(
            "gated unit: scores, candidates and present must all be f32 or all f16, got {dtypes:?}"
        )));
    }
    Ok(())
}

/// The float dtype tensors created on `device` get by default: f32, or f16
/// on a device configured for it.
pub fn float_dtype(device: &Device) -> DType {
    device.settings().float_dtype.into()
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
/// [`polymodal_audio::MelSpectrogram::compute`] for every row of a batch.
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
        let out = <Dispatch as KernelOps>::log_mel(
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
        let log = match self.config.log {
            LogScale::Power => ElementLog::Power,
            LogScale::Natural { offset } => ElementLog::Natural { offset },
            LogScale::Decibel { .. } => ElementLog::Decibel,
            LogScale::Whisper => ElementLog::Log10,
        };
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
