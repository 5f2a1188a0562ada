//! The wgpu implementation of [`LogMelOps`]: the log-mel spectrogram of raw
//! audio already on the device, in one pass per frame. One cube (workgroup) per (frame, signal): it gathers
//! its `n_fft` samples with the centring padding, applies the window, keeps
//! the frame and its power spectrum in shared memory, projects onto the mel
//! filters and writes the compressed value. Nothing in between goes to
//! global memory, where the unfused Burn ops write the frames, both halves
//! of the spectrum, the power and the mel energies.
//!
//! The spectrum is exact for any `n_fft` (Whisper's 400 included): one
//! Cooley–Tukey split n_fft = n1·n2 into two small DFTs in shared memory
//! when n_fft has a factor (a fifth of the direct DFT's work at 400 = 20·20),
//! else a direct DFT that reads each coefficient once for a group of frames.

use burn::backend::DType;
use burn::backend::wgpu::{CubeBackend, CubeTensor};
use burn_cubecl::cubecl;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use cubecl::prelude::*;
use std::f32::consts::LOG10_E;

use super::{ElementLog, LogMelOps, LogMelShape};

/// Shared memory per cube, in f32 values: WebGPU guarantees 16 KiB.
const SHARED_FLOATS: usize = 4096;

/// Frames one cube transforms together: every DFT coefficient read from
/// memory serves all of them. As many as fit in shared memory (frames and
/// their power spectra), at most 8.
fn frames_per_cube(n_fft: usize) -> usize {
    (SHARED_FLOATS / (n_fft + n_fft / 2 + 1)).clamp(1, 8)
}

/// Loads the windowed frames `first..first + group` of signal `row` into
/// `x` (`group × n_fft`), with the centring padding.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_frames(
    signal: &Tensor<f32>,
    window: &Tensor<f32>,
    x: &mut Shared<[f32]>,
    first: usize,
    row: usize,
    samples: usize,
    frames: usize,
    hop: usize,
    pad: usize,
    reflect: u32,
    #[comptime] n_fft: usize,
    #[comptime] group: usize,
) {
    let stride = CUBE_DIM_X as usize;
    let mut i = UNIT_POS_X as usize;
    while i < group * n_fft {
        let f = i / n_fft;
        let n = i % n_fft;
        let mut value = 0.0f32;
        if first + f < frames {
            // Position in the padded signal (unsigned: shifted by `pad`).
            let shifted = (first + f) * hop + n;
            if shifted >= pad && shifted < samples + pad {
                value = signal[row * samples + shifted - pad];
            } else if reflect == 1u32 {
                // numpy's reflect: -p -> p, (n - 1) + p -> (n - 1) - p.
                if shifted < pad {
                    value = signal[row * samples + pad - shifted];
                } else {
                    value = signal[row * samples + 2 * (samples - 1) + pad - shifted];
                }
            }
        }
        x[i] = value * window[n];
        i += stride;
    }
}

/// Projects the power spectra (`group × bins` in `power`) onto the mel
/// filters (`bands`: each band's first and past-the-end non-zero bin),
/// compresses each value and writes it.
#[cube]
#[allow(clippy::too_many_arguments)]
fn project_and_write(
    power: &Shared<[f32]>,
    filters: &Tensor<f32>,
    bands: &Tensor<f32>,
    output: &mut Tensor<f32>,
    first: usize,
    row: usize,
    frames: usize,
    offset: f32,
    #[comptime] n_fft: usize,
    #[comptime] n_mels: usize,
    #[comptime] group: usize,
    #[comptime] log: u32,
) {
    let bins = n_fft / 2 + 1;
    let stride = CUBE_DIM_X as usize;
    let mut j = UNIT_POS_X as usize;
    while j < group * n_mels {
        let f = j / n_mels;
        let m = j % n_mels;
        if first + f < frames {
            // Only the bins under the band's triangle.
            let start = u32::cast_from(bands[2 * m]) as usize;
            let end = u32::cast_from(bands[2 * m + 1]) as usize;
            let mut energy = 0.0f32;
            for b in start..end {
                energy += filters[m * bins + b] * power[f * bins + b];
            }
            let mut value = energy;
            if log == 1u32 {
                value = f32::ln(energy + offset);
            } else if log == 2u32 {
                // 10·log10(max(x, 1e-10))
                value = f32::ln(f32::max(energy, 1e-10f32)) * (10.0f32 * LOG10_E);
            } else if log == 3u32 {
                // log10(max(x, 1e-10))
                value = f32::ln(f32::max(energy, 1e-10f32)) * LOG10_E;
            }
            output[(row * n_mels + m) * frames + first + f] = value;
        }
        j += stride;
    }
}

/// The spectrum in two small DFTs (Cooley–Tukey with n_fft = n1·n2,
/// n = n2·a + b, k = c + n1·d): first an n1-point DFT of every column b,
/// times the twiddle W^(b·c), then an n2-point DFT along b. About
/// (n1 + 2·n2)/n_fft of the direct DFT's work (a fifth for Whisper's 400 =
/// 20·20). `twiddles` holds cos and −sin of 2πj/n_fft.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn log_mel_split_kernel(
    signal: &Tensor<f32>,
    window: &Tensor<f32>,
    twiddles: &Tensor<f32>,
    filters: &Tensor<f32>,
    bands: &Tensor<f32>,
    output: &mut Tensor<f32>,
    samples: u32,
    frames: u32,
    hop: u32,
    pad: u32,
    reflect: u32,
    offset: f32,
    #[comptime] n_fft: usize,
    #[comptime] n1: usize,
    #[comptime] n_mels: usize,
    #[comptime] group: usize,
    #[comptime] log: u32,
) {
    let n2 = n_fft / n1;
    let first = CUBE_POS_X as usize * group;
    let row = CUBE_POS_Y as usize;
    let stride = CUBE_DIM_X as usize;
    let bins = n_fft / 2 + 1;
    let frames = frames as usize;
    // `x` holds the frames, later their power spectra; `a_re`, `a_im` the
    // intermediate n1-point transforms, [frame][c][b].
    let mut x = Shared::<[f32]>::new_slice(group * n_fft);
    let mut a_re = Shared::<[f32]>::new_slice(group * n_fft);
    let mut a_im = Shared::<[f32]>::new_slice(group * n_fft);
    load_frames(
        signal,
        window,
        &mut x,
        first,
        row,
        samples as usize,
        frames,
        hop as usize,
        pad as usize,
        reflect,
        n_fft,
        group,
    );
    sync_cube();

    let mut i = UNIT_POS_X as usize;
    while i < group * n_fft {
        let f = i / n_fft;
        let c = (i % n_fft) / n2;
        let b = i % n2;
        let mut re = 0.0f32;
        let mut im = 0.0f32;
        // t = a·c·n2 mod n_fft, advanced without a division.
        let mut t = 0usize;
        for a in 0..n1 {
            let v = x[f * n_fft + a * n2 + b];
            re += v * twiddles[t];
            im += v * twiddles[n_fft + t];
            t += c * n2;
            if t >= n_fft {
                t -= n_fft;
            }
        }
        let t = (b * c) % n_fft;
        let (wr, wi) = (twiddles[t], twiddles[n_fft + t]);
        a_re[i] = re * wr - im * wi;
        a_im[i] = re * wi + im * wr;
        i += stride;
    }
    sync_cube();

    let mut j = UNIT_POS_X as usize;
    while j < group * bins {
        let f = j / bins;
        let k = j % bins;
        let c = k % n1;
        let d = k / n1;
        let mut re = 0.0f32;
        let mut im = 0.0f32;
        // t = b·d·n1 mod n_fft, advanced without a division.
        let mut t = 0usize;
        for b in 0..n2 {
            let ar = a_re[f * n_fft + c * n2 + b];
            let ai = a_im[f * n_fft + c * n2 + b];
            let (wr, wi) = (twiddles[t], twiddles[n_fft + t]);
            re += ar * wr - ai * wi;
            im += ar * wi + ai * wr;
            t += d * n1;
            if t >= n_fft {
                t -= n_fft;
            }
        }
        x[f * bins + k] = re * re + im * im;
        j += stride;
    }
    sync_cube();

    project_and_write(
        &x, filters, bands, output, first, row, frames, offset, n_fft, n_mels, group, log,
    );
    sync_cube();
}

/// The spectrum as a direct DFT (for sizes with no useful factor, or too
/// large for the split kernel's shared memory): every unit one bin, for
/// every frame of the group, reading the `[n_fft, bins]` cosine and sine
/// matrices row by row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn log_mel_direct_kernel(
    signal: &Tensor<f32>,
    window: &Tensor<f32>,
    dft_cos: &Tensor<f32>,
    dft_sin: &Tensor<f32>,
    filters: &Tensor<f32>,
    bands: &Tensor<f32>,
    output: &mut Tensor<f32>,
    samples: u32,
    frames: u32,
    hop: u32,
    pad: u32,
    reflect: u32,
    offset: f32,
    #[comptime] n_fft: usize,
    #[comptime] n_mels: usize,
    #[comptime] group: usize,
    #[comptime] log: u32,
) {
    let first = CUBE_POS_X as usize * group;
    let row = CUBE_POS_Y as usize;
    let stride = CUBE_DIM_X as usize;
    let bins = n_fft / 2 + 1;
    let frames = frames as usize;
    let mut x = Shared::<[f32]>::new_slice(group * n_fft);
    let mut power = Shared::<[f32]>::new_slice(group * (n_fft / 2 + 1));
    load_frames(
        signal,
        window,
        &mut x,
        first,
        row,
        samples as usize,
        frames,
        hop as usize,
        pad as usize,
        reflect,
        n_fft,
        group,
    );
    sync_cube();

    let mut k = UNIT_POS_X as usize;
    while k < bins {
        let mut re = Array::<f32>::new(group);
        let mut im = Array::<f32>::new(group);
        #[unroll]
        for f in 0..group {
            re[f] = 0.0f32;
            im[f] = 0.0f32;
        }
        for n in 0..n_fft {
            let c = dft_cos[n * bins + k];
            let s = dft_sin[n * bins + k];
            #[unroll]
            for f in 0..group {
                let v = x[f * n_fft + n];
                re[f] += v * c;
                im[f] += v * s;
            }
        }
        #[unroll]
        for f in 0..group {
            power[f * bins + k] = re[f] * re[f] + im[f] * im[f];
        }
        k += stride;
    }
    sync_cube();

    project_and_write(
        &power, filters, bands, output, first, row, frames, offset, n_fft, n_mels, group, log,
    );
    sync_cube();
}

/// How the spectrum of one launch is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Cooley–Tukey split n_fft = n1·(n_fft / n1), `group` frames per cube.
    Split { n1: usize, group: usize },
    /// Direct DFT, `group` frames per cube.
    Direct { group: usize },
}

/// The split when n_fft has a factor between 4 and √n_fft and three
/// frames' worth of values fit in shared memory; the direct DFT otherwise.
fn plan(n_fft: usize) -> Plan {
    let n1 = (4..=n_fft.isqrt()).rev().find(|d| n_fft.is_multiple_of(*d));
    let group = SHARED_FLOATS / (3 * n_fft);
    match n1 {
        Some(n1) if group >= 1 => Plan::Split {
            n1,
            group: group.min(8),
        },
        _ => Plan::Direct {
            group: frames_per_cube(n_fft),
        },
    }
}

/// The kernels on `signal` `[batch, samples]` f32; `window` `[n_fft]`,
/// `twiddles` `[2·n_fft]` (cos and −sin of 2πj/n_fft), `dft_cos`, `dft_sin`
/// `[n_fft, bins]` (the same at j = k·n), `filters` `[n_mels, bins]` and
/// `bands` `[n_mels, 2]`. Returns `[batch, n_mels, frames]`.
fn launch(
    signal: CubeTensor,
    window: CubeTensor,
    twiddles: CubeTensor,
    dft: (CubeTensor, CubeTensor),
    (filters, bands): (CubeTensor, CubeTensor),
    shape: LogMelShape,
) -> CubeTensor {
    let signal = into_contiguous(signal);
    let [batch, samples] = signal.meta.shape().dims::<2>();
    let client = signal.client.clone();
    let output = empty_device_contiguous_dtype(
        client.clone(),
        signal.device.clone(),
        [batch, shape.n_mels, shape.frames].into(),
        DType::F32,
    );
    let (log, offset) = match shape.log {
        ElementLog::Power => (0u32, 0.0f32),
        ElementLog::Natural { offset } => (1, offset),
        ElementLog::Decibel => (2, 0.0),
        ElementLog::Log10 => (3, 0.0),
    };
    // One unit per bin (rounded to a warp), at most 256.
    let bins = shape.n_fft / 2 + 1;
    let dim = CubeDim::new_1d((bins.div_ceil(32) * 32).min(256) as u32);
    let count =
        |group: usize| CubeCount::Static(shape.frames.div_ceil(group) as u32, batch as u32, 1);
    let (signal, window, filters, bands) = (
        signal.into_tensor_arg(),
        into_contiguous(window).into_tensor_arg(),
        into_contiguous(filters).into_tensor_arg(),
        into_contiguous(bands).into_tensor_arg(),
    );
    let sizes = (
        samples as u32,
        shape.frames as u32,
        shape.hop as u32,
        shape.pad as u32,
        u32::from(shape.reflect),
    );
    match plan(shape.n_fft) {
        Plan::Split { n1, group } => log_mel_split_kernel::launch(
            &client,
            count(group),
            dim,
            signal,
            window,
            into_contiguous(twiddles).into_tensor_arg(),
            filters,
            bands,
            output.clone().into_tensor_arg(),
            sizes.0,
            sizes.1,
            sizes.2,
            sizes.3,
            sizes.4,
            offset,
            shape.n_fft,
            n1,
            shape.n_mels,
            group,
            log,
        ),
        Plan::Direct { group } => log_mel_direct_kernel::launch(
            &client,
            count(group),
            dim,
            signal,
            window,
            into_contiguous(dft.0).into_tensor_arg(),
            into_contiguous(dft.1).into_tensor_arg(),
            filters,
            bands,
            output.clone().into_tensor_arg(),
            sizes.0,
            sizes.1,
            sizes.2,
            sizes.3,
            sizes.4,
            offset,
            shape.n_fft,
            shape.n_mels,
            group,
            log,
        ),
    }
    output
}

impl LogMelOps for CubeBackend {
    fn log_mel(
        signal: CubeTensor,
        window: CubeTensor,
        twiddles: CubeTensor,
        dft_cos: CubeTensor,
        dft_sin: CubeTensor,
        filters: CubeTensor,
        bands: CubeTensor,
        shape: LogMelShape,
    ) -> CubeTensor {
        launch(
            signal,
            window,
            twiddles,
            (dft_cos, dft_sin),
            (filters, bands),
            shape,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_split_when_a_factor_and_the_memory_allow() {
        assert_eq!(plan(400), Plan::Split { n1: 20, group: 3 });
        assert_eq!(plan(512), Plan::Split { n1: 16, group: 2 });
        assert_eq!(plan(2048), Plan::Direct { group: 1 });
        assert_eq!(plan(251), Plan::Direct { group: 8 });
    }
}
