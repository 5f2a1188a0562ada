//! The CPU implementations of [`KernelOps`](super::KernelOps) on Burn's
//! Flex backend: the references the wgpu kernels are tested against. The
//! log-mel spectrogram is the audio crate's own (checked against librosa);
//! the gated unit is its definition written out in plain loops.

use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Bytes, DType, Flex};

use polymodal_audio::{LogScale, MelConfig, MelSpectrogram};

use super::{ElementLog, FrameShape, LogMelShape};

/// The f32 values of `t` in row-major order, and its shape.
fn values(t: &FlexTensor) -> (Vec<f32>, Vec<usize>) {
    let t = t.to_contiguous();
    let shape = t.layout().shape().to_vec();
    (t.as_slice::<f32>().expect("f32").to_vec(), shape)
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.into()),
        DType::F32,
    )
}

/// For sample `b` and hidden unit `j`: the gates over the modalities (zero
/// when absent) and the fused value, as the kernel computes them.
fn gates(s: &[f32], u: &[f32], p: &[f32], shape: &[usize], b: usize, j: usize) -> (Vec<f32>, f32) {
    let (m_count, hidden) = (shape[1], shape[2]);
    let at = |m: usize| (b * m_count + m) * hidden + j;
    let present = |m: usize| p[b * m_count + m] > 0.5;
    let max = (0..m_count)
        .filter(|&m| present(m))
        .map(|m| s[at(m)])
        .fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = (0..m_count)
        .map(|m| {
            if present(m) {
                (s[at(m)] - max).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f32 = e.iter().sum();
    if total == 0.0 {
        return (vec![0.0; m_count], 0.0);
    }
    let z: Vec<f32> = e.iter().map(|v| v / total).collect();
    let fused = (0..m_count).map(|m| z[m] * u[at(m)].tanh()).sum();
    (z, fused)
}

/// `∂L/∂s` (`scores` true) or `∂L/∂u` at every (b, m, j).
fn gated_grad(
    s: FlexTensor,
    u: FlexTensor,
    p: FlexTensor,
    grad: FlexTensor,
    scores: bool,
) -> FlexTensor {
    let ((s, shape), (u, _), (p, _), (g, _)) = (values(&s), values(&u), values(&p), values(&grad));
    let (batch, m_count, hidden) = (shape[0], shape[1], shape[2]);
    let mut out = vec![0.0f32; s.len()];
    for b in 0..batch {
        for j in 0..hidden {
            let (z, fused) = gates(&s, &u, &p, &shape, b, j);
            for (m, gate) in z.iter().enumerate() {
                let at = (b * m_count + m) * hidden + j;
                let t = u[at].tanh();
                let factor = if scores { t - fused } else { 1.0 - t * t };
                out[at] = g[b * hidden + j] * gate * factor;
            }
        }
    }
    tensor(out, shape)
}

impl super::KernelOps for Flex {
    fn preprocess_frames(
        pixels: FlexTensor,
        _horizontal_start: FlexTensor,
        _horizontal_len: FlexTensor,
        _horizontal_weights: FlexTensor,
        _vertical_start: FlexTensor,
        _vertical_len: FlexTensor,
        _vertical_weights: FlexTensor,
        _norm: FlexTensor,
        shape: FrameShape,
    ) -> FlexTensor {
        // Each frame through ImagePreprocess::apply (Pillow-exact).
        let pixels = pixels.to_contiguous();
        let values = pixels.as_slice::<i32>().expect("i32 pixels");
        let (w, h) = (shape.width as u32, shape.height as u32);
        let mut out = Vec::with_capacity(shape.frames * shape.config.len());
        for frame in values.chunks_exact(shape.width * shape.height) {
            let image = image::RgbImage::from_fn(w, h, |x, y| {
                let p = frame[(y * w + x) as usize];
                image::Rgb([p as u8, (p >> 8) as u8, (p >> 16) as u8])
            });
            out.extend(
                shape
                    .config
                    .apply(&image)
                    .expect("checked by FramePreprocess::new"),
            );
        }
        let channels = shape.config.channels();
        tensor(
            out,
            vec![shape.frames, channels, shape.out_height, shape.out_width],
        )
    }

    fn gated_unit(scores: FlexTensor, candidates: FlexTensor, present: FlexTensor) -> FlexTensor {
        let ((s, shape), (u, _), (p, _)) = (values(&scores), values(&candidates), values(&present));
        let (batch, hidden) = (shape[0], shape[2]);
        let mut out = Vec::with_capacity(batch * hidden);
        for b in 0..batch {
            for j in 0..hidden {
                out.push(gates(&s, &u, &p, &shape, b, j).1);
            }
        }
        tensor(out, vec![batch, hidden])
    }

    fn gated_unit_grad_scores(
        scores: FlexTensor,
        candidates: FlexTensor,
        present: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        gated_grad(scores, candidates, present, grad, true)
    }

    fn gated_unit_grad_candidates(
        scores: FlexTensor,
        candidates: FlexTensor,
        present: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        gated_grad(scores, candidates, present, grad, false)
    }

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
